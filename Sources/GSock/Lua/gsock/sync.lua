-- Synchronising fibers (SPEC §2), as gevent's event, queue, lock and pool modules:
-- events, FIFO queues, semaphores and locks, and pools of at most N running fibers.
-- Each parks its fibers on the Swift core's wait lists.
local core, errors, deadlines, fibers = ...

local error, math_type, pairs, setmetatable = error, math.type, pairs, setmetatable
local waitlist = core.waitlist
local new_error, timeout_error, bad_argument = errors.new, errors.timeout, errors.bad_argument
local remaining, deadline_of = deadlines.remaining, deadlines.of

local sync = {}

-- Event -------------------------------------------------------------------------

local Event = {}
Event.__index = Event
Event.__name = "gsock.event"

--- An event: fibers wait until it is set.
function sync.event()
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
function sync.queue(maxsize)
  if maxsize ~= nil and (math_type(maxsize) ~= "integer" or maxsize < 0) then
    error(bad_argument(1, "queue", "maxsize must be a non-negative integer or nil"), 2)
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
function sync.semaphore(n)
  n = n == nil and 1 or n
  if math_type(n) ~= "integer" or n < 0 then
    error(bad_argument(1, "semaphore", "a non-negative integer expected"), 2)
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
function sync.lock()
  local lock = sync.semaphore(1)
  lock.bound = 1
  return lock
end

-- Pool --------------------------------------------------------------------------

local Pool = {}
Pool.__index = Pool
Pool.__name = "gsock.pool"

--- A group of at most `size` running fibers.
function sync.pool(size)
  if math_type(size) ~= "integer" or size < 1 then
    error(bad_argument(1, "pool", "a positive integer expected"), 2)
  end
  local pool = setmetatable({ size = size, slots = sync.semaphore(size), fibers = {}, count = 0,
                              empty = sync.event() }, Pool)
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
  fibers._link(f, self.on_done)
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
  return fibers.killall(list, err, timeout)
end

return sync
