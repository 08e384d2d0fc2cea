-- Timeouts (SPEC §2): gsock.timeout as an object and as a to-be-closed variable,
-- nesting, with_timeout, and the time base of every timeout.
local gsock = require "gsock"
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/core/"
local fds = dofile(here .. "support/fds.lua")
local util = dofile(here .. "support/util.lua")

local function fresh_now()
  gsock.sleep(0)
  return gsock.now()
end

-- Keeps the CPU busy without yielding (the fiber does not reach a wait point).
local function busy(seconds)
  local stop = os.clock() + seconds
  while os.clock() < stop do end
end

describe("gsock.timeout", function()
  it("raises the default timeout error in the creating fiber at its wait point", function()
    local t0 = fresh_now()
    local t = gsock.timeout(0.05)
    local ok, err = pcall(gsock.sleep, 2)
    local dt = gsock.now() - t0
    assert.is_false(ok)
    assert.is_true(gsock.is_timeout(err))
    assert.equals("timeout", err.kind)
    assert.equals("timed out", tostring(err))
    assert.is_true(dt >= 0.04 and dt < 0.5, "fired after " .. dt)
    t:cancel()
  end)

  it("raises a custom error value as the same object", function()
    local mine = { "deadline" }
    local t = gsock.timeout(0.02, mine)
    local ok, err = pcall(gsock.sleep, 2)
    assert.is_false(ok)
    assert.is_true(rawequal(mine, err))
    t:cancel()
  end)

  it("raises a custom string unchanged", function()
    local t = gsock.timeout(0.02, "too slow")
    local ok, err = pcall(gsock.sleep, 2)
    assert.equals("too slow", err)
    t:cancel()
  end)

  it("interrupts any wait: an event wait, a queue get, a join", function()
    local never = gsock.spawn(function() gsock.event():wait() end)
    local waits = {
      function() gsock.event():wait() end,
      function() gsock.queue():get() end,
      function() never:join() end,
    }
    for i, w in ipairs(waits) do
      local t = gsock.timeout(0.02)
      local ok, err = pcall(w)
      t:cancel()
      assert.is_false(ok, "wait #" .. i .. " was not interrupted")
      assert.is_true(gsock.is_timeout(err), "wait #" .. i .. ": " .. tostring(err))
    end
    never:kill()
  end)

  it("fires at the next wait point when it expires while the fiber is busy", function()
    local t = gsock.timeout(0.02)
    busy(0.05)                                  -- no wait point: nothing can be raised here
    local ok, err = pcall(gsock.sleep, 0)       -- the next wait point
    t:cancel()
    assert.is_false(ok)
    assert.is_true(gsock.is_timeout(err))
  end)

  it("cancel() stops it: no error later", function()
    local t = gsock.timeout(0.03)
    t:cancel()
    local ok, err = pcall(gsock.sleep, 0.08)
    assert.is_true(ok, tostring(err))
  end)

  it("fires even when the program keeps no reference to it", function()
    gsock.timeout(0.03)
    collectgarbage()
    collectgarbage()
    local ok, err = pcall(gsock.sleep, 1)
    assert.is_false(ok)
    assert.is_true(gsock.is_timeout(err))
  end)

  it("raises in the fiber that created it, not in the one holding it", function()
    local holder_ok
    local t
    local creator = gsock.spawn(function()
      t = gsock.timeout(0.03)
      gsock.sleep(1)
    end)
    local holder = gsock.spawn(function()
      gsock.sleep(0.01)
      holder_ok = pcall(gsock.sleep, 0.1)       -- holds `t` in an upvalue, must not be hit
    end)
    creator:join(2)
    holder:join(2)
    assert.is_true(gsock.is_timeout(creator.error))
    assert.is_true(holder_ok)
  end)

  it("of a fiber that already ended harms nothing", function()
    local f = gsock.spawn(function() gsock.timeout(0.02); return "done" end)
    assert.is_true(f:join(1))
    gsock.sleep(0.05)
    assert.is_true(f:successful())
    assert.equals("done", f:get())
  end)

  it("rejects a negative duration with an argument error", function()
    local ok, err = pcall(function() gsock.timeout(-1) end)
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'timeout'", err)
  end)
end)

describe("gsock.timeout as a <close> variable", function()
  it("is cancelled when the scope ends: no stray error after its deadline", function()
    do
      local t <close> = gsock.timeout(0.05)
      gsock.sleep(0.01)
    end
    local ok, err = pcall(gsock.sleep, 0.1)     -- well past the deadline
    assert.is_true(ok, "stray timeout after the scope: " .. tostring(err))
  end)

  it("is cancelled when the scope ends by an error", function()
    local ok = pcall(function()
      local t <close> = gsock.timeout(0.05)
      error("leaving the scope")
    end)
    assert.is_false(ok)
    local ok2, err = pcall(gsock.sleep, 0.1)
    assert.is_true(ok2, "stray timeout after the scope: " .. tostring(err))
  end)

  it("fires inside its scope and the error leaves the scope", function()
    local reached = false
    local ok, err = pcall(function()
      local t <close> = gsock.timeout(0.02)
      gsock.sleep(1)
      reached = true
    end)
    assert.is_false(ok)
    assert.is_false(reached)
    assert.is_true(gsock.is_timeout(err))
  end)
end)

