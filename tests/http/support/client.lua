-- The client side of the HTTP tests: a connection to a gsock.http.server, reading until
-- the peer closes, a reset, and waiting until the server holds no connection. `drain`
-- and `reset` take a TLS connection as well (the same socket API).
local gsock = require "gsock"
local socket = require "socket"

local M = {}

--- A connection to `srv` (timeout 3 s).
function M.connect(srv)
  local c = socket.tcp()
  c:settimeout(3)
  assert(c:connect("127.0.0.1", srv.port))
  return c
end

--- Everything until the peer closes (or `limit` seconds pass): the text and how it ended.
function M.drain(c, limit)
  c:settimeout(limit or 3)
  local parts = {}
  while true do
    local data, err, partial = c:receive(65536)
    data = data or partial
    if data and #data > 0 then parts[#parts + 1] = data end
    if err then return table.concat(parts), err end
  end
end

--- Closes `c` with a reset (RST) instead of a FIN.
function M.reset(c)
  c:setoption("linger", { on = true, timeout = 0 })
  c:close()
end

--- Waits (up to `limit` seconds, 2 by default) until `srv` holds no connection: a close
--- reaches it one loop turn after the client's. Returns how many it still holds.
function M.no_connections(srv, limit)
  local deadline = gsock.now() + (limit or 2)
  while gsock.now() < deadline do
    if srv:connections() == 0 then return 0 end
    gsock.sleep(0.01)
  end
  return srv:connections()
end

--- Asks for /next on `c` (or a new connection): the server, whose handler answers
--- "next" there, still serves.
function M.serves_next(srv, c)
  local d = c or M.connect(srv)
  assert(d:send("GET /next HTTP/1.1\r\nConnection: close\r\n\r\n"))
  local text = M.drain(d)
  assert(text:find("next$"), "the next request was not served: " .. text)
  d:close()
end

--- A handler that answers /next with "next" and otherwise puts its fiber in the queue
--- returned with it and waits for the body: the fiber a test kills.
function M.body_waiter()
  local waiting = gsock.queue()
  return function(req)
    if req.path == "/next" then return 200, "next" end
    waiting:put(gsock.current())
    req:body()
    return 200, "never"
  end, waiting
end

--- Kills `f`, the waiting fiber of the request `c` sent: the connection closes with
--- nothing sent, and the server serves the next request (on `next`, a new connection by
--- default) and then holds no connection. Stops the server.
function M.kill_closes(srv, f, c, next)
  assert(not f:dead(), "the request's fiber is not waiting")
  f:kill()
  local text, err = M.drain(c)
  assert(text == "" and err == "closed", ("the killed request's connection got %q, then %s"):format(text, tostring(err)))
  c:close()
  M.serves_next(srv, next)
  assert(M.no_connections(srv) == 0, "the server still holds a connection")
  srv:stop()
end

--- What a handler put in `result` ({ value, err, waited = seconds }): nil and `err`, and
--- (with `lo`, `hi`) a wait of between lo and hi seconds. Returns it.
function M.failed_with(result, err, lo, hi)
  local got = result:get(4)
  assert(got[1] == nil and got[2] == err, ("nil, %q expected; got %s, %s"):format(err, tostring(got[1]), tostring(got[2])))
  if lo then assert(got.waited > lo and got.waited < hi, ("nil, %q after %.2f s"):format(err, got.waited)) end
  return got
end

return M
