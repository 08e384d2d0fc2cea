-- http.lua's HTTP/1.1 "Hello, World!" over TLS, for scripts/bench's tls part (issue 12):
-- the same hand-written handler, served with `tls = { cert, key }` from the files named
-- by GSOCK_BENCH_CERT and GSOCK_BENCH_KEY (scripts/bench makes them at bench time).
-- A client that only handshakes and closes (openssl s_time -new) ends the handler at
-- its first receive.
--
--   GSOCK_BENCH_CERT=cert.pem GSOCK_BENCH_KEY=key.pem \
--     gsockd run benchmarks/servers/https.lua --listen 127.0.0.1:8443
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "benchmarks/servers/"
local http = dofile(here .. "http.lua")

return {
  name = "https",
  tls = {
    cert = assert(os.getenv("GSOCK_BENCH_CERT"), "GSOCK_BENCH_CERT is not set"),
    key = assert(os.getenv("GSOCK_BENCH_KEY"), "GSOCK_BENCH_KEY is not set"),
  },
  handle = http.handle,
}
