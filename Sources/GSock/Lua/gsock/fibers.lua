-- Fibers (SPEC §2): spawning, the fiber handle's methods (join, get, kill, dead,
-- successful, id, error), joinall and killall. The Swift core runs the fibers; this
-- file gives the handle its methods and composes the calls on several fibers.
local core, errors, deadlines = ...

local error, ipairs = error, ipairs
local fiber_join, fiber_kill, fiber_link = core.fiber_join, core.fiber_kill, core.fiber_link
local timeout_error, remaining, deadline_of = errors.timeout, deadlines.remaining, deadlines.of

local fibers = {
  spawn = core.spawn,
  spawn_later = core.spawn_later,
  current = core.current,
  sleep = core.sleep,
  now = core.now,
  dump = core.dump,
}

--- Calls fn(f) when fiber f ends (at once if it has ended).
function fibers._link(f, fn)
  if not fiber_link(f, fn) then fn(f) end
end

local fiber_methods = {
  join = fiber_join,
  dead = core.fiber_dead,
  successful = core.fiber_successful,
}

local fiber_id, fiber_error, fiber_results = core.fiber_id, core.fiber_error, core.fiber_results
local fiber_mt = core.fiber_metatable
fiber_mt.__index = function(f, key)
  local method = fiber_methods[key]
  if method ~= nil then return method end
  if key == "id" then return fiber_id(f) end
  if key == "error" then return fiber_error(f) end
  return nil
end
fiber_mt.__tostring = function(f)
  local state = "alive"
  if core.fiber_dead(f) then state = core.fiber_successful(f) and "ended" or "failed" end
  return ("fiber %d (%s)"):format(fiber_id(f), state)
end

local function results_or_raise(ok, ...)
  if ok then return ... end
  error((...), 0)
end

--- Waits for the fiber, then returns its results or raises its error.
function fiber_methods:get(timeout)
  if not fiber_join(self, timeout) then error(timeout_error(), 0) end
  return results_or_raise(fiber_results(self))
end

--- Raises `err` (default: a "killed" error) in the fiber; with `block` (default true)
--- waits until it is dead, up to `timeout`.
function fiber_methods:kill(err, block, timeout)
  fiber_kill(self, err)
  if block ~= false and core.current() then
    return fiber_join(self, timeout)
  end
  return core.fiber_dead(self)
end

--- Waits for every fiber of the list; returns the list of those that ended.
function fibers.joinall(list, timeout)
  local deadline = deadline_of(timeout, "joinall", 2)
  local done = {}
  for _, f in ipairs(list) do
    if fiber_join(f, remaining(deadline)) then done[#done + 1] = f end
  end
  return done
end

--- Kills every fiber of the list and waits until they are dead (up to `timeout`).
function fibers.killall(list, err, timeout)
  for _, f in ipairs(list) do fiber_kill(f, err) end
  return fibers.joinall(list, timeout)
end

return fibers
