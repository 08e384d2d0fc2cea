-- Timeouts (SPEC §2): gsock.timeout's timers, which raise in the fiber that made
-- them at its current or next wait, with_timeout, and the deadlines that waits made
-- of several waits (joinall, queue:put, semaphore:acquire) count down.
local core, errors = ...

local error, math_max, type = error, math.max, type
local now = core.now

local timeouts = {}

timeouts.timeout = core.timeout

--- Runs fn(...) under a timeout: returns its results or raises the timeout error.
function timeouts.with_timeout(seconds, fn, ...)
  local t <close> = core.timeout(seconds)
  return fn(...)
end

--- What the waits made of several waits share: deadlines.
local deadlines = {}

--- Remaining seconds until `deadline`, never negative; nil for no deadline.
function deadlines.remaining(deadline)
  return deadline and math_max(0, deadline - now())
end

--- The deadline of the `timeout` argument #argn of `fname` (nil: none); an argument
--- error at the caller of `fname` when it is not a non-negative number or nil.
function deadlines.of(timeout, fname, argn)
  if timeout == nil then return nil end
  if type(timeout) ~= "number" or timeout < 0 then
    error(errors.bad_argument(argn, fname, "timeout must be a non-negative number or nil"), 3)
  end
  return now() + timeout
end

return timeouts, deadlines
