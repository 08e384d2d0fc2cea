-- HTTP/1.1 services (SPEC §11): the request and response objects and the runner of one
-- request. The host (Sources/GSock/HTTP) parses heads, holds connections between
-- requests and starts one fiber per request with `run`; what waits here waits with
-- gsock.wait_read/wait_write on the connection's descriptor, so a close, a kill or a
-- timeout ends it as any §3 wait.
local gsock, host, internal = ...

local error, getmetatable, next, pairs, pcall, rawget, rawset, setmetatable, tostring, type, xpcall =
      error, getmetatable, next, pairs, pcall, rawget, rawset, setmetatable, tostring, type, xpcall
local concat = table.concat
local getuservalue = debug.getuservalue
local field, header_values = host.http_request_field, host.http_header_values
local wait_read, wait_write, now = gsock.wait_read, gsock.wait_write, gsock.now
local log = host.log
local support = internal.server_support
local traceback, failure_of, is_killed = support.traceback, support.failure_of, support.is_killed

local registry = debug.getregistry()

-- The connection methods every request calls, looked up once (the host registers them
-- before this chunk runs).
local connection_methods = registry["gsock.http.connection"].__index
local reply, done = connection_methods.reply, connection_methods.done

-- req.headers: lower-case names (made by the host); other spellings are looked up in
-- lower case, so req.headers["Content-Type"] == req.headers["content-type"].
registry["gsock.http.fields"] = {
  __index = function(t, k)
    if type(k) == "string" then
      local lower = k:lower()
      if lower ~= k then return rawget(t, lower) end
    end
  end,
}

-- What a wait the host asked for raises at its own deadline (body_timeout and the like),
-- told apart from the error of a gsock.timeout or a with_timeout around the handler's call.
local WAIT_TIMEOUT = setmetatable({}, { __tostring = function() return "timeout" end })

