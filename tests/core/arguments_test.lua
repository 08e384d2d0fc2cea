-- Hostile argument shapes (issue 10, finding B): each call here once ended the process by
-- a signal (Swift conversion traps, libev aborts, foreign memory in __gc) or froze the
-- loop (NaN timeouts). Each runs in its own gsockd subprocess, so that a crash fails
-- the test instead of killing the runner; the subprocess prints what the call gave.
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/core/"
local script = dofile(here .. "support/script.lua")

local prelude = [[
local socket = require "socket"
local function show(...)
  local r = table.pack(pcall(...))
  for i = 1, r.n do r[i] = tostring(r[i]) end
  print("RESULT " .. table.concat(r, " ", 1, r.n))
end
local function pair()
  local server = assert(socket.bind("127.0.0.1", 0))
  local _, port = server:getsockname()
  local c = assert(socket.connect("127.0.0.1", port))
  return c, assert(server:accept()), server
end
]]

local function run(body, limit)
  local r = script.run(prelude .. body .. '\nprint("FINISHED")\n', { limit = limit or 10 })
  local how = ("status %s\n--- stdout ---\n%s--- stderr ---\n%s"):format(tostring(r.status), r.stdout, r.stderr)
  assert.equals(0, r.status, how)
  assert.matches("FINISHED", r.stdout, 1, true)
  return r.stdout, how
end

local function expect(body, ...)
  local out, how = run(body)
  for _, needle in ipairs({ ... }) do
    assert(out:find(needle, 1, true), ("expected %q in the output\n%s"):format(needle, how))
  end
end

describe("arguments: conversions that trapped", function()
  it("setfd out of the descriptor range is an argument error", function()
    expect([[
      local s = socket.tcp()
      show(s.setfd, s, 2^31)
      show(s.setfd, s, math.maxinteger)
      show(s.setfd, s, -2^63)
      show(s.setfd, s, 0.5)
    ]], "(value out of range)", "(number has no integer representation)")
  end)

  it("setstats with NaN, 1e308 or inf is an argument error", function()
    expect([[
      local s = socket.tcp()
      show(s.setstats, s, 0/0, 2, 3)
      show(s.setstats, s, 1e308, 2, 3)
      show(s.setstats, s, 1, math.huge, 3)
      show(s.setstats, s, 1, 2, 0/0)
      show(s.setstats, s, math.maxinteger, math.mininteger, 3)
      print("STATS", s:getstats())
    ]], "bad argument #2 to '?' (number has no integer representation)",
        "bad argument #3 to '?' (number has no integer representation)",
        "bad argument #4 to '?' (age must be a finite number)",
        -- getstats gives floats, as LuaSocket pushes them
        "STATS\t" .. tostring(math.maxinteger + 0.0) .. "\t0.0\t")
  end)

  it("udp receive sizes of NaN or inf do not trap", function()
    expect([[
      local u = socket.udp()
      u:setsockname("127.0.0.1", 0)
      u:settimeout(0)
      show(u.receive, u, 0/0)
      show(u.receivefrom, u, math.huge)
      show(u.receive, u, -math.huge)
    ]], "bad argument #2 to '?' (number has no integer representation)",
        "RESULT true nil timeout")
  end)

  it("receiveuntil with math.maxinteger does not overflow", function()
    expect([[
      local c, a = pair()
      c:send("abc--def")
      show(function() return a:receiveuntil("--", math.maxinteger)() end)
      a:settimeout(0.05)
      local reader = a:receiveuntil("--")
      show(reader, math.maxinteger)
    ]], "RESULT true abc", "RESULT true nil timeout def")
  end)

  it("a fiber whose results count was tampered with gives an error, not a trap", function()
    expect([[
      local f = gsock.spawn(function() return 1, 2 end)
      f:join()
      debug.setuservalue(f, { n = 2^40 }, 1)
      show(f.get, f)
      debug.setuservalue(f, { n = -5 }, 1)
      show(f.get, f)
    ]], "too many results")
  end)

  it("a fiber returning or given thousands of values keeps the heap whole", function()
    expect([[
      local f = gsock.spawn(function() return table.unpack({}, 1, 5000) end)
      local g = gsock.spawn(function(...) return select("#", ...) end, table.unpack({}, 1, 500))
      show(function() return select("#", f:get()) end)
      show(g.get, g)
      collectgarbage()
    ]], "RESULT true 5000", "RESULT true 500")
  end)
end)

describe("arguments: descriptors libev must not see", function()
  it("wait_read, io and select refuse the loop's own, negative and huge descriptors", function()
    expect([[
      local owned = 0
      for fd = 0, 40 do
        local p = io.popen("readlink /proc/" .. io.open("/proc/self/stat"):read("n") .. "/fd/" .. fd .. " 2>/dev/null")
        local target = p:read("a"); p:close()
        if target:find("anon_inode:%[event") or target:find("anon_inode:%[signalfd") then
          owned = owned + 1
          show(gsock.wait_read, fd, 0.01)
          show(gsock.wait_write, fd, 0.01)
          show(gsock.io, fd, "r")
          show(socket.select, { { getfd = function() return fd end } }, {}, 0.01)
        end
      end
      print("OWNED", owned)
      show(gsock.wait_read, -1, 0.01)
      show(gsock.wait_read, 2^32 - 1, 0.01)
      show(gsock.wait_read, { getfd = function() return 2^32 - 1 end }, 0.01)
      show(socket.select, { { getfd = function() return 2^32 - 1 end } }, {}, 0.01)
      show(socket.select, { -5 }, {}, 0.01)
    ]], "OWNED", "RESULT false Bad file descriptor", "invalid descriptor")
  end)
end)

