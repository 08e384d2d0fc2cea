-- "Hello, World!" (and a JSON route) on gsockd's HTTP layer (SPEC §11), for the server
-- benchmarks (issue 13): the host parses the requests and holds the keep-alive
-- connections; the handler only answers. The same answer as config/handlers/http_hello.lua.
-- GSOCK_BENCH_ROUTE=json answers every request with lua-cjson's encoding of a small
-- table instead (Debian's lua-cjson), as scripts/bench's nginx does with cjson.
-- The keep-alive limits are raised to nginx's in scripts/bench (keepalive_requests
-- 1000000000, keepalive_timeout 600 s), so no connection is closed during a run.
--
--   gsockd run benchmarks/servers/http_layer.lua --listen 127.0.0.1:8080
--   GSOCK_BENCH_ROUTE=json gsockd run benchmarks/servers/http_layer.lua --listen 127.0.0.1:8080
local handle

if os.getenv("GSOCK_BENCH_ROUTE") == "json" then
  local encode = require("cjson").encode
  local JSON = { ["Content-Type"] = "application/json" }
  handle = function(req, res)
    return 200, encode({ message = "Hello, World!", id = 42, tags = { "a", "b" } }), JSON
  end
else
  local TEXT = { ["Content-Type"] = "text/plain" }
  handle = function(req, res)
    return 200, "Hello, World!", TEXT
  end
end

return {
  name = "http_layer",
  protocol = "http",
  keepalive_requests = 1000000000,
  keepalive_timeout = 600,
  handle = handle,
}
