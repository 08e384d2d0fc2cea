-- Fibers (SPEC §2): spawn, spawn_later, join, get, kill, current, state, joinall,
-- killall, sleep, and errors in fibers nobody joins.
local gsock = require "gsock"

-- A clock reading taken after a loop turn, so that it is not stale.
local function fresh_now()
  gsock.sleep(0)
  return gsock.now()
end

-- A fiber that waits until `ev` is set (for ever if nobody sets it).
local function waiter(ev)
  return gsock.spawn(function() ev:wait() end)
end

describe("gsock.spawn", function()
  it("runs the function with its arguments on a later loop turn, not inside spawn", function()
    local got
    local f = gsock.spawn(function(...) got = table.pack(...) end, 1, nil, "three")
    assert.is_nil(got)                         -- spawn only schedules
    assert.is_false(f:dead())
    assert.is_true(f:join(1))
    assert.same({ n = 3, 1, nil, "three" }, got)
  end)

  it("starts fibers in the order they were spawned", function()
    local order = {}
    local list = {}
    for i = 1, 5 do list[i] = gsock.spawn(function() order[#order + 1] = i end) end
    gsock.joinall(list, 1)
    assert.same({ 1, 2, 3, 4, 5 }, order)
  end)

  it("accepts a callable table", function()
    local called = false
    local callable = setmetatable({}, { __call = function(_, x) called = x end })
    gsock.spawn(callable, "yes"):join(1)
    assert.equals("yes", called)
  end)

  it("rejects a value that is not callable with an argument error", function()
    assert.has_error(function() gsock.spawn(42) end)
    local ok, err = pcall(function() gsock.spawn(42) end)
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'spawn'", err)
  end)

  it("gives each fiber a distinct integer id", function()
    local a, b = gsock.spawn(function() end), gsock.spawn(function() end)
    assert.equals("integer", math.type(a.id))
    assert.equals("integer", math.type(b.id))
    assert.is_true(a.id ~= b.id)
    local id = a.id
    gsock.joinall({ a, b }, 1)
    assert.equals(id, a.id)                    -- the same after the fiber ended
  end)
end)

describe("gsock.spawn_later", function()
  it("does not start the fiber before the delay and starts it after", function()
    local started_at
    local t0 = fresh_now()
    local f = gsock.spawn_later(0.15, function(x) started_at = gsock.now(); return x * 2 end, 21)
    gsock.sleep(0.05)
    assert.is_nil(started_at)
    assert.is_false(f:dead())
    assert.equals(42, f:get(2))
    assert.is_true(started_at - t0 >= 0.14, "started after " .. (started_at - t0) .. " s")
    assert.is_true(started_at - t0 < 0.6, "started after " .. (started_at - t0) .. " s")
  end)

  it("never runs the function of a fiber killed during its delay", function()
    local ran = false
    local f = gsock.spawn_later(0.05, function() ran = true end)
    f:kill()
    assert.is_true(f:dead())
    gsock.sleep(0.1)
    assert.is_false(ran)
    assert.is_false(f:successful())
    assert.equals("killed", f.error.kind)
  end)

  it("rejects a negative delay with an argument error", function()
    local ok, err = pcall(function() gsock.spawn_later(-1, function() end) end)
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'spawn_later'", err)
  end)
end)

describe("fiber:join", function()
  it("waits until the fiber has returned and gives true", function()
    local done = false
    local f = gsock.spawn(function() gsock.sleep(0.05); done = true end)
    assert.is_true(f:join())
    assert.is_true(done)
    assert.is_true(f:dead())
  end)

  it("gives true for a fiber that raised (however it ended)", function()
    local f = gsock.spawn(function() error("expected failure (joined)") end)
    assert.is_true(f:join(1))
    assert.is_true(f:dead())
  end)

  it("gives false when the timeout passes first, and the fiber goes on", function()
    local ev = gsock.event()
    local f = waiter(ev)
    local t0 = fresh_now()
    assert.is_false(f:join(0.05))
    assert.is_true(gsock.now() - t0 >= 0.04)
    assert.is_false(f:dead())
    ev:set()
    assert.is_true(f:join(1))
  end)

  it("with timeout 0 on a live fiber gives false at once", function()
    local ev = gsock.event()
    local f = waiter(ev)
    assert.is_false(f:join(0))
    ev:set()
    assert.is_true(f:join(1))
  end)

  it("lets several fibers join the same fiber", function()
    local ev = gsock.event()
    local target = waiter(ev)
    local joined = 0
    local joiners = {}
    for i = 1, 3 do joiners[i] = gsock.spawn(function() if target:join() then joined = joined + 1 end end) end
    gsock.sleep(0)
    assert.equals(0, joined)
    ev:set()
    gsock.joinall(joiners, 1)
    assert.equals(3, joined)
  end)

  it("refuses to join the running fiber with itself instead of hanging", function()
    local f = gsock.spawn(function() return gsock.current():join(0.5) end)
    assert.is_true(f:join(2))
    assert.is_false(f:successful())
  end)
end)

describe("fiber:get", function()
  it("returns every result, nils included", function()
    local f = gsock.spawn(function() return 1, nil, "x", nil end)
    assert.same({ n = 4, 1, nil, "x", nil }, table.pack(f:get()))
  end)

  it("returns nothing for a fiber that returned nothing", function()
    local f = gsock.spawn(function() end)
    assert.equals(0, select("#", f:get()))
  end)

  it("raises the fiber's error value itself", function()
    local boom = setmetatable({ what = "boom" }, { __tostring = function() return "boom" end })
    local f = gsock.spawn(function() gsock.sleep(0.01); error(boom) end)
    local ok, err = pcall(f.get, f)
    assert.is_false(ok)
    assert.is_true(rawequal(boom, err))
  end)

  it("raises a string error with the position where it was raised", function()
    local f = gsock.spawn(function() error("expected failure (get)") end)
    local ok, err = pcall(f.get, f)
    assert.is_false(ok)
    assert.matches("fibers_test%.lua:%d+: expected failure %(get%)$", err)
  end)

  it("raises a timeout error when the timeout passes first", function()
    local ev = gsock.event()
    local f = waiter(ev)
    local ok, err = pcall(f.get, f, 0.05)
    assert.is_false(ok)
    assert.is_true(gsock.is_timeout(err))
    assert.equals("timed out", tostring(err))
    ev:set()
    assert.is_true(f:join(1))
  end)

  it("can be called again after the fiber ended and gives the same results", function()
    local f = gsock.spawn(function() return "a", "b" end)
    assert.same({ "a", "b" }, { f:get() })
    assert.same({ "a", "b" }, { f:get() })
  end)
end)

describe("fiber state", function()
  it("dead() is false while the fiber runs and true once it ended", function()
    local ev = gsock.event()
    local f = waiter(ev)
    gsock.sleep(0)
    assert.is_false(f:dead())
    ev:set()
    f:join(1)
    assert.is_true(f:dead())
  end)

  it("successful() is true for a return, false for an error and for a kill", function()
    local ok_f = gsock.spawn(function() return 1 end)
    local err_f = gsock.spawn(function() error("expected failure (state)") end)
    local ev = gsock.event()
    local kill_f = waiter(ev)
    assert.is_false(ok_f:successful())         -- not yet ended
    gsock.joinall({ err_f, ok_f }, 1)
    kill_f:kill()
    assert.is_true(ok_f:successful())
    assert.is_false(err_f:successful())
    assert.is_false(kill_f:successful())
  end)

  it("error is the raised value itself, and nil after a return", function()
    local value = { code = 7 }
    local f = gsock.spawn(function() error(value) end)
    local g = gsock.spawn(function() return "fine" end)
    gsock.joinall({ f, g }, 1)
    assert.is_true(rawequal(value, f.error))
    assert.is_nil(g.error)
  end)
end)

describe("fiber:kill", function()
  it("raises a 'killed' error in the fiber at its wait point and waits until it is dead", function()
    local reached_end = false
    local f = gsock.spawn(function() gsock.sleep(10); reached_end = true end)
    gsock.sleep(0)
    local t0 = fresh_now()
    f:kill()
    assert.is_true(f:dead())                   -- block defaults to true
    assert.is_true(gsock.now() - t0 < 0.5)
    assert.is_false(reached_end)
    assert.is_false(f:successful())
    assert.equals("killed", f.error.kind)
  end)

  it("raises the given error value", function()
    local err = { reason = "shutdown" }
    local f = gsock.spawn(function() gsock.sleep(10) end)
    gsock.sleep(0)
    f:kill(err)
    assert.is_true(rawequal(err, f.error))
  end)

  it("the fiber can catch the kill with pcall and clean up", function()
    local caught
    local f = gsock.spawn(function()
      local ok, e = pcall(gsock.sleep, 10)
      caught = e
      return "cleaned"
    end)
    gsock.sleep(0)
    f:kill("stop")
    assert.equals("stop", caught)
    assert.same({ "cleaned" }, { f:get() })
  end)

  it("closes the to-be-closed variables of the killed fiber", function()
    local closed = false
    local f = gsock.spawn(function()
      local guard <close> = setmetatable({}, { __close = function() closed = true end })
      gsock.sleep(10)
    end)
    gsock.sleep(0)
    f:kill()
    assert.is_true(closed)
  end)

  it("with block = false returns without waiting; the fiber dies on its next turn", function()
    local f = gsock.spawn(function() gsock.sleep(10) end)
    gsock.sleep(0)
    f:kill(nil, false)
    assert.is_true(f:join(1))
    assert.is_true(f:dead())
    assert.equals("killed", f.error.kind)
  end)

  it("kills a fiber that has not started yet: its function never runs", function()
    local ran = false
    local f = gsock.spawn(function() ran = true end)
    f:kill()
    assert.is_true(f:dead())
    gsock.sleep(0.01)
    assert.is_false(ran)
    assert.equals("killed", f.error.kind)
  end)

  it("is a no-op on a dead fiber", function()
    local f = gsock.spawn(function() return "result" end)
    f:join(1)
    f:kill()
    f:kill("again")
    assert.is_true(f:successful())
    assert.is_nil(f.error)
    assert.equals("result", f:get())
  end)

  it("of the running fiber by itself ends it with that error", function()
    local after = false
    local f = gsock.spawn(function() gsock.current():kill("self"); after = true end)
    f:join(1)
    assert.is_false(after)
    assert.equals("self", f.error)
  end)

  it("with a timeout gives up waiting for a fiber that survives the kill", function()
    local stop = false
    local f = gsock.spawn(function()
      while not stop do pcall(gsock.sleep, 0.01) end   -- swallows every kill
    end)
    gsock.sleep(0)
    local t0 = fresh_now()
    f:kill(nil, true, 0.05)
    local dt = gsock.now() - t0
    assert.is_false(f:dead())
    assert.is_true(dt >= 0.04 and dt < 0.5, "kill returned after " .. dt)
    stop = true
    assert.is_true(f:join(1))
  end)

  it("makes get raise the kill error", function()
    local f = gsock.spawn(function() gsock.sleep(10) end)
    gsock.sleep(0)
    f:kill()
    local ok, err = pcall(f.get, f)
    assert.is_false(ok)
    assert.equals("killed", err.kind)
    assert.is_true(rawequal(f.error, err))
  end)

  it("a killed fiber wakes those who join it", function()
    local target = gsock.spawn(function() gsock.sleep(10) end)
    local joined
    local j = gsock.spawn(function() joined = target:join(5) end)
    gsock.sleep(0)
    target:kill()
    j:join(1)
    assert.is_true(joined)
  end)
end)

describe("gsock.current", function()
  it("gives the running fiber's own handle inside a spawned fiber", function()
    local seen
    local f = gsock.spawn(function() seen = gsock.current() end)
    f:join(1)
    assert.is_true(rawequal(f, seen))
  end)

  it("is a fiber in every context, different for different fibers", function()
    local me = gsock.current()
    assert.is_not_nil(me)
    assert.equals("integer", math.type(me.id))
    local other
    gsock.spawn(function() other = gsock.current() end):join(1)
    assert.is_true(me.id ~= other.id)
  end)
end)

-- A fiber's Lua thread is reused for a later fiber once it ends (the host keeps a pool):
-- nothing of the fiber before may show in the next.
describe("fiber threads", function()
  it("a thread Lua code was given (coroutine.running) is never another fiber's", function()
    local seen = setmetatable({}, { __mode = "k" })
    gsock.spawn(function() seen[coroutine.running()] = "first fiber's" end):join(1)
    for _ = 1, 50 do
      local mine
      gsock.spawn(function() mine = seen[coroutine.running()] end):join(1)
      assert.is_nil(mine)
    end
  end)

  it("a debug hook a fiber set on its thread does not follow the thread into later fibers", function()
    local hooked = 0
    for _ = 1, 20 do
      gsock.spawn(function()
        debug.sethook(function() hooked = hooked + 1 end, "c")
        tostring(hooked)
      end):join(1)
      local hook = "unset"
      gsock.spawn(function() hook = debug.gethook() end):join(1)
      assert.is_nil(hook)
    end
    assert.is_true(hooked > 0)
  end)

  it("fibers that return, are killed or were given their thread leave no thread behind", function()
    -- A slot of the runtime's threads table keeps a thread only for fibers to come: one
    -- it cannot reuse (killed, seen) is left to the GC, and the pool stays bounded.
    local live = gsock.stats().fibers
    local function round(n)
      local sleepers = {}
      for i = 1, n do
        local kind = i % 3
        local f = gsock.spawn(function()
          if kind == 1 then gsock.sleep(10) elseif kind == 2 then local _ = coroutine.running() end
          return i
        end)
        if kind == 1 then sleepers[#sleepers + 1] = f end
      end
      gsock.sleep(0)
      for _, f in ipairs(sleepers) do f:kill() end
      sleepers = nil
      gsock.sleep(0)
      assert.equals(live, gsock.stats().fibers)
      collectgarbage()
      collectgarbage()
      return collectgarbage("count")
    end
    round(3000)   -- the pool and the tables reach their size (3,000 fibers live at once)
    local before = round(3000)
    local after
    for _ = 1, 10 do after = round(3000) end
    assert.is_true(after < before + 64, ("Lua heap %.0f KiB -> %.0f KiB"):format(before, after))
  end)

  it("a fiber that raised or was killed leaves nothing to the next (locals, to-be-closed, stack)", function()
    local closed = 0
    local closer = setmetatable({}, { __close = function() closed = closed + 1 end })
    for i = 1, 20 do
      local f = gsock.spawn(function()
        local big <close> = closer
        local t = {}
        for j = 1, 200 do t[j] = j end
        if i % 2 == 0 then error("raised " .. i) end
        gsock.sleep(10)
      end)
      if i % 2 == 1 then gsock.sleep(0) f:kill() else f:join(1) end
      local args
      gsock.spawn(function(...) args = table.pack(...) end, "only"):join(1)
      assert.equals(1, args.n)
      assert.equals("only", args[1])
    end
    assert.equals(20, closed)
  end)
end)

describe("gsock.sleep", function()
  it("blocks the fiber for about the given time", function()
    local t0 = fresh_now()
    gsock.sleep(0.1)
    local dt = gsock.now() - t0
    assert.is_true(dt >= 0.09, "slept " .. dt)
    assert.is_true(dt < 0.5, "slept " .. dt)
  end)

  it("sleep(0) lets ready fibers run and then comes back", function()
    local ran = false
    gsock.spawn(function() ran = true end)
    gsock.sleep(0)
    assert.is_true(ran)
  end)

  it("blocks only the sleeping fiber", function()
    local ticks = 0
    local ticker = gsock.spawn(function() for _ = 1, 100 do ticks = ticks + 1; gsock.sleep(0) end end)
    gsock.sleep(0.05)
    assert.equals(100, ticks)
    ticker:join(1)
  end)

  it("rejects a negative time with an argument error", function()
    local ok, err = pcall(function() gsock.sleep(-1) end)
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'sleep'", err)
  end)
end)

describe("gsock.now", function()
  it("is a float clock in seconds that does not go back and follows sleeps", function()
    local a = fresh_now()
    assert.equals("float", math.type(a))
    gsock.sleep(0.05)
    local b = gsock.now()
    assert.is_true(b >= a)
    assert.near(0.05, b - a, 0.04)
  end)
end)

describe("gsock.joinall", function()
  it("waits for every fiber of the list", function()
    local done = 0
    local list = {}
    for i = 1, 10 do list[i] = gsock.spawn(function() gsock.sleep(0.01 * (i % 3)); done = done + 1 end) end
    gsock.joinall(list)
    assert.equals(10, done)
    for _, f in ipairs(list) do assert.is_true(f:dead()) end
  end)

  it("with a timeout returns when it passes, leaving the others alive", function()
    local ev = gsock.event()
    local quick = gsock.spawn(function() end)
    local slow = waiter(ev)
    local t0 = fresh_now()
    gsock.joinall({ quick, slow }, 0.05)
    local dt = gsock.now() - t0
    assert.is_true(dt >= 0.04 and dt < 0.5, "joinall took " .. dt)
    assert.is_true(quick:dead())
    assert.is_false(slow:dead())
    ev:set()
    slow:join(1)
  end)

  it("returns the list of the fibers that ended", function()
    local ev = gsock.event()
    local quick1, slow, quick2 = gsock.spawn(function() end), waiter(ev), gsock.spawn(function() end)
    local done = gsock.joinall({ quick1, slow, quick2 }, 0.05)
    assert.equals("table", type(done))
    local set = {}
    for _, f in ipairs(done) do set[f] = true end
    assert.is_true(set[quick1] and set[quick2])
    assert.is_nil(set[slow])
    assert.equals(2, #done)
    ev:set()
    slow:join(1)
  end)

  it("counts fibers that raised as ended", function()
    local list = { gsock.spawn(function() error("expected failure (joinall)") end), gsock.spawn(function() end) }
    gsock.joinall(list, 1)
    assert.is_true(list[1]:dead() and list[2]:dead())
  end)
end)

describe("gsock.killall", function()
  it("kills every fiber and returns once they are dead", function()
    local list = {}
    for i = 1, 5 do list[i] = gsock.spawn(function() gsock.sleep(10) end) end
    gsock.sleep(0)
    gsock.killall(list)
    for _, f in ipairs(list) do
      assert.is_true(f:dead())
      assert.equals("killed", f.error.kind)
    end
  end)

  it("raises the given error in each", function()
    local err = { "custom" }
    local list = { gsock.spawn(function() gsock.sleep(10) end), gsock.spawn(function() gsock.sleep(10) end) }
    gsock.sleep(0)
    gsock.killall(list, err)
    assert.is_true(rawequal(err, list[1].error))
    assert.is_true(rawequal(err, list[2].error))
  end)
end)

describe("an error in a fiber nobody joins", function()
  it("does not stop the other fibers nor the spawner", function()
    local ticks = 0
    local ticker = gsock.spawn(function() for _ = 1, 5 do gsock.sleep(0.01); ticks = ticks + 1 end end)
    local bad = gsock.spawn(function() gsock.sleep(0.005); error("expected failure: unjoined fiber (logged once)") end)
    gsock.sleep(0.1)
    assert.equals(5, ticks)
    assert.is_true(bad:dead())
    assert.is_false(bad:successful())
    assert.is_true(ticker:successful())
  end)
end)

-- gsock._link is internal (servers and pools use it to learn that a fiber ended, however
-- it ended); what they rely on is tested here.
describe("functions linked to a fiber (gsock._link)", function()
  it("run once at its death, in the order they were linked, with the fiber", function()
    local calls = {}
    local ev = gsock.event()
    local f = waiter(ev)
    gsock._link(f, function(done) calls[#calls + 1] = { "first", done } end)
    gsock._link(f, setmetatable({}, { __call = function(_, done) calls[#calls + 1] = { "callable", done } end }))
    gsock._link(f, function(done) calls[#calls + 1] = { "third", done } end)
    gsock.sleep(0)
    assert.same({}, calls)
    ev:set()
    assert.is_true(f:join(1))
    assert.equals(3, #calls)
    for i, name in ipairs({ "first", "callable", "third" }) do
      assert.equals(name, calls[i][1])
      assert.equals(f, calls[i][2])
    end
  end)

  it("run when the fiber is killed before it started, and when it raised", function()
    local seen = {}
    local unstarted = gsock.spawn(function() end)
    gsock._link(unstarted, function() seen.unstarted = true end)
    unstarted:kill()
    local raiser = gsock.spawn(function() error("raiser-7c1", 0) end)
    local callable = setmetatable({}, { __call = function() seen.raised = true end })
    gsock._link(raiser, callable)
    raiser:join(1)
    assert.same({ unstarted = true, raised = true }, seen)
  end)

  it("run at once when the fiber is already dead", function()
    local f = gsock.spawn(function() end)
    f:join(1)
    local got
    gsock._link(f, function(done) got = done end)
    assert.equals(f, got)
  end)
end)
