-- Nothing is left behind: fibers that ended, however they ended, release their Swift
-- objects once their handles are garbage, and repeated waits, timeouts and watchers
-- do not make the Lua state grow. Counts come from gsock.stats():
--   fibers        fibers not yet dead
--   fiber_objects Swift fiber objects in memory (live ones, and dead ones still referenced)
--   memory        bytes held by the Lua state
local gsock = require "gsock"
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/core/"
local fds = dofile(here .. "support/fds.lua")
local util = dofile(here .. "support/util.lua")

-- Two loop turns (the scheduler may hold fibers of the turn that is running), then
-- two full collections (the first runs finalizers, the second frees what they dropped).
local function settle()
  gsock.sleep(0)
  gsock.sleep(0)
  collectgarbage()
  collectgarbage()
end

-- 10,000 fibers: a quarter return, a quarter raise, a quarter are killed and a quarter
-- die of a gsock.timeout. Those that raise are joined (by helper fibers) so that their
-- errors are not logged. Returns the number of helper fibers it made.
local function run_10000_fibers()
  local go = gsock.event()
  local never = gsock.event()
  local returned, raised, killed, timed_out, helpers = {}, {}, {}, {}, {}
  local function joined_by_helper(f)
    helpers[#helpers + 1] = gsock.spawn(function() f:join() end)
  end
  for i = 1, 2500 do
    returned[i] = gsock.spawn(function() go:wait(); return i end)
    raised[i] = gsock.spawn(function() go:wait(); error("expected failure (leak test)") end)
    joined_by_helper(raised[i])
    killed[i] = gsock.spawn(function() never:wait() end)
    timed_out[i] = gsock.spawn(function() local t = gsock.timeout(0.05); never:wait() end)
    joined_by_helper(timed_out[i])
  end
  gsock.sleep(0)                                -- every fiber has started and waits
  assert.is_true(gsock.stats().fibers >= 15000, "live fibers: " .. gsock.stats().fibers)
  go:set()
  gsock.killall(killed, nil, 5)
  gsock.joinall(returned, 5)
  gsock.joinall(raised, 5)
  gsock.joinall(timed_out, 5)
  gsock.joinall(helpers, 5)
  for i = 1, 2500 do
    assert.is_true(returned[i]:successful())
    assert.is_true(raised[i]:dead() and not raised[i]:successful())
    assert.equals("killed", killed[i].error.kind)
    assert.is_true(gsock.is_timeout(timed_out[i].error))
  end
  return #helpers
end

describe("fibers", function()
  it("10,000 that end by return, error, kill and timeout leave no fiber and no object behind", function()
    settle()
    local base = gsock.stats()
    run_10000_fibers()
    assert.equals(base.fibers, gsock.stats().fibers)
    settle()
    assert.equals(base.fiber_objects, gsock.stats().fiber_objects)
  end)

  it("a second round of 10,000 does not make the Lua state grow", function()
    run_10000_fibers()                          -- warm up: tables reach their sizes
    settle()
    local before = gsock.stats().memory
    run_10000_fibers()
    settle()
    local grown = gsock.stats().memory - before
    assert.is_true(grown < 64 * 1024, "the Lua state grew by " .. grown .. " bytes")
  end)

  it("fibers killed before they started (spawn and spawn_later) are released", function()
    settle()
    local base = gsock.stats()
    do
      local list = {}
      for i = 1, 1000 do
        list[#list + 1] = gsock.spawn(function() end)
        list[#list + 1] = gsock.spawn_later(10, function() end)
      end
      gsock.killall(list)
      for _, f in ipairs(list) do assert.is_true(f:dead()) end
    end
    assert.equals(base.fibers, gsock.stats().fibers)
    settle()
    assert.equals(base.fiber_objects, gsock.stats().fiber_objects)
  end)

  it("a dead fiber's handle keeps its results until the handle is garbage", function()
    settle()
    local base = gsock.stats().fiber_objects
    local f = gsock.spawn(function() return { big = string.rep("x", 1000) } end)
    f:join(1)
    settle()
    assert.equals(base + 1, gsock.stats().fiber_objects)
    assert.equals(1000, #f:get().big)
    f = nil
    settle()
    assert.equals(base, gsock.stats().fiber_objects)
  end)
end)

describe("repeated waits", function()
  local function grows_by(n, fn)
    for _ = 1, n do fn() end                    -- warm up
    settle()
    local before = gsock.stats().memory
    for _ = 1, n do fn() end
    settle()
    return gsock.stats().memory - before
  end

  it("10,000 timeouts started and cancelled do not make the state grow", function()
    local grown = grows_by(10000, function()
      local t <close> = gsock.timeout(10, { "custom error value" })
    end)
    assert.is_true(grown < 32 * 1024, "grew by " .. grown .. " bytes")
  end)

  it("timed-out waits with a custom timeout_exc do not make the state grow", function()
    local pipe <close> = fds.pipe()
    local exc = {}
    local grown = grows_by(2000, function()
      pcall(gsock.wait_read, pipe.rfd, 0, exc)
      gsock.wait_write(pipe.wfd, 1, { "unused timeout value" })
    end)
    assert.is_true(grown < 32 * 1024, "grew by " .. grown .. " bytes")
  end)

  it("10,000 watchers made and closed do not make the state grow", function()
    local pipe <close> = fds.pipe()
    local grown = grows_by(10000, function()
      local w = gsock.io(pipe.wfd, "w")
      gsock.wait(w, 1)
      w:close()
    end)
    assert.is_true(grown < 32 * 1024, "grew by " .. grown .. " bytes")
  end)

  it("cancelled waits do not make the state grow", function()
    local pipe <close> = fds.pipe()
    local w = gsock.io(pipe.rfd, "r")
    local grown = grows_by(1000, function()
      local f = util.spawn_waiting(function() pcall(gsock.wait, w) end)
      gsock.cancel_wait(w, { "custom" })
      f:join(1)
    end)
    w:close()
    assert.is_true(grown < 32 * 1024, "grew by " .. grown .. " bytes")
  end)
end)
