-- Waits inside user coroutines (SPEC §2): coroutine.resume and coroutine.wrap, made
-- to pass a fiber's wait outward. A wait inside a user's coroutine yields that
-- coroutine with the park sentinel. coroutine.resume passes such a yield outward (the
-- enclosing thread parks too) and, when the fiber is resumed, resumes the inner
-- coroutine, so straight-line socket code works inside iterators and coroutine.wrap
-- as it does in copas and cqueues. This module replaces the two functions of the
-- standard `coroutine` table and returns nothing for gsock.
local core = ...

local error, type = error, type
local SENTINEL = core.park_sentinel
local co_create, co_resume, co_yield, co_status, co_close, co_isyieldable =
      coroutine.create, coroutine.resume, coroutine.yield, coroutine.status, coroutine.close,
      coroutine.isyieldable

local function forward(co, ok, first, ...)
  if ok and first == SENTINEL then
    if not co_isyieldable() then
      core.abandon_park()
      return false, "cannot wait inside this coroutine: the code that resumed it cannot yield "
                    .. "(a metamethod, an iterator or a C function such as table.sort's comparator)"
    end
    return forward(co, co_resume(co, co_yield(SENTINEL)))
  end
  return ok, first, ...
end

-- A fiber's thread is reused for a later fiber once it ends, unless Lua code was given it
-- (it may be a key of a table of per-coroutine state).
local co_running, thread_seen = coroutine.running, core.thread_seen
function coroutine.running()
  local co, main = co_running()
  thread_seen(co)
  return co, main
end

function coroutine.resume(co, ...)
  return forward(co, co_resume(co, ...))
end

local function wrap_results(co, ok, ...)
  if ok then return ... end
  local err = ...
  if co_status(co) == "dead" then
    local closed, close_err = co_close(co)
    if not closed then err = close_err end
  end
  if type(err) == "string" then error(err, 2) end
  error(err, 0)
end

function coroutine.wrap(f)
  local co = co_create(f)
  return function(...)
    return wrap_results(co, forward(co, co_resume(co, ...)))
  end
end