describe("nested timeouts", function()
  it("the outer one fires first when it is shorter, and its own error is raised", function()
    local outer_err, inner_err = { "outer" }, { "inner" }
    local ok, err = pcall(function()
      local outer <close> = gsock.timeout(0.03, outer_err)
      local ok2, e2 = pcall(function()
        local inner <close> = gsock.timeout(1, inner_err)
        gsock.sleep(2)
      end)
      error(e2, 0)   -- pass on whatever the inner scope got
    end)
    assert.is_false(ok)
    assert.is_true(rawequal(outer_err, err))
  end)

  it("the inner one fires first when it is shorter; the outer stays armed", function()
    local outer_err, inner_err = { "outer" }, { "inner" }
    local inner_got, outer_got
    local t0 = fresh_now()
    local ok, err = pcall(function()
      local outer <close> = gsock.timeout(0.1, outer_err)
      local ok2, e2 = pcall(function()
        local inner <close> = gsock.timeout(0.02, inner_err)
        gsock.sleep(2)
      end)
      inner_got = e2
      gsock.sleep(2)                             -- the outer one still fires
    end)
    outer_got = err
    assert.is_false(ok)
    assert.is_true(rawequal(inner_err, inner_got))
    assert.is_true(rawequal(outer_err, outer_got))
    local dt = gsock.now() - t0
    assert.is_true(dt >= 0.09 and dt < 0.6, "outer fired after " .. dt)
  end)

  it("after the inner scope ends cleanly, only the outer can fire", function()
    local ok, err = pcall(function()
      local outer <close> = gsock.timeout(0.08, "outer")
      do
        local inner <close> = gsock.timeout(0.02, "inner")
        gsock.sleep(0.005)
      end
      gsock.sleep(1)
    end)
    assert.is_false(ok)
    assert.equals("outer", err)
  end)
end)

describe("gsock.with_timeout", function()
  it("returns every result of the function, nils included, and passes its arguments", function()
    local r = table.pack(gsock.with_timeout(1, function(a, b) gsock.sleep(0.01); return a, nil, b end, "x", "y"))
    assert.same({ n = 3, "x", nil, "y" }, r)
  end)

  it("raises the timeout error when the function takes too long", function()
    local t0 = fresh_now()
    local ok, err = pcall(gsock.with_timeout, 0.03, gsock.sleep, 2)
    local dt = gsock.now() - t0
    assert.is_false(ok)
    assert.is_true(gsock.is_timeout(err))
    assert.is_true(dt >= 0.02 and dt < 0.5, "took " .. dt)
  end)

  it("passes the function's own error through unchanged", function()
    local mine = { "fn failed" }
    local ok, err = pcall(gsock.with_timeout, 1, function() error(mine) end)
    assert.is_false(ok)
    assert.is_true(rawequal(mine, err))
  end)

  it("leaves no timeout armed once it returned", function()
    gsock.with_timeout(0.03, function() gsock.sleep(0.005) end)
    local ok, err = pcall(gsock.sleep, 0.08)
    assert.is_true(ok, "stray timeout: " .. tostring(err))
  end)

  it("leaves no timeout armed once the function raised", function()
    pcall(gsock.with_timeout, 0.03, error, "x")
    local ok, err = pcall(gsock.sleep, 0.08)
    assert.is_true(ok, "stray timeout: " .. tostring(err))
  end)
end)

describe("the time base of timeouts", function()
  -- libev measures timers from the time cached at the start of the loop turn. A fiber
  -- that computed (or did blocking I/O) for a while before waiting must still get the
  -- whole timeout it asked for, counted from the call. `busy` is measured on a wall
  -- clock of its own (/proc/uptime, 10 ms steps), hence the 0.03 s of slack.
  it("a sleep lasts its full time even after the fiber was busy", function()
    local t0 = fresh_now()
    local b = util.busy_wall(0.1)
    gsock.sleep(0.1)
    local dt = gsock.now() - t0
    assert.is_true(dt >= b + 0.07, ("busy %.2f s + sleep 0.1 s took only %.3f s"):format(b, dt))
  end)

  it("a wait timeout lasts its full time even after the fiber was busy", function()
    local pipe <close> = fds.pipe()
    local t0 = fresh_now()
    local b = util.busy_wall(0.1)
    local ok = pcall(gsock.wait_read, pipe.rfd, 0.1)
    local dt = gsock.now() - t0
    assert.is_false(ok)
    assert.is_true(dt >= b + 0.07, ("busy %.2f s + wait_read timeout 0.1 s took only %.3f s"):format(b, dt))
  end)

  it("a ready descriptor is not reported as timed out after the fiber was busy", function()
    local pipe <close> = fds.pipe()
    pipe:write("ready")
    gsock.sleep(0)
    util.busy_wall(0.05)
    local ok, err = pcall(gsock.wait_read, pipe.rfd, 0.02)
    assert.is_true(ok, "wait_read on a readable descriptor raised: " .. tostring(err))
  end)

  it("a gsock.timeout counts from its creation", function()
    local t0 = fresh_now()
    local b = util.busy_wall(0.1)
    local t <close> = gsock.timeout(0.1)
    local ok = pcall(gsock.sleep, 1)
    local dt = gsock.now() - t0
    assert.is_false(ok)
    assert.is_true(dt >= b + 0.07, ("busy %.2f s + timeout 0.1 s fired after %.3f s"):format(b, dt))
  end)
end)
