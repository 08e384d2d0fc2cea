-- Small helpers shared by the core tests.
--   local util = dofile(here .. "support/util.lua")
local gsock = require "gsock"
local M = {}

--- The loop's clock after a loop turn, so that it is not stale (gsock.now() is the
--- time cached at the start of the turn; shell commands run by a test make it old).
function M.fresh_now()
  gsock.sleep(0)
  return gsock.now()
end

--- Keeps the CPU busy for `seconds` without yielding (no wait point).
function M.busy(seconds)
  local stop = os.clock() + seconds
  while os.clock() < stop do end
end

--- A wall clock independent of the loop's cached time: seconds since boot, from
--- /proc/uptime (10 ms resolution).
function M.wall()
  local f = assert(io.open("/proc/uptime", "r"))
  local s = f:read("n")
  f:close()
  return s
end

--- Keeps the fiber running without a wait point for at least `seconds` of wall time;
--- returns the wall time it took.
function M.busy_wall(seconds)
  local start = M.wall()
  while M.wall() - start < seconds do end
  return M.wall() - start
end

--- Lets other fibers run until cond() holds; raises after `limit` seconds (default 2).
function M.wait_until(cond, what, limit)
  local deadline = M.fresh_now() + (limit or 2)
  while not cond() do
    if gsock.now() > deadline then error("gave up waiting until " .. (what or "a condition"), 2) end
    gsock.sleep(0.001)
  end
end

--- Spawns fn(...) and returns its fiber once fn has started. fn must wait before it
--- yields in any other way, so it is parked in that wait when this returns.
function M.spawn_waiting(fn, ...)
  local started = false
  local f = gsock.spawn(function(...) started = true; return fn(...) end, ...)
  M.wait_until(function() return started end, "the fiber started")
  return f
end

--- Runs fn(...) under a guard timeout of `limit` seconds; returns ok, err, seconds.
function M.timed(limit, fn, ...)
  local t0 = M.fresh_now()
  local ok, err = pcall(gsock.with_timeout, limit, fn, ...)
  return ok, err, gsock.now() - t0
end

return M
