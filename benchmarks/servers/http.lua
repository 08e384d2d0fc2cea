-- HTTP/1.1 "Hello, World!" with keep-alive, for the server benchmarks (issue 6): the
-- request head is read line by line with receive("*l") up to the blank line, and each
-- request gets the same 13-byte reply; the connection stays open until the client
-- closes it. The same job as libev_server.c's http mode (no request bodies, no
-- header parsing: the benchmark's load is wrk's GET requests).
--
--   gsockd run benchmarks/servers/http.lua --listen 127.0.0.1:8080
local RESPONSE = "HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello, World!"

return {
  name = "http",

  handle = function(sock)
    while true do
      local line = sock:receive("*l")  -- the request line
      if not line then return end
      if line ~= "" then                -- (a blank line before it is skipped: RFC 9112 §2.2)
        repeat                          -- the headers, up to the blank line
          line = sock:receive("*l")
          if not line then return end
        until line == ""
        if not sock:send(RESPONSE) then return end
      end
    end
  end,
}
