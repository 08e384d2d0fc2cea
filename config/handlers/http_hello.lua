-- HTTP/1.1 "Hello, World!" on gsockd's HTTP layer (SPEC §11): the host parses the
-- request and keeps the connection alive between requests; the handler only answers.
-- Try it: `gsockd serve`, then `curl -v http://127.0.0.1:8080/`.
local greeting = "Hello, World!"

return {
  name = "http_hello",
  protocol = "http",

  init = function(config)
    local env = (config or {}).env or {}
    greeting = env.greeting or greeting
  end,

  handle = function(req, res)
    return 200, greeting, { ["Content-Type"] = "text/plain" }
  end,
}
