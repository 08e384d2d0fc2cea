-- Raw-socket helpers for the HTTP tests: connect, send bytes, read and parse responses.
local socket = require "socket"

local wire = {}

function wire.connect(srv, timeout)
  local c = socket.tcp()
  c:settimeout(timeout or 3)
  assert(c:connect("127.0.0.1", srv.port))
  return c
end

--- Reads one response: { status = 200, line = "HTTP/1.1 200 OK", headers = { lower = value },
--- fields = { "Name: value", ... }, body = "..." }, or nil and the receive error.
--- `head_only`: a HEAD response (no body read whatever Content-Length says).
function wire.read(c, head_only)
  local line, err = c:receive("*l")
  if not line then return nil, err end
  local r = { line = line, status = tonumber(line:match("^HTTP/1%.1 (%d%d%d) ")), headers = {}, fields = {} }
  while true do
    local l, e = c:receive("*l")
    if not l then return nil, e end
    if l == "" then break end
    r.fields[#r.fields + 1] = l
    local name, value = l:match("^([^:]+): (.*)$")
    local key = name:lower()
    r.headers[key] = r.headers[key] and (r.headers[key] .. ", " .. value) or value
  end
  if head_only or (r.status and (r.status < 200 or r.status == 204 or r.status == 304)) then return r end
  if r.headers["content-length"] then
    local length = tonumber(r.headers["content-length"])
    -- receive(0) waits for a byte as LuaSocket's does; an empty body has none to wait for.
    r.body = length == 0 and "" or assert(c:receive(length))
  elseif (r.headers["transfer-encoding"] or ""):lower() == "chunked" then
    local parts = {}
    while true do
      local size = tonumber(assert(c:receive("*l")):match("^%x+"), 16)
      if size == 0 then assert(c:receive("*l")) break end
      parts[#parts + 1] = assert(c:receive(size))
      assert(c:receive("*l"))
    end
    r.body, r.chunked = table.concat(parts), true
  else
    r.body = c:receive("*a")
  end
  return r
end

--- Whether the peer closed (within `timeout` s): true, or false and what came instead.
function wire.closed(c, timeout)
  c:settimeout(timeout or 2)
  local data, err, partial = c:receive(1)
  if err == "closed" and (partial or "") == "" then return true end
  return false, data or partial or err
end

--- Sends `bytes` on a new connection and reads one response; closes the connection.
--- With `check_close`, `closed_after` says whether the server closed after it.
function wire.once(srv, bytes, head_only, check_close)
  local c = wire.connect(srv)
  assert(c:send(bytes))
  local r, err = wire.read(c, head_only)
  if r and check_close then r.closed_after = wire.closed(c, 2) end
  c:close()
  return r, err
end

return wire
