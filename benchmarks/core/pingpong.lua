-- pingpong.lua: fiber ping-pong and yield/resume costs on gsockd (issue 2).
--
--   gsockd run benchmarks/core/pingpong.lua -- VARIANT [N]
--
-- rawfd.so (benchmarks/core/rawfd.c) must be on package.cpath: scripts/bench builds it
-- and passes its folder in GSOCK_BENCH_LIB.
--
-- Variants:
--   a       ping-pong over a socketpair, gsock.wait_read(fd) before each read (bare descriptor)
--   b       the same with one reusable watcher per end: gsock.io(fd, "r") + gsock.wait(w)
--   s       the same over a unix stream socket pair with gsockd's sockets (socket.unix):
--           receive(1) / send, the path handlers use; no rawfd calls
--   sleep0  two fibers alternating through gsock.sleep(0): N switches
--   sleep0x K fibers (K = 3rd argument, default 100) in gsock.sleep(0): N switches in all
--   queue   two fibers handing a token back and forth through two gsock.queue()s: N handoffs
--
-- Prints one line: "RESULT <variant> n=<N> seconds=<s> ns_per_rt=<ns>" for a and b,
-- "... ns_per_switch=<ns>" for the others.
local variant, n, extra = ...
variant = variant or "b"
n = math.tointeger(tonumber(n)) or 200000

local libdir = os.getenv("GSOCK_BENCH_LIB")
if not libdir then
  libdir = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
end
package.cpath = libdir .. "/?.so;" .. package.cpath
local rawfd = require "rawfd"  -- also for its monotonic clock
local gsock = require "gsock"

local MSG_SIZE = 1  -- keep equal to MSG_SIZE in pingpong.c
local MSG = ("x"):rep(MSG_SIZE)
local read, write, clock = rawfd.read, rawfd.write, rawfd.monotonic
local wait_read, wait, io = gsock.wait_read, gsock.wait, gsock.io

local function check(v, err, what)
  if v == nil then error(("%s failed: errno %s"):format(what, tostring(err)), 2) end
  return v
end

local function fail(what, err)
  error(("%s failed: %s"):format(what, tostring(err)), 2)
end

-- Each side: wait for readiness, read, write back (A writes first and counts round
-- trips). The checks are inline so the loop costs Lua no extra function calls.
local bodies = {}

function bodies.a(fa, fb)
  local pinger = function()
    for _ = 1, n do
      local w, err = write(fa, MSG)
      if w ~= MSG_SIZE then fail("write", err) end
      wait_read(fa)
      local s, err2 = read(fa, MSG_SIZE)
      if not s then fail("read", err2) end
    end
  end
  local ponger = function()
    for _ = 1, n do
      wait_read(fb)
      local s, err = read(fb, MSG_SIZE)
      if not s then fail("read", err) end
      local w, err2 = write(fb, s)
      if w ~= MSG_SIZE then fail("write", err2) end
    end
  end
  return pinger, ponger
end

function bodies.b(fa, fb)
  local pinger = function()
    local watcher <close> = io(fa, "r")
    for _ = 1, n do
      local w, err = write(fa, MSG)
      if w ~= MSG_SIZE then fail("write", err) end
      wait(watcher)
      local s, err2 = read(fa, MSG_SIZE)
      if not s then fail("read", err2) end
    end
  end
  local ponger = function()
    local watcher <close> = io(fb, "r")
    for _ = 1, n do
      wait(watcher)
      local s, err = read(fb, MSG_SIZE)
      if not s then fail("read", err) end
      local w, err2 = write(fb, s)
      if w ~= MSG_SIZE then fail("write", err2) end
    end
  end
  return pinger, ponger
end

function bodies.s(a, b)
  local pinger = function()
    for _ = 1, n do
      local sent, err = a:send(MSG)
      if sent ~= MSG_SIZE then fail("send", err) end
      local s, err2 = a:receive(MSG_SIZE)
      if not s then fail("receive", err2) end
    end
  end
  local ponger = function()
    for _ = 1, n do
      local s, err = b:receive(MSG_SIZE)
      if not s then fail("receive", err) end
      local sent, err2 = b:send(s)
      if sent ~= MSG_SIZE then fail("send", err2) end
    end
  end
  return pinger, ponger
end

--- A connected pair of unix stream sockets made with gsockd's socket.unix.
local function unix_pair()
  local unix = require "socket.unix"
  local path = os.tmpname()
  os.remove(path)
  local server = check(unix.stream())
  check(server:bind(path), "bind")
  check(server:listen(1), "listen")
  local a = check(unix.stream())
  check(a:connect(path), "connect")
  local b = check(server:accept(), "accept")
  server:close()
  os.remove(path)
  return a, b
end

local function report(unit, t, count)
  print(("RESULT %s n=%d seconds=%.6f %s=%.1f"):format(variant, count, t, unit, t * 1e9 / count))
end

local function run_fibers(fns)
  local fibers = {}
  local t0 = clock()
  for i, fn in ipairs(fns) do fibers[i] = gsock.spawn(fn) end
  for _, f in ipairs(fibers) do f:get() end
  return clock() - t0
end

if variant == "a" or variant == "b" then
  local fa, fb = rawfd.socketpair()
  check(fa, fb, "socketpair")
  local t = run_fibers({ bodies[variant](fa, fb) })
  rawfd.close(fa)
  rawfd.close(fb)
  report("ns_per_rt", t, n)

elseif variant == "s" then
  local a, b = unix_pair()
  local t = run_fibers({ bodies.s(a, b) })
  a:close()
  b:close()
  report("ns_per_rt", t, n)

elseif variant == "sleep0" or variant == "sleep0x" then
  local k = variant == "sleep0" and 2 or (math.tointeger(tonumber(extra)) or 100)
  local per = n // k
  local sleep = gsock.sleep
  local fn = function() for _ = 1, per do sleep(0) end end
  local fns = {}
  for i = 1, k do fns[i] = fn end
  report("ns_per_switch", run_fibers(fns), per * k)

elseif variant == "queue" then
  local q1, q2 = gsock.queue(), gsock.queue()
  local half = n // 2
  local t = run_fibers({
    function() for i = 1, half do q1:put(i); q2:get() end end,
    function() for _ = 1, half do q2:put(q1:get()) end end,
  })
  report("ns_per_switch", t, half * 2)

else
  error("unknown variant " .. tostring(variant) .. " (a, b, sleep0, sleep0x, queue)")
end
