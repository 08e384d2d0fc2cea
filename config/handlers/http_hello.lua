-- HTTP/1.1 "Hello, World!" with keep-alive: answers every request on a connection
-- with 200 OK and the greeting from [services.NAME.env], until the client closes
-- or asks to (`Connection: close`; HTTP/1.0 closes unless it asks for keep-alive).
-- Try it: `gsockd serve`, then `curl -v http://127.0.0.1:8080/`.
local greeting = "Hello, World!"

--- Reads a request's head: the request line and the headers up to the blank line.
--- Returns the method, the version and the headers (names lower-cased), or nil when
--- the client closed.
local function read_head(sock)
  local request
  repeat  -- blank lines before a request line are allowed (RFC 9112 §2.2)
    local line = sock:receive("*l")
    if not line then return nil end
    request = line
  until request ~= ""
  local method, version = request:match("^(%S+)%s+%S+%s+HTTP/(%d%.%d)$")
  local headers = {}
  while true do
    local line = sock:receive("*l")
    if not line then return nil end
    if line == "" then break end
    local name, value = line:match("^([^:]+):%s*(.-)%s*$")
    if name then headers[name:lower()] = value end
  end
  return method or "GET", version or "1.1", headers
end

local function wants_close(version, headers)
  local connection = (headers["connection"] or ""):lower()
  if connection:find("close", 1, true) then return true end
  if version == "1.0" then return not connection:find("keep-alive", 1, true) end
  return false
end

return {
  name = "http_hello",

  init = function(config)
    local env = (config or {}).env or {}
    if env.greeting ~= nil then greeting = tostring(env.greeting) end
  end,

  handle = function(sock)
    while true do
      local method, version, headers = read_head(sock)
      if not method then return end
      -- Skip a request body, so that the next request starts where it should.
      local length = tonumber(headers["content-length"] or "0")
      if length and length > 0 and not sock:receive(length) then return end
      local close = wants_close(version, headers)
      local body = method == "HEAD" and "" or greeting
      local response = "HTTP/1.1 200 OK\r\n"
        .. "Content-Type: text/plain; charset=utf-8\r\n"
        .. "Content-Length: " .. #greeting .. "\r\n"
        .. (close and "Connection: close\r\n" or "")
        .. "\r\n" .. body
      if not sock:send(response) or close then return end
    end
  end,
}
