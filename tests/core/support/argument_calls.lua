-- The calls of tests/core/argument_words_test.lua: every Swift binding called with
-- arguments it refuses, as pcall(f, ...) so that no Lua line number enters a message.
-- Returns a function that makes the calls (in a fiber) and returns
-- { { label, outcome }, ... }, outcome being what pcall gave, as text.
local gsock = require "gsock"
local socket = require "socket"

--- The table `name` that `fn`, or a function it closes over, closes over (the Swift
--- tables gsock.lua, socket.lua and server.lua are given).
local function upvalue(fn, name)
  local queue, seen = { fn }, { [fn] = true }
  local i = 1
  while queue[i] do
    for j = 1, 255 do
      local n, v = debug.getupvalue(queue[i], j)
      if n == nil then break end
      if n == name and type(v) == "table" then return v end
      if type(v) == "function" and not seen[v] then
        seen[v] = true
        queue[#queue + 1] = v
      end
    end
    i = i + 1
  end
  error("no upvalue " .. name)
end

--- A value as text, without addresses: error values by their fields.
local function text(v)
  if type(v) == "table" and rawget(v, "kind") ~= nil then
    return ("error{kind=%s, message=%s, errno=%s}"):format(tostring(v.kind), tostring(v.message),
                                                          tostring(v.errno))
  end
  if type(v) == "userdata" or type(v) == "table" or type(v) == "function" or type(v) == "thread" then
    return type(v)
  end
  return tostring(v)
end

return function()
  local core = upvalue(gsock.with_timeout, "core")
  local calls = {}
  local function call(label, f, ...)
    local r = table.pack(pcall(f, ...))
    for i = 1, r.n do r[i] = text(r[i]) end
    calls[#calls + 1] = { label, table.concat(r, " ", 1, r.n) }
  end

  -- fibers
  local done = gsock.spawn(function() end)
  done:join()
  local me = gsock.current()
  call("spawn number", gsock.spawn, 1)
  call("spawn none", gsock.spawn)
  call("spawn_later string", gsock.spawn_later, "x", print)
  call("spawn_later NaN", gsock.spawn_later, 0/0, print)
  call("spawn_later negative", gsock.spawn_later, -1, print)
  call("spawn_later no function", gsock.spawn_later, 0, {})
  call("sleep string", gsock.sleep, "x")
  call("sleep negative", gsock.sleep, -1)
  call("sleep NaN", gsock.sleep, 0/0)
  call("sleep table", gsock.sleep, {})
  call("fiber_dead number", core.fiber_dead, 5)
  call("fiber_successful string", core.fiber_successful, "x")
  call("fiber_id table", core.fiber_id, {})
  call("fiber_error nil", core.fiber_error)
  call("fiber_results number", core.fiber_results, 5)
  call("fiber_results running", core.fiber_results, me)
  call("fiber_kill number", core.fiber_kill, 5)
  call("fiber_join number", core.fiber_join, 5)
  call("fiber_join bad timeout", core.fiber_join, done, "x")
  call("fiber_join negative timeout", core.fiber_join, me, -1)
  call("fiber_join self", core.fiber_join, me)
  call("fiber_link number", core.fiber_link, 5, print)
  call("fiber_link no function", core.fiber_link, done, 5)
  call("fiber_link callable table", core.fiber_link, done, setmetatable({}, { __call = print }))

  -- timeouts
  call("timeout string", gsock.timeout, "x")
  call("timeout NaN", gsock.timeout, 0/0)
  call("timeout negative", gsock.timeout, -0.5)
  local t = gsock.timeout(nil)
  call("timeout cancel number", t.cancel, 5)
  call("timeout pending string", t.pending, "x")
  call("timeout pending", t.pending, t)

  -- descriptor waits
  call("wait_read string", gsock.wait_read, "x")
  call("wait_read float", gsock.wait_read, 0.5)
  call("wait_read bad timeout", gsock.wait_read, 0, "x")
  call("wait_read NaN timeout", gsock.wait_read, 0, 0/0)
  call("wait_write negative fd", gsock.wait_write, -1, 0.01)
  call("wait_write huge fd", gsock.wait_write, 2^40, 0.01)
  call("wait_readwrite table", gsock.wait_readwrite, {})
  call("io string", gsock.io, "x")
  call("io bad mode", gsock.io, 0, "q")
  call("io number mode", gsock.io, 0, 5)
  call("io negative fd", gsock.io, -1)
  call("wait number", gsock.wait, 5)
  local w = gsock.io(1, "w")
  call("wait bad timeout", gsock.wait, w, "x")
  call("cancel_wait number", gsock.cancel_wait, 5)
  call("cancel_wait none waiting", gsock.cancel_wait, w)
  call("watcher getfd number", w.getfd, 5)
  call("watcher close string", w.close, "x")
  w:close()
  call("wait closed watcher", gsock.wait, w, 0.01)
  call("watcher getfd closed", w.getfd, w)

  -- wait lists
  local list = gsock.event().waiters
  call("list wait number", list.wait, 5)
  call("list wait NaN", list.wait, list, 0/0)
  call("list wait zero", list.wait, list, 0)
  call("list notify string", list.notify, list, "x")
  call("list notify float", list.notify, list, 0.5)
  call("list notify", list.notify, list, 3)
  call("list notify_all number", list.notify_all, 5)
  call("list waiting string", list.waiting, "x")
  call("list waiting", list.waiting, list)

  -- log
  call("log bad level", core.log, "loud", "x")
  call("log number level", core.log, 5, "x")
  call("log number message", core.log, "info", 5)
  call("log below the level", core.log, "trace", "x")

  -- process
  call("on_signal number", core.on_signal, 5)
  call("notify number", core.notify, 5)
  call("file_identity number", core.file_identity, 5)
  call("file_identity missing", core.file_identity, "/nonexistent/argument_calls")
  local host = upvalue(gsock.server, "host")
  call("shared_listener number", host.shared_listener, 5)
  call("shared_listener not a worker", host.shared_listener, "127.0.0.1:1")
  call("share_listener number", host.share_listener, 5, 3)
  call("share_listener bad descriptor", host.share_listener, "127.0.0.1:1", -1)
  call("share_listener float", host.share_listener, "127.0.0.1:1", 0.5)
  call("adopt_listener string", host.adopt_listener, "x")
  call("adopt_listener negative", host.adopt_listener, -1)
  call("adopt_listener huge", host.adopt_listener, 2^40)

  -- sockets: common methods
  local s = socket.tcp()
  local methods = { "close", "getfd", "setfd", "dirty", "settimeout", "gettimeout", "settimeouts",
                    "getstats", "setstats", "getfamily", "getsockname", "getpeername", "setoption",
                    "getoption" }
  for _, m in ipairs(methods) do
    call(m .. " number", s[m], 5)
    call(m .. " io.stdout", s[m], io.stdout)
  end
  call("setfd string", s.setfd, s, "x")
  call("setfd huge", s.setfd, s, 2^31)
  call("setfd float", s.setfd, s, 0.5)
  call("settimeout string", s.settimeout, s, "x")
  call("settimeout NaN", s.settimeout, s, 0/0)
  call("settimeout bad mode", s.settimeout, s, 1, "q")
  call("settimeout number mode", s.settimeout, s, 1, 5)
  call("settimeouts string", s.settimeouts, s, 1, 2, "x")
  call("settimeouts NaN", s.settimeouts, s, 0/0)
  call("setstats string", s.setstats, s, "x")
  call("setstats float", s.setstats, s, 1, 0.5)
  call("setstats age string", s.setstats, s, 1, 2, "x")
  call("setstats age inf", s.setstats, s, 1, 2, math.huge)
  call("setoption number", s.setoption, s, 5)
  call("getoption unknown", s.getoption, s, "nope")
  call("getpeername unconnected", s.getpeername, s)
  call("getsockname unbound", s.getsockname, s)
  call("getfamily", s.getfamily, s)
  call("gettimeout", s.gettimeout, s)
  call("tcp close twice", s.close, s)
  call("tcp close again", s.close, s)

  -- datagram sockets
  local u = socket.udp()
  local v = socket.udp()
  assert(v:setsockname("127.0.0.1", 0))
  local _, vport = v:getsockname()
  local c = socket.udp()
  assert(c:setpeername("127.0.0.1", vport))
  call("udp getpeername unconnected", u.getpeername, u)
  call("udp sendto connected", u.sendto, c, "x", "127.0.0.1", 1)
  call("udp sendto table data", u.sendto, u, {}, "127.0.0.1", 1)
  call("udp sendto number host", u.sendto, u, "x", 5, 1)
  call("udp sendto bad port", u.sendto, u, "x", "127.0.0.1", "x")
  call("udp sendto port out of range", u.sendto, u, "x", "127.0.0.1", 70000)
  call("udp sendto no port", u.sendto, u, "x", "127.0.0.1")
  call("udp sendto name", u.sendto, u, "x", "localhost", 1)
  call("udp send unconnected", c.send, u, "x")
  call("udp send table data", c.send, c, {})
  call("udp send number", c.send, 5, "x")
  call("udp receive string size", u.receive, u, "x")
  call("udp receive NaN size", u.receive, u, 0/0)
  call("udp receivefrom connected", u.receivefrom, c)
  local tcp = socket.tcp()
  call("udp receive tcp", u.receive, tcp)
  tcp:close()
  call("udp setsockname connected", u.setsockname, c, "127.0.0.1", 0)
  call("udp setsockname number host", u.setsockname, u, 5, 0)
  call("udp setsockname bad port", u.setsockname, u, "127.0.0.1", "x")
  call("udp setpeername number", u.setpeername, 5)
  call("udp setpeername bad port", u.setpeername, u, "127.0.0.1", -1)
  v:settimeout(0)
  call("udp receive nothing", v.receive, v)
  call("udp receivefrom nothing", v.receivefrom, v)
  local d = socket.unix_dgram and socket.unix_dgram() or require("socket.unix").dgram()
  call("unixdgram sendto long path", d.sendto, d, "x", string.rep("p", 200))
  call("unixdgram sendto number path", d.sendto, d, "x", 5)
  call("unixdgram send unconnected", d.send, d, "x")
  call("unixdgram getpeername unconnected", d.getpeername, d)
  for _, o in ipairs({ u, v, c, d }) do o:close() end

  -- names and select
  local resolve = upvalue(socket.dns.toip, "c")
  call("resolve number", resolve.resolve, 5)
  call("nameinfo number", resolve.nameinfo, 5)
  call("nameinfo not numeric", resolve.nameinfo, "not an address")
  call("servicename string", resolve.servicename, "x")
  call("servicename float", resolve.servicename, 0.5)
  call("servicename huge", resolve.servicename, 70000)
  call("select_fds number", resolve.select_fds, 5, {})
  call("select_fds second number", resolve.select_fds, {}, 5)
  call("select_fds bad timeout", resolve.select_fds, {}, {}, "x")
  call("select_fds NaN timeout", resolve.select_fds, {}, {}, 0/0)
  call("select_fds nothing", resolve.select_fds, {}, {}, 0)
  call("select_fds bad descriptor", resolve.select_fds, { -5 }, {}, 0)
  call("socket.select string", socket.select, "x", {}, 0)
  return calls
end
