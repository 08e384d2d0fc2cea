-- gsock: the fiber API of gsockd (SPEC §2 and §3).
--
-- The Swift core provides the primitives: fibers, parking a fiber on a watcher, a
-- timer or a wait list, and timeouts. This file composes them into what users call,
-- as gevent's Python layer composes its hub: events, queues, semaphores, pools,
-- joinall/killall, with_timeout, and coroutine functions that let a wait inside a
-- user's own coroutine reach the scheduler.
local core = ...

local error, getmetatable, ipairs, math_max, math_type, select, setmetatable, type =
      error, getmetatable, ipairs, math.max, math.type, select, setmetatable, type
local now, waitlist = core.now, core.waitlist
local fiber_join, fiber_kill, fiber_link = core.fiber_join, core.fiber_kill, core.fiber_link

local gsock = {}

-- Errors ----------------------------------------------------------------------

local error_mt = core.error_metatable
error_mt.__tostring = function(e) return e.message end

local function new_error(kind, message, errno)
  return setmetatable({ kind = kind, message = message, errno = errno }, error_mt)
end

local function timeout_error() return new_error("timeout", "timed out") end

--- True when `e` is a timeout error raised by gsock.
function gsock.is_timeout(e)
  return getmetatable(e) == error_mt and e.kind == "timeout"
end

--- Remaining seconds until `deadline`, never negative; nil for no deadline.
local function remaining(deadline)
  return deadline and math_max(0, deadline - now())
end

local function deadline_of(timeout, fname, argn)
  if timeout == nil then return nil end
  if type(timeout) ~= "number" or timeout < 0 then
    error(("bad argument #%d to '%s' (timeout must be a non-negative number or nil)"):format(argn, fname), 3)
  end
  return now() + timeout
end

-- Fibers ----------------------------------------------------------------------