describe("arguments: one descriptor, one socket", function()
  -- Two sockets on one descriptor: one's close took it from under the other's watcher, and
  -- libev aborted the process at the next epoll_ctl (EBADF), found by the argument fuzzer.
  it("setfd refuses a descriptor that is not open, and one another socket holds; its own, -1 and an open "
    .. "descriptor nothing holds are taken", function()
    expect([[
      local l = assert(socket.bind("127.0.0.1", 0))
      local _, port = l:getsockname()
      local x = assert(socket.bind("127.0.0.1", 0))
      local n = x:getfd()
      x:close()
      local ghost = socket.tcp()
      show(ghost.setfd, ghost, n)                    -- free now: the next socket gets it
      local c = socket.tcp()
      gsock.spawn(function() print("CONNECT", c:connect("127.0.0.1", port)) end)
      gsock.spawn(function()
        print("SAME", c:getfd() == n)
        show(ghost.setfd, ghost, c:getfd())          -- c's
        print("GHOST", ghost:getfd())
        ghost:close()
      end)
      gsock.sleep(0.05)
      show(c.setfd, c, c:getfd())                    -- its own
      local fd = c:getfd()
      local other = socket.tcp()
      show(other.setfd, other, 0)                    -- open (stdin), held by no socket
      print("OTHER", other:getfd())
      show(other.setfd, other, -1)
      print("ENDED", c:send("x"), fd)
    ]], "RESULT false bad argument #2 to '?' (not an open descriptor)", "SAME\ttrue",
      "RESULT false bad argument #2 to '?' (descriptor owned by another socket)", "GHOST\t-1", "CONNECT\t1",
      "RESULT true", "OTHER\t0", "ENDED\t1")
  end)
end)

describe("arguments: descriptors epoll refuses", function()
  it("a regular file (epoll_ctl: EPERM) is reported ready, and nothing aborts", function()
    expect([[
      local path = os.tmpname()
      local f = io.open(path, "w")
      local pid = io.open("/proc/self/stat"):read("n")
      local fd
      for n = 0, 64 do
        local p = io.popen("readlink /proc/" .. pid .. "/fd/" .. n .. " 2>/dev/null")
        if p:read("a"):gsub("\n", "") == path then fd = n end
        p:close()
      end
      print("FD", fd)
      show(gsock.wait_read, fd, 1)
      show(gsock.wait_write, fd, 1)
      show(gsock.wait, gsock.io(fd, "rw"), 1)
      f:close()
      os.remove(path)
    ]], "RESULT true\nRESULT true\nRESULT true")
  end)
end)

describe("arguments: metamethods called on the wrong values", function()
  it("a socket's __gc, __close and __tostring on foreign values touch nothing", function()
    expect([[
      local s = socket.tcp()
      local mt = getmetatable(s)
      show(mt.__gc, io.stdout)
      show(mt.__gc, gsock.event())
      show(mt.__gc, gsock.current())
      show(mt.__tostring, io.stdout)
      show(mt.__close, io.stdout)
      show(mt.__gc, s)
      show(mt.__gc, s)
      show(s.close, s)
      show(s.getfd, s)
      io.stdout:write("STDOUT STILL WORKS\n")
      local f = gsock.spawn(function() end)
      f:join()
      local fmt = getmetatable(f)
      if fmt and fmt.__gc then show(fmt.__gc, io.stdout); show(fmt.__gc, s) end
      collectgarbage()
    ]], "STDOUT STILL WORKS")
  end)
end)

describe("arguments: timeouts that froze the loop", function()
  it("NaN is an argument error, +inf waits for ever, -inf is a negative", function()
    expect([[
      local s = socket.tcp()
      show(socket.select, { s }, {}, 0/0)
      show(s.settimeout, s, 0/0)
      show(s.settimeouts, s, 1, 0/0, 1)
      show(gsock.sleep, 0/0)
      show(gsock.wait_read, 0, 0/0)
      show(gsock.wait_read, 0, -math.huge)
      local e = gsock.event()
      show(e.wait, e, 0/0)
      local f = gsock.spawn(function() e:wait(math.huge); return "woken" end)
      gsock.sleep(0.01)
      e:set()
      show(f.get, f, 1)
      show(s.settimeout, s, -math.huge)
      print("GETTIMEOUT", s:gettimeout())
      show(gsock.sleep, 1e-300)
    ]], "bad argument #3 to 'select_fds' (timeout is NaN)",
        "bad argument #2 to '?' (timeout is NaN)",
        "bad argument #3 to '?' (timeout is NaN)",
        "bad argument #1 to 'gsock.sleep' (timeout is NaN)",
        "bad argument #2 to 'gsock.wait_read' (timeout is NaN)",
        "bad argument #2 to 'gsock.wait_read' (timeout must be a non-negative number or nil)",
        "bad argument #1 to 'wait' (timeout is NaN)", "GETTIMEOUT\t-inf",
        "RESULT true woken")
  end)
end)
