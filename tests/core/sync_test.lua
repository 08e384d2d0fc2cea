-- Synchronisation (SPEC §2): event, queue, semaphore, lock, pool; and scale (10,000
-- sleeping fibers).
local gsock = require "gsock"

local function fresh_now()
  gsock.sleep(0)
  return gsock.now()
end

describe("gsock.event", function()
  it("wait blocks until another fiber sets it, then gives true", function()
    local ev = gsock.event()
    local t0 = fresh_now()
    gsock.spawn(function() gsock.sleep(0.05); ev:set() end)
    assert.is_true(ev:wait(2))
    local dt = gsock.now() - t0
    assert.is_true(dt >= 0.04 and dt < 0.5, "woke after " .. dt)
    assert.is_true(ev:is_set())
  end)

  it("wait on a set event gives true at once; clear makes wait block again", function()
    local ev = gsock.event()
    assert.is_false(ev:is_set())
    ev:set()
    assert.is_true(ev:is_set())
    assert.is_true(ev:wait(0))
    ev:clear()
    assert.is_false(ev:is_set())
    assert.is_false(ev:wait(0.02))
  end)

  it("wait gives false when the timeout passes first (it does not raise)", function()
    local ev = gsock.event()
    local t0 = fresh_now()
    local ok, r = pcall(ev.wait, ev, 0.05)
    assert.is_true(ok, tostring(r))
    assert.is_false(r)
    assert.is_true(gsock.now() - t0 >= 0.04)
  end)

  it("set wakes every waiter", function()
    local ev = gsock.event()
    local woken = 0
    local list = {}
    for i = 1, 5 do list[i] = gsock.spawn(function() if ev:wait(2) then woken = woken + 1 end end) end
    gsock.sleep(0)
    assert.equals(0, woken)
    ev:set()
    gsock.joinall(list, 2)
    assert.equals(5, woken)
  end)
end)