gsock.spawn = core.spawn
gsock.spawn_later = core.spawn_later
gsock.current = core.current
gsock.sleep = core.sleep
gsock.now = core.now
gsock.stats = core.stats
gsock.dump = core.dump
gsock.log = core.log
--- Calls fn(f) when fiber f ends (at once if it has ended).
function gsock._link(f, fn)
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
function gsock.joinall(fibers, timeout)
  local deadline = deadline_of(timeout, "joinall", 2)
  local done = {}
  for _, f in ipairs(fibers) do
    if fiber_join(f, remaining(deadline)) then done[#done + 1] = f end
  end
  return done
end

--- Kills every fiber of the list and waits until they are dead (up to `timeout`).
function gsock.killall(fibers, err, timeout)
  for _, f in ipairs(fibers) do fiber_kill(f, err) end
  return gsock.joinall(fibers, timeout)
end

-- Timeouts --------------------------------------------------------------------

gsock.timeout = core.timeout

--- Runs fn(...) under a timeout: returns its results or raises the timeout error.
function gsock.with_timeout(seconds, fn, ...)
  local t <close> = core.timeout(seconds)
  return fn(...)
end

-- Waiting on descriptors --------------------------------------------------------

gsock.wait_read = core.wait_read
gsock.wait_write = core.wait_write
gsock.wait_readwrite = core.wait_readwrite
gsock.io = core.io
gsock.wait = core.wait
gsock.cancel_wait = core.cancel_wait

-- Event -------------------------------------------------------------------------

local Event = {}
Event.__index = Event
Event.__name = "gsock.event"

--- An event: fibers wait until it is set.
function gsock.event()
  return setmetatable({ flag = false, waiters = waitlist() }, Event)
end

function Event:set()
  self.flag = true
  self.waiters:notify_all()
end

function Event:clear() self.flag = false end

function Event:is_set() return self.flag end

--- Waits until the event is set; false if `timeout` passed first.
function Event:wait(timeout)
  if self.flag then return true end
  return self.waiters:wait(timeout) or self.flag
end

-- Queue -------------------------------------------------------------------------

local Queue = {}
Queue.__index = Queue
Queue.__name = "gsock.queue"

--- A FIFO queue; `maxsize` nil or 0 means unbounded. nil is a legal item.
function gsock.queue(maxsize)
  if maxsize ~= nil and (math_type(maxsize) ~= "integer" or maxsize < 0) then
    error("bad argument #1 to 'queue' (maxsize must be a non-negative integer or nil)", 2)
  end
  return setmetatable({ items = {}, head = 1, tail = 0, maxsize = maxsize or 0,
                        getters = waitlist(), putters = waitlist() }, Queue)
end

function Queue:size() return self.tail - self.head + 1 end

function Queue:empty() return self.tail < self.head end

function Queue:full() return self.maxsize > 0 and self:size() >= self.maxsize end

local function enqueue_item(q, v)
  q.tail = q.tail + 1
  q.items[q.tail] = v
  q.getters:notify(1)
end

local function dequeue_item(q)
  local head = q.head
  local v = q.items[head]
  q.items[head] = nil
  q.head = head + 1
  q.putters:notify(1)
  return v
end

function Queue:put_nowait(v)
  if self:full() then error(new_error("full", "queue is full"), 2) end
  enqueue_item(self, v)
end

function Queue:get_nowait()
  if self:empty() then error(new_error("empty", "queue is empty"), 2) end
  return dequeue_item(self)
end

--- Puts `v`, waiting while the queue is full; raises a timeout error after `timeout`.
function Queue:put(v, timeout)
  local deadline = deadline_of(timeout, "put", 2)
  while self:full() do
    if not self.putters:wait(remaining(deadline)) and self:full() then error(timeout_error(), 2) end
  end
  enqueue_item(self, v)
end

--- Takes the oldest item, waiting while the queue is empty; raises a timeout error after `timeout`.
function Queue:get(timeout)
  local deadline = deadline_of(timeout, "get", 1)
  while self:empty() do
    if not self.getters:wait(remaining(deadline)) and self:empty() then error(timeout_error(), 2) end
  end
  return dequeue_item(self)
end

-- Semaphore and lock ----------------------------------------------------------------

local Semaphore = {}
Semaphore.__index = Semaphore
Semaphore.__name = "gsock.semaphore"

--- A counting semaphore with `n` (default 1) permits.
function gsock.semaphore(n)
  n = n == nil and 1 or n
  if math_type(n) ~= "integer" or n < 0 then
    error("bad argument #1 to 'semaphore' (a non-negative integer expected)", 2)
  end
  return setmetatable({ counter = n, waiters = waitlist() }, Semaphore)
end

--- Takes a permit, waiting for one; false if `timeout` passed first.
function Semaphore:acquire(timeout)
  if self.counter > 0 and self.waiters:waiting() == 0 then
    self.counter = self.counter - 1
    return true
  end
  local deadline = deadline_of(timeout, "acquire", 1)
  while self.counter <= 0 do
    if not self.waiters:wait(remaining(deadline)) and self.counter <= 0 then return false end
  end
  self.counter = self.counter - 1
  return true
end

function Semaphore:release()
  if self.bound and self.counter >= self.bound then
    error("release of an unlocked lock", 2)
  end
  self.counter = self.counter + 1
  self.waiters:notify(1)
end

function Semaphore:locked() return self.counter <= 0 end

Semaphore.__close = Semaphore.release

--- A lock: a semaphore of one permit that cannot be released twice.
function gsock.lock()
  local lock = gsock.semaphore(1)
  lock.bound = 1
  return lock
end

-- Pool --------------------------------------------------------------------------

local Pool = {}
Pool.__index = Pool
Pool.__name = "gsock.pool"

--- A group of at most `size` running fibers.
function gsock.pool(size)
  if math_type(size) ~= "integer" or size < 1 then
    error("bad argument #1 to 'pool' (a positive integer expected)", 2)
  end
  local pool = setmetatable({ size = size, slots = gsock.semaphore(size), fibers = {}, count = 0,
                              empty = gsock.event() }, Pool)
  pool.empty:set()
  pool.on_done = function(f)
    pool.fibers[f] = nil
    pool.count = pool.count - 1
    pool.slots:release()
    if pool.count == 0 then pool.empty:set() end
  end
  return pool
end

--- Spawns fn(...) in the pool, first waiting while `size` of its fibers run.
function Pool:spawn(fn, ...)
  self.slots:acquire()
  local f = core.spawn(fn, ...)
  self.fibers[f] = true
  self.count = self.count + 1
  self.empty:clear()
  gsock._link(f, self.on_done)
  return f
end

--- Waits until every fiber of the pool has ended; false if `timeout` passed first.
function Pool:join(timeout)
  return self.empty:wait(timeout)
end

function Pool:running() return self.count end

function Pool:free_count() return self.size - self.count end

--- Kills every fiber of the pool and waits for them (up to `timeout`).
function Pool:kill(err, timeout)
  local list = {}
  for f in pairs(self.fibers) do list[#list + 1] = f end
  return gsock.killall(list, err, timeout)
end

-- User coroutines -------------------------------------------------------------------
--
-- A wait inside a user's coroutine yields that coroutine with the park sentinel.
-- coroutine.resume passes such a yield outward (the enclosing thread parks too) and,
-- when the fiber is resumed, resumes the inner coroutine, so straight-line socket
-- code works inside iterators and coroutine.wrap as it does in copas and cqueues.

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

package.loaded.gsock = gsock
_G.gsock = gsock
return gsock
