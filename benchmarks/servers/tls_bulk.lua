-- A 1 GiB download over TLS for scripts/bench's tls part (issue 12): reads the request's
-- head, answers an HTTP/1.0 head and GSOCK_BENCH_BULK bytes (default 1 GiB) sent from one
-- 64 KiB string in a loop, then closes. The certificate and key are the files named by
-- GSOCK_BENCH_CERT and GSOCK_BENCH_KEY.
--
--   GSOCK_BENCH_CERT=cert.pem GSOCK_BENCH_KEY=key.pem \
--     gsockd run benchmarks/servers/tls_bulk.lua --listen 127.0.0.1:8443
local total = math.tointeger(tonumber(os.getenv("GSOCK_BENCH_BULK") or "")) or 1 << 30
local CHUNK = ("0123456789abcdef"):rep(4096)   -- 64 KiB

return {
  name = "tls_bulk",
  tls = {
    cert = assert(os.getenv("GSOCK_BENCH_CERT"), "GSOCK_BENCH_CERT is not set"),
    key = assert(os.getenv("GSOCK_BENCH_KEY"), "GSOCK_BENCH_KEY is not set"),
  },
  handle = function(sock)
    repeat
      local line = sock:receive("*l")
      if not line then return end
    until line == ""
    assert(sock:send(("HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n"):format(total)))
    local left = total
    while left >= #CHUNK do
      assert(sock:send(CHUNK))
      left = left - #CHUNK
    end
    if left > 0 then assert(sock:send(CHUNK, 1, left)) end
  end,
}