describe("gsock.queue", function()
  it("is first in, first out, and size() counts the items", function()
    local q = gsock.queue()
    assert.equals(0, q:size())
    for i = 1, 5 do q:put(i) end
    assert.equals(5, q:size())
    local got = {}
    for i = 1, 5 do got[i] = q:get() end
    assert.same({ 1, 2, 3, 4, 5 }, got)
    assert.equals(0, q:size())
  end)

  it("get blocks until another fiber puts", function()
    local q = gsock.queue()
    local t0 = fresh_now()
    gsock.spawn(function() gsock.sleep(0.05); q:put("late") end)
    assert.equals("late", q:get(2))
    assert.is_true(gsock.now() - t0 >= 0.04)
  end)

  it("get with a timeout on an empty queue raises a timeout error", function()
    local q = gsock.queue()
    local t0 = fresh_now()
    local ok, err = pcall(q.get, q, 0.05)
    local dt = gsock.now() - t0
    assert.is_false(ok)
    assert.is_true(gsock.is_timeout(err), tostring(err))
    assert.is_true(dt >= 0.04 and dt < 0.5, "raised after " .. dt)
  end)

  it("holds nil as an item", function()
    local q = gsock.queue()
    q:put(nil)
    q:put(2)
    q:put(nil)
    assert.equals(3, q:size())
    local a = table.pack(q:get())
    assert.same({ n = 1 }, a)
    assert.equals(2, q:get())
    assert.is_nil(q:get(0.5))
    assert.equals(0, q:size())
  end)

  it("get_nowait on an empty queue raises", function()
    local q = gsock.queue()
    assert.has_error(function() q:get_nowait() end)
    q:put_nowait("x")
    assert.equals("x", q:get_nowait())
    assert.has_error(function() q:get_nowait() end)
  end)

  it("put_nowait on a full queue raises", function()
    local q = gsock.queue(1)
    q:put_nowait(1)
    assert.has_error(function() q:put_nowait(2) end)
    assert.equals(1, q:size())
  end)

  it("a bounded put blocks until a get makes room", function()
    local q = gsock.queue(1)
    q:put("first")
    local put_done = false
    local putter = gsock.spawn(function() q:put("second"); put_done = true end)
    gsock.sleep(0.05)
    assert.is_false(put_done)
    assert.equals(1, q:size())
    assert.equals("first", q:get())
    assert.is_true(putter:join(2))
    assert.is_true(put_done)
    assert.equals("second", q:get(1))
  end)

  it("a bounded put with a timeout raises a timeout error when no room comes", function()
    local q = gsock.queue(1)
    q:put(1)
    local ok, err = pcall(q.put, q, 2, 0.03)
    assert.is_false(ok)
    assert.is_true(gsock.is_timeout(err), tostring(err))
    assert.equals(1, q:size())
  end)

  it("delivers each item to exactly one of several getters", function()
    local q = gsock.queue()
    local got = {}
    local list = {}
    for i = 1, 3 do list[i] = gsock.spawn(function() local v = q:get(2); got[#got + 1] = v end) end
    gsock.sleep(0)
    q:put("a"); q:put("b"); q:put("c")
    gsock.joinall(list, 2)
    table.sort(got)
    assert.same({ "a", "b", "c" }, got)
  end)

  it("an item is not lost when the getter it woke is killed first", function()
    local q = gsock.queue()
    local doomed = gsock.spawn(function() return q:get() end)
    local survivor = gsock.spawn(function() return q:get(2) end)
    gsock.sleep(0)
    q:put("item")          -- wakes `doomed`, the first waiter...
    doomed:kill()          -- ...which dies before it takes the item
    assert.equals("item", survivor:get())
  end)
end)

describe("gsock.semaphore", function()
  it("gives n permits, then acquire blocks until a release", function()
    local sem = gsock.semaphore(2)
    assert.is_true(sem:acquire())
    assert.is_true(sem:acquire())
    local got = false
    local f = gsock.spawn(function() got = sem:acquire(2) end)
    gsock.sleep(0.03)
    assert.is_false(got)
    sem:release()
    f:join(2)
    assert.is_true(got)
  end)

  it("a permit is not lost when the waiter it woke is killed first", function()
    local sem = gsock.semaphore(1)
    sem:acquire()
    local doomed = gsock.spawn(function() return sem:acquire() end)
    local survivor = gsock.spawn(function() return sem:acquire(2) end)
    gsock.sleep(0)
    sem:release()          -- wakes `doomed`, the first waiter...
    doomed:kill()          -- ...which dies before it takes the permit
    assert.is_true(survivor:get())
  end)

  it("defaults to one permit", function()
    local sem = gsock.semaphore()
    assert.is_true(sem:acquire())
    assert.is_false(sem:acquire(0.02))
    sem:release()
    assert.is_true(sem:acquire(0.02))
  end)

  it("acquire with a timeout gives false when it passes (it does not raise)", function()
    local sem = gsock.semaphore(0)
    local t0 = fresh_now()
    local ok, r = pcall(sem.acquire, sem, 0.05)
    assert.is_true(ok, tostring(r))
    assert.is_false(r)
    assert.is_true(gsock.now() - t0 >= 0.04)
  end)

  it("as a <close> variable releases when the scope ends", function()
    local sem = gsock.semaphore(1)
    do
      sem:acquire()
      local _ <close> = sem
      assert.is_false(sem:acquire(0.01))
    end
    assert.is_true(sem:acquire(0.01))
    sem:release()
  end)

  it("as a <close> variable releases when the scope ends by an error", function()
    local sem = gsock.semaphore(1)
    pcall(function()
      sem:acquire()
      local _ <close> = sem
      error("leaving")
    end)
    assert.is_true(sem:acquire(0.01))
  end)

  it("bounds concurrency: never more than n holders at once", function()
    local sem = gsock.semaphore(3)
    local inside, max_inside = 0, 0
    local list = {}
    for i = 1, 12 do
      list[i] = gsock.spawn(function()
        sem:acquire()
        local _ <close> = sem
        inside = inside + 1
        max_inside = math.max(max_inside, inside)
        gsock.sleep(0.01)
        inside = inside - 1
      end)
    end
    gsock.joinall(list, 5)
    assert.equals(3, max_inside)
  end)
end)

describe("gsock.lock", function()
  it("gives mutual exclusion across waits", function()
    local lock = gsock.lock()
    local inside, overlap = 0, false
    local list = {}
    for i = 1, 5 do
      list[i] = gsock.spawn(function()
        for _ = 1, 3 do
          lock:acquire()
          inside = inside + 1
          if inside > 1 then overlap = true end
          gsock.sleep(0.002)
          inside = inside - 1
          lock:release()
        end
      end)
    end
    gsock.joinall(list, 5)
    for _, f in ipairs(list) do assert.is_true(f:successful(), tostring(f.error)) end
    assert.is_false(overlap)
  end)

  it("releasing a lock that is not held raises", function()
    local lock = gsock.lock()
    assert.has_error(function() lock:release() end)
    lock:acquire()
    lock:release()
    assert.has_error(function() lock:release() end)
  end)
end)

describe("gsock.pool", function()
  it("never runs more than its size at once", function()
    local pool = gsock.pool(5)
    local running, max_running, done = 0, 0, 0
    for _ = 1, 30 do
      pool:spawn(function()
        running = running + 1
        max_running = math.max(max_running, running)
        gsock.sleep(0.01)
        running = running - 1
        done = done + 1
      end)
      assert.is_true(running <= 5)
    end
    assert.is_true(pool:join(5))
    assert.equals(30, done)
    assert.equals(5, max_running)
  end)

  it("spawn blocks while the pool is full", function()
    local pool = gsock.pool(1)
    pool:spawn(function() gsock.sleep(0.05) end)
    local t0 = fresh_now()
    pool:spawn(function() end)
    local dt = gsock.now() - t0
    assert.is_true(dt >= 0.03, "the second spawn returned after " .. dt .. " s")
    assert.is_true(pool:join(2))
  end)

  it("spawn returns the fiber, whose results get() gives", function()
    local pool = gsock.pool(2)
    local f = pool:spawn(function(a, b) return a + b end, 2, 3)
    assert.equals(5, f:get(1))
  end)

  it("join gives false when the timeout passes first", function()
    local pool = gsock.pool(2)
    local ev = gsock.event()
    pool:spawn(function() ev:wait() end)
    assert.is_false(pool:join(0.03))
    ev:set()
    assert.is_true(pool:join(2))
  end)

  it("a fiber that raised frees its slot", function()
    local pool = gsock.pool(1)
    local failing = pool:spawn(function() error("expected failure (pool)") end)
    local ok = pcall(failing.get, failing)    -- joined: not logged
    assert.is_false(ok)
    local f = pool:spawn(function() return "next" end)
    assert.equals("next", f:get(1))
  end)
end)

describe("scale", function()
  it("10,000 fibers each sleeping 0.1 s all finish in well under 1 s", function()
    local n, done = 10000, 0
    local list = {}
    local t0 = fresh_now()
    for i = 1, n do list[i] = gsock.spawn(function() gsock.sleep(0.1); done = done + 1 end) end
    gsock.joinall(list, 5)
    local dt = gsock.now() - t0
    assert.equals(n, done)
    assert.is_true(dt < 0.6, "10,000 sleeps of 0.1 s took " .. dt .. " s")
  end)
end)
