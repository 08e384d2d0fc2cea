-- Shared helpers of the socket tests (tests/socket/*_test.lua).
--
-- Load it relative to the test file:
--   local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/socket/"
--   local net = dofile(here .. "support/net.lua")
--   local socket = net.socket()          -- gsockd's cooperative module, or a clear error
--   after_each(net.cleanup)
--
-- Everything binds 127.0.0.1 (or ::1) and port 0. Every socket and fiber a helper
-- makes is tracked and closed / killed by net.cleanup(), so a failing test leaves
-- nothing behind for the next one.
local gsock = require "gsock"
local M = {}

local tracked_sockets, tracked_fibers = {}, {}

--- `require "socket"`, checked to be gsockd's cooperative module.
---
--- Debian's lua-socket puts the blocking C LuaSocket on package.path/cpath. If
--- `require "socket"` found that one, every test below would freeze the whole loop
--- (a blocking accept() in one fiber while its client is another fiber never
--- returns, and the per-test timeout cannot fire). So before any test runs, this
--- checks that a socket wait lets another fiber run, and raises a clear error if not.
function M.socket()
  if M._socket then return M._socket end
  if rawget(_G, "GSOCKD_TEST_ORACLE") then      -- support/oracle_run.lua: real LuaSocket on purpose
    M._socket = require "socket"
    return M._socket
  end
  local ok, socket = pcall(require, "socket")
  if not ok then error(socket, 2) end
  local where = package.searchpath("socket", package.path) or "?"
  local core_where = package.searchpath("socket.core", package.cpath) or "?"
  local ran = false
  local f = gsock.spawn(function() ran = true end)
  local srv = assert(socket.bind("127.0.0.1", 0))
  srv:settimeout(0.05)
  local c, err = srv:accept()
  srv:close()
  if not ran then
    f:kill()
    error(("require \"socket\" is not gsockd's cooperative module: a 0.05 s accept() did not let another "
      .. "fiber run (accept returned %s, %s). It looks like the blocking LuaSocket was loaded "
      .. "(package.path has %s, package.cpath has %s): gsockd must provide \"socket\" and \"socket.core\" "
      .. "ahead of the file searchers"):format(tostring(c), tostring(err), where, core_where), 2)
  end
  M._socket = socket
  return socket
end

--- Registers sockets (any object with close) to be closed by cleanup(); returns them.
function M.track(...)
  for i = 1, select("#", ...) do
    local s = select(i, ...)
    if type(s) == "userdata" or type(s) == "table" then tracked_sockets[#tracked_sockets + 1] = s end
  end
  return ...
end

--- Spawns fn(...) in a fiber killed by cleanup() if still running.
function M.spawn(fn, ...)
  local f = gsock.spawn(fn, ...)
  tracked_fibers[#tracked_fibers + 1] = f
  return f
end

--- Kills the tracked fibers and closes the tracked sockets.
function M.cleanup()
  local fibers = tracked_fibers
  tracked_fibers = {}
  local alive = {}
  for _, f in ipairs(fibers) do if not f:dead() then alive[#alive + 1] = f end end
  if #alive > 0 then gsock.killall(alive, nil, 2) end
  local socks = tracked_sockets
  tracked_sockets = {}
  for i = #socks, 1, -1 do pcall(function() socks[i]:close() end) end
end

--- A listening TCP server socket on 127.0.0.1, port 0; returns it and its port (a number).
function M.listen(backlog)
  local socket = M.socket()
  local srv = assert(socket.bind("127.0.0.1", 0, backlog))
  M.track(srv)
  local _, port = srv:getsockname()
  return srv, assert(tonumber(port))
end

--- A connected TCP pair on 127.0.0.1: client, server side (both tracked).
function M.pair()
  local socket = M.socket()
  local srv, port = M.listen()
  local c = assert(socket.connect("127.0.0.1", port))
  M.track(c)
  srv:settimeout(5)
  local s = assert(srv:accept())
  M.track(s)
  srv:close()
  return c, s
end

--- A server on 127.0.0.1:0 whose accept loop runs handler(client) in a new fiber per
--- connection. Returns a table { port =, listener =, accepted = count so far,
--- clients = list of accepted sockets, stop = function }.
function M.serve(handler)
  local srv, port = M.listen(128)
  local server = { port = port, listener = srv, accepted = 0, clients = {} }
  server.fiber = M.spawn(function()
    while true do
      local c, err = srv:accept()
      if not c then
        if err == "closed" then return end
        gsock.sleep(0.001)
      else
        M.track(c)
        server.accepted = server.accepted + 1
        server.clients[#server.clients + 1] = c
        M.spawn(function()
          local ok, e = pcall(handler, c)
          if not ok then server.error = e end
          c:close()
        end)
      end
    end
  end)
  function server.stop()
    srv:close()
    if not server.fiber:dead() then server.fiber:kill() end
  end
  return server
end

--- A line echo handler: each line read is sent back with "\n" until the peer closes.
function M.echo_lines(c)
  while true do
    local line, err = c:receive("*l")
    if not line then return err end
    local ok, serr = c:send(line .. "\n")
    if not ok then return serr end
  end
end

--- The loop clock after a loop turn (gsock.now() is cached per turn).
function M.now()
  gsock.sleep(0)
  return gsock.now()
end

--- Runs fn(...) and returns its results packed, plus the seconds it took (loop clock).
function M.timed(fn, ...)
  local t0 = M.now()
  local r = table.pack(fn(...))
  return r, gsock.now() - t0
end

--- True when the machine has an IPv6 loopback address (::1 on an interface).
function M.has_ipv6_loopback()
  local f = io.open("/proc/net/if_inet6", "r")
  if not f then return false end
  local text = f:read("a")
  f:close()
  return text:find("^00000000000000000000000000000001 ") ~= nil
      or text:find("\n00000000000000000000000000000001 ") ~= nil
end

--- A fresh temporary path that does not exist (for unix sockets).
function M.tmp_path(tag)
  local p = os.tmpname()
  os.remove(p)
  return p .. "-" .. (tag or "gsockd")
end

--- What real (Debian) LuaSocket prints for a Lua snippet run by plain lua5.4, or nil
--- when lua5.4 with lua-socket is not installed. Used where the expected value depends
--- on the machine (resolver messages, host names).
function M.oracle(snippet)
  local p = io.popen("command -v lua5.4 >/dev/null 2>&1 && lua5.4 -e " ..
    ("'" .. snippet:gsub("'", "'\\''") .. "'") .. " 2>/dev/null")
  if not p then return nil end
  local out = p:read("a")
  p:close()
  if out == nil or out == "" then return nil end
  return (out:gsub("\n$", ""))
end

--- The results of a Lua expression evaluated by real (Debian) LuaSocket under plain
--- lua5.4, as a table.pack()ed list; nil when lua5.4 with lua-socket is not installed.
--- `socket` is in scope in the expression. Example:
---   net.oracle_values('socket.dns.toip("localhost")')  --> { "127.0.0.1", {...}, n = 2 }
function M.oracle_values(expr)
  local snippet = [[
local function ser(v)
  if type(v) == "table" then
    local o = {}
    for k, x in pairs(v) do o[#o + 1] = "[" .. ser(k) .. "]=" .. ser(x) end
    return "{" .. table.concat(o, ",") .. "}"
  elseif type(v) == "string" then return string.format("%q", v)
  elseif type(v) == "number" or type(v) == "boolean" or v == nil then return tostring(v)
  else return string.format("%q", tostring(v)) end
end
local socket = require "socket"
io.write("return ", ser(table.pack(]] .. expr .. [[)))]]
  local out = M.oracle(snippet)
  if not out then return nil end
  local chunk = load(out, "=oracle", "t", {})
  if not chunk then return nil end
  local ok, v = pcall(chunk)
  if ok then return v end
  return nil
end

--- A string of n bytes with a recognisable, position-dependent pattern.
function M.pattern_bytes(n, seed)
  local chunk = {}
  seed = seed or 0
  for i = 0, 255 do chunk[#chunk + 1] = string.char((i * 7 + seed) % 256) end
  local block = table.concat(chunk)          -- 256 bytes
  local big = block:rep(4096)                -- 1 MiB
  local parts, have = {}, 0
  local k = 0
  while have < n do
    k = k + 1
    local piece = big
    -- make each MiB different so that a lost or repeated MiB is noticed
    piece = string.pack(">I4", k) .. piece:sub(5)
    if have + #piece > n then piece = piece:sub(1, n - have) end
    parts[#parts + 1] = piece
    have = have + #piece
  end
  return table.concat(parts)
end

return M