--- Waits as a host binding asked (`false, fd, "read"|"write", timeout`): true; nil and
--- "timeout" at the wait's own deadline, nil and "closed" when the connection was closed
--- under it; false and the error raised at the wait by anyone else (a kill, with its own
--- error or not, a gsock.timeout's), for the caller to raise on (SPEC §2), as any wait.
local function wait_for(fd, direction, timeout)
  local ok, e = pcall(direction == "read" and wait_read or wait_write, fd, timeout, WAIT_TIMEOUT)
  if ok then return true end
  if e == WAIT_TIMEOUT then return nil, "timeout" end
  if type(e) == "table" and not is_killed(e) and (e.kind == "closed" or e.kind == "io") then return nil, "closed" end
  return false, e
end

--- Writes what the connection has queued.
local function flush(conn)
  while true do
    local ok, fd, direction, timeout = conn:flush()
    if ok then return true end
    if ok == nil then return nil, fd end
    local waited, err = wait_for(fd, direction, timeout)
    if waited == false then error(err, 0) end
    if not waited then return nil, err end
  end
end

-- The request -------------------------------------------------------------------------

local Request = { __name = "gsock.http.request" }
local methods = {}
Request.__index = function(req, k)
  local m = methods[k]
  if m ~= nil then return m end
  if k == "peer" then return getuservalue(req, 2):peer() end
  return field(req, k)
end
Request.__tostring = function(req)
  return ("gsock.http.request (%s %s)"):format(field(req, "method"), field(req, "target"))
end
registry["gsock.http.request"] = Request

-- The requests whose body a fiber is waiting for: another fiber reading it meanwhile gets
-- nil, "busy" at once, as a second receive on a socket does (SPEC §4).
local reading = setmetatable({}, { __mode = "k" })

--- The next bytes of `req`'s body, nil at its end, or nil and a message.
local function read_body(conn, req, size)
  if reading[req] then return nil, "busy" end
  while true do
    local data, fd, direction, timeout = conn:body(size, req)
    if data ~= false then return data, fd end
    reading[req] = true
    local waited, err = wait_for(fd, direction, timeout)
    reading[req] = nil
    if waited == false then error(err, 0) end
    if not waited then
      conn:body_failed(err)
      return nil, err
    end
  end
end

--- Raises the error luaL_checkudata would for a method's self that is not a `what`,
--- naming `method`, at the method's caller (request_conn and response_conn call this).
local function bad_self(self, method, what)
  error(("bad argument #1 to '%s' (%s expected, got %s)"):format(method, what, type(self)), 4)
end

--- The connection of `req`, a request object given as a method's self.
local function request_conn(req, method)
  local conn = type(req) == "userdata" and getmetatable(req) == Request and getuservalue(req, 2)
  if not conn then bad_self(req, method, "gsock.http.request") end
  return conn
end

function methods.header_values(req, name)
  request_conn(req, "header_values")
  return header_values(req, name)
end

--- The whole body (at most max_body bytes), or nil and a message.
function methods.body(req)
  local conn = request_conn(req, "body")
  local parts, n = {}, 0
  while true do
    local data, err = read_body(conn, req)
    if data == nil then
      if err then return nil, err end
      return concat(parts, "", 1, n)
    end
    n = n + 1
    parts[n] = data
  end
end

--- A function returning the body in chunks of at most `size` bytes, then nil.
function methods.reader(req, size)
  local conn = request_conn(req, "reader")
  return function() return read_body(conn, req, size) end
end

local function unescape_form(s)
  s = s:gsub("+", " ")
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

--- The query as a table: `a=1&a=2&b` gives { a = { "1", "2" }, b = true }.
function methods.args(req)
  request_conn(req, "args")
  local args = {}
  local query = field(req, "query")
  if not query then return args end
  for pair in query:gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=(.*)$")
    if k then v = unescape_form(v) else k, v = pair, true end
    k = unescape_form(k)
    local old = args[k]
    if old == nil then
      args[k] = v
    elseif type(old) == "table" then
      old[#old + 1] = v
    else
      args[k] = { old, v }
    end
  end
  return args
end

-- The response ------------------------------------------------------------------------

local CONN, DONE, UPGRADED, FAILED = {}, {}, {}, {}

--- res.headers: a field set in any spelling replaces the one there (its spelling stays).
local Headers = {
  __index = function(t, k)
    if type(k) ~= "string" then return nil end
    local lower = k:lower()
    for name, v in next, t do
      if type(name) == "string" and name:lower() == lower then return v end
    end
  end,
  __newindex = function(t, k, v)
    if type(k) == "string" then
      local lower = k:lower()
      for name in next, t do
        if type(name) == "string" and name:lower() == lower then rawset(t, name, v) return end
      end
    end
    rawset(t, k, v)
  end,
}

local Response = { __name = "gsock.http.response" }
local response_methods = {}
-- res.headers is made when the handler first reads it: `return status, body, headers`
-- then sends the returned table as it is. res.status is 200 until the handler sets it
-- (a new res holds only its connection: one field less to set per request).
Response.__index = function(res, k)
  if k == "headers" then
    local headers = setmetatable({}, Headers)
    rawset(res, "headers", headers)
    return headers
  end
  if k == "status" then return 200 end
  return response_methods[k]
end

--- The connection of `res`, a response given as a method's self.
local function response_conn(res, method)
  local conn = type(res) == "table" and rawget(res, CONN)
  if not conn then bad_self(res, method, "gsock.http.response") end
  return conn
end

--- Sends `data` (the head first, on the first write). True, or nil and "closed"/"timeout".
--- A failed write ends the response and the connection (as nginx's send_timeout): the
--- peer has part of a response; later writes give the same error at once.
function response_methods.write(self, data)
  local conn = response_conn(self, "write")
  local failed = self[FAILED]
  if failed then return nil, failed end
  if self[DONE] then error("res:write(): the response is finished", 2) end
  if data ~= nil and type(data) ~= "string" then data = tostring(data) end
  conn:send(self, data, false)
  local ok, err = flush(conn)
  if not ok then
    self[FAILED], self[DONE] = err, true
    conn:abort()
  end
  return ok, err
end

--- Ends the response, with `data` as its last bytes. Sent when the handler returns.
function response_methods.finish(self, data)
  local conn = response_conn(self, "finish")
  local failed = self[FAILED]
  if failed then return nil, failed end
  if self[DONE] then return true end
  if data ~= nil and type(data) ~= "string" then data = tostring(data) end
  self[DONE] = true
  conn:send(self, data, true)
  return true
end

--- Sends the head (set res.status = 101 and its headers first) and hands over the raw
--- connection: a §4 socket, with whatever the client sent after the head in its buffer.
function response_methods.upgrade(self)
  local conn = response_conn(self, "upgrade")
  if self[DONE] then error("res:upgrade(): the response is finished", 2) end
  conn:upgrade(self)
  self[DONE], self[UPGRADED] = true, true
  local ok, err = flush(conn)
  if not ok then return nil, err end
  return conn:socket()
end

-- Running a request ---------------------------------------------------------------------
--
-- Most services never come here for a request: the host resumes the handler itself on a
-- pooled thread (a fiber with `handle(req, res)` as its function, no runner, no xpcall)
-- and sends a plain `return status, body, headers` without Lua. What needs Lua (a body
-- or headers to convert or merge, an error to log, output to flush when the socket is
-- full) comes to `complete` below, in a fiber of its own. A service with access_log runs
-- each request through `run`, which times it.

--- Sends what the handler returned; with `finishing`, also ends the response as
--- conn:done() does and returns what that said (true when it was left to the caller).
local function apply(conn, res, finishing, status, body, headers)
  if res[DONE] then return end
  res[DONE] = true
  if status == nil then
    if not conn:fail(0) then conn:send(res, nil, true) end
    return
  end
  local replied = reply(conn, status, body, headers, finishing, res)
  if replied then return replied end
  -- A body to convert, headers to check, or res.headers to merge the returned ones into.
  if headers ~= nil and type(headers) ~= "table" then
    error(("the handler returned headers that are not a table (a %s)"):format(type(headers)), 0)
  end
  local h = rawget(res, "headers")
  if h ~= nil then
    if headers ~= nil then
      for k, v in pairs(headers) do h[k] = v end
    end
    headers = h
  end
  if body ~= nil and type(body) ~= "string" then body = tostring(body) end
  return reply(conn, status, body, headers, finishing)
end

--- Runs the handler and sends what it returned (see `apply`).
local function respond(handle, req, res, finishing)
  return apply(res[CONN], res, finishing, handle(req, res))
end

--- After conn:done(): flushes what it could not write, then awaits the next request or
--- closes as it said.
local function flush_then(conn, after)
  if after == "started" or after == "idle" or after == "closed" then return end
  local flushed = flush(conn)
  if not flushed then
    conn:close()
  elseif after == "flush" then
    conn:idle()
  else
    conn:linger_close()
  end
end

--- A failed handler's error and traceback, for `complete`: `co` is its dead thread (the
--- host calls this before the thread is reset; the stack is still there to read).
local function describe(co, e)
  local message = tostring(e)
  local tb = debug.traceback(co, "", 0)
  return { error = e, message = message, traceback = (tb:gsub("^\n", "")) }
end

--- The runner of a server's requests: run(conn, req) in the request's fiber (access_log),
--- and complete(conn, req, res, how, ...) for what the host leaves to Lua when it ran the
--- handler itself: how is true (the handler's results follow), false (its failure, from
--- `describe`; req and res are false when the host could not find them) or "flush" (what
--- conn:done() said follows).
local function runner(server)
  local name, access_log = server.name, server.access_log

  local function peer_text(req)
    local peer = req.peer
    if peer.path then return "unix:" .. peer.path end
    return peer.host and ("%s:%s"):format(peer.host, peer.port) or "?"
  end

  -- One line per request: the fields carry it (key=value in text, JSON fields in json).
  local function access(conn, req, started)
    local status, bytes = conn:info()
    local ms = (now() - started) * 1000
    log("info", "request", { service = name, peer = peer_text(req), method = req.method, target = req.target,
                             status = status, bytes = bytes, ms = math.floor(ms * 10 + 0.5) / 10 })
  end

  --- `killed`: the request's fiber was killed (with its own error or the default one).
  local function finish(conn, req, res, ok, err, started, killed)
    local failure = not ok and failure_of(err) or nil
    local cut = failure and (killed or is_killed(failure.error))
    if failure and not cut then
      support.count_error(name)
      -- The runner's own frame (respond) is left out: the handler's frames are the story.
      local tb = failure.traceback:gsub("\n\thttp%.lua:[^\n]*$", "")
      log("error", "handler failed: " .. failure.message,
          { service = name, peer = peer_text(req),
            request = req.method and ("%s %s HTTP/%s"):format(req.method, req.target, req.version),
            traceback = tb })
    end
    if res[UPGRADED] then
      if started then access(conn, req, started) end
      conn:socket():close()
      conn:close()
      return
    end
    if cut then               -- a killed request ends its connection, answering nothing
      conn:cut_short()        -- (after the responses pipelined ahead of it)
      return
    end
    if failure and not conn:fail(500) then
      if started then access(conn, req, started) end
      conn:close()
      return
    end
    if started then access(conn, req, started) end
    return flush_then(conn, conn:done())
  end

  local function ended(conn, done, e)
    if not done then
      conn:close()
      if not is_killed(e) then log("error", "http: " .. tostring(e), { service = name }) end
    end
  end

  local function settle(conn, req, res, ok, after, started, killed)
    if ok and not started and not res[UPGRADED] then
      -- The common end, unprotected: conn:done() does not wait and raises nothing.
      if after == nil then after = done(conn) end   -- else apply ended the response
      if after == "started" or after == "idle" or after == "closed" then return end
      return ended(conn, pcall(flush_then, conn, after))
    end
    return ended(conn, pcall(finish, conn, req, res, ok, after, started, killed))
  end

  local function run(conn, req)
    local started = access_log and now()
    local res = setmetatable({ [CONN] = conn }, Response)
    local ok, after = xpcall(respond, traceback, server.handle, req, res, not started)
    local killed = not ok and conn:killed()
    settle(conn, req, res, ok, after, started, killed)
    -- A killed fiber ends killed, with the error it was killed with (SPEC §2).
    if killed then error(failure_of(after).error, 0) end
  end

  local function complete(conn, req, res, how, ...)
    if how == "flush" then return ended(conn, pcall(flush_then, conn, ...)) end
    if how then
      return settle(conn, req, res, xpcall(apply, traceback, conn, res, true, ...))
    end
    if not req then   -- the handler replaced its arguments before it raised
      req, res = { peer = conn:peer() }, {}
    end
    return settle(conn, req, res, false, ...)
  end

  return run, complete
end

internal.http_runner = runner
host.http_response_setup(Response, CONN, describe)

--- gsock.http.server(listen, handler [, opts]): gsock.server with protocol = "http";
--- `handler` is function(req, res) or a handler table.
gsock.http = {
  server = function(listen, handler, opts)
    if opts ~= nil and type(opts) ~= "table" then error(internal.bad_type(3, "http.server", "table", opts), 2) end
    local options = { protocol = "http" }
    for k, v in pairs(opts or {}) do options[k] = v end
    return gsock.server(listen, handler, options)
  end,
}
