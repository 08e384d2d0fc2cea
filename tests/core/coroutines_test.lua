-- Waits inside the user's own coroutines (DESIGN "Fibers"; SPEC §1: users write
-- straight-line code, including iterators and coroutine.wrap generators): a wait in a
-- coroutine must reach the scheduler and block only the fiber, and a wait where Lua
-- cannot yield must fail with a clear error.
local gsock = require "gsock"
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/core/"
local fds = dofile(here .. "support/fds.lua")

local function fresh_now()
  gsock.sleep(0)
  return gsock.now()
end

-- A fiber that counts while the test waits; stop() ends it and returns the count.
local function ticker()
  local count, running = 0, true
  local f = gsock.spawn(function() while running do count = count + 1; gsock.sleep(0.002) end end)
  return {
    count = function() return count end,
    stop = function() running = false; f:join(1); return count end,
  }
end

describe("a wait inside coroutine.wrap", function()
  it("works in a generator that sleeps between yields, and blocks only the fiber", function()
    local gen = coroutine.wrap(function()
      for i = 1, 3 do
        gsock.sleep(0.02)
        coroutine.yield(i)
      end
      return "end"
    end)
    local t = ticker()
    local t0 = fresh_now()
    assert.equals(1, gen())
    assert.equals(2, gen())
    assert.equals(3, gen())
    assert.equals("end", gen())
    local dt = gsock.now() - t0
    local ticks = t.stop()
    assert.is_true(dt >= 0.05, "three sleeps of 0.02 s took " .. dt)
    assert.is_true(ticks >= 5, "other fibers ran only " .. ticks .. " times meanwhile")
  end)

  it("works as the iterator of a generic for", function()
    local got = {}
    for v in coroutine.wrap(function()
      for i = 1, 3 do gsock.sleep(0.005); coroutine.yield(i * 10) end
    end) do
      got[#got + 1] = v
    end
    assert.same({ 10, 20, 30 }, got)
  end)

  it("passes values in both directions across waits", function()
    local echo = coroutine.wrap(function(first)
      local v = first
      while true do
        gsock.sleep(0)
        v = coroutine.yield(v .. "!")
      end
    end)
    assert.equals("a!", echo("a"))
    assert.equals("b!", echo("b"))
  end)

  it("waits on a descriptor inside the generator", function()
    local pipe <close> = fds.pipe()
    local gen = coroutine.wrap(function()
      gsock.wait_read(pipe.rfd, 2)
      coroutine.yield(pipe:read(5))
    end)
    local writer = gsock.spawn(function() gsock.sleep(0.03); pipe:write("hello") end)
    local t = ticker()
    assert.equals("hello", gen())
    assert.is_true(t.stop() >= 3)
    writer:join(1)
  end)

  it("raises the generator's error, with its position, in the caller", function()
    local gen = coroutine.wrap(function()
      gsock.sleep(0.005)
      error("generator failed")
    end)
    local ok, err = pcall(gen)
    assert.is_false(ok)
    assert.matches("coroutines_test%.lua:%d+: generator failed", err)
  end)

  it("raises a timeout that fires while the generator waits", function()
    local gen = coroutine.wrap(function() gsock.sleep(2); coroutine.yield("late") end)
    local t <close> = gsock.timeout(0.03)
    local ok, err = pcall(gen)
    assert.is_false(ok)
    assert.is_true(gsock.is_timeout(err), tostring(err))
  end)
end)

describe("a wait inside coroutine.resume", function()
  it("returns true and the yielded values, after the wait", function()
    local co = coroutine.create(function(x)
      gsock.sleep(0.01)
      local y = coroutine.yield(x + 1)
      gsock.sleep(0.01)
      return y * 2
    end)
    assert.same({ true, 11 }, { coroutine.resume(co, 10) })
    assert.equals("suspended", coroutine.status(co))
    assert.same({ true, 42 }, { coroutine.resume(co, 21) })
    assert.equals("dead", coroutine.status(co))
  end)

  it("works in nested coroutines (a coroutine resumed by a coroutine)", function()
    local inner = coroutine.create(function()
      gsock.sleep(0.01)
      coroutine.yield("inner-1")
      gsock.sleep(0.01)
      return "inner-done"
    end)
    local outer = coroutine.create(function()
      local _, a = coroutine.resume(inner)
      gsock.sleep(0.01)
      coroutine.yield("outer saw " .. a)
      local _, b = coroutine.resume(inner)
      return "outer saw " .. b
    end)
    local t = ticker()
    assert.same({ true, "outer saw inner-1" }, { coroutine.resume(outer) })
    assert.same({ true, "outer saw inner-done" }, { coroutine.resume(outer) })
    assert.is_true(t.stop() >= 3)
  end)

  it("works three coroutines deep with a descriptor wait at the bottom", function()
    local pipe <close> = fds.pipe()
    local function level(n)
      if n == 0 then
        gsock.wait_read(pipe.rfd, 2)
        return pipe:read(1)
      end
      local co = coroutine.create(level)
      local ok, v = coroutine.resume(co, n - 1)
      assert(ok, v)
      return v
    end
    gsock.spawn(function() gsock.sleep(0.02); pipe:write("z") end)
    assert.equals("z", level(3))
  end)

  it("gives false and the error when the coroutine raises after a wait", function()
    local co = coroutine.create(function() gsock.sleep(0.005); error({ code = 1 }) end)
    local ok, err = coroutine.resume(co)
    assert.is_false(ok)
    assert.same({ code = 1 }, err)
  end)

  it("lets two fibers run their own generators interleaved", function()
    local log = {}
    local function run(name, delay)
      local gen = coroutine.wrap(function()
        for i = 1, 3 do gsock.sleep(delay); coroutine.yield(i) end
      end)
      for _ = 1, 3 do local v = gen(); log[#log + 1] = name .. v end
    end
    local a = gsock.spawn(run, "a", 0.01)
    local b = gsock.spawn(run, "b", 0.015)
    gsock.joinall({ a, b }, 2)
    assert.is_true(a:successful(), tostring(a.error))
    assert.is_true(b:successful(), tostring(b.error))
    assert.equals(6, #log)
    -- interleaved: b's first value comes before a's last
    local pos = {}
    for i, v in ipairs(log) do pos[v] = i end
    assert.is_true(pos.b1 < pos.a3, table.concat(log, " "))
  end)

  it("a kill reaches a fiber waiting inside a coroutine", function()
    local closed = false
    local f = gsock.spawn(function()
      local co = coroutine.wrap(function()
        local guard <close> = setmetatable({}, { __close = function() closed = true end })
        gsock.sleep(10)
      end)
      co()
    end)
    gsock.sleep(0)
    f:kill()
    assert.is_true(f:dead())
    assert.equals("killed", f.error.kind)
    assert.is_true(closed)
  end)
end)

describe("a wait where Lua 5.4 can yield", function()
  it("works inside an __index metamethod", function()
    local lazy = setmetatable({}, { __index = function(_, k) gsock.sleep(0.005); return k .. "!" end })
    local t = ticker()
    assert.equals("x!", lazy.x)
    assert.is_true(t.stop() >= 1)
  end)

  it("works inside a plain iterator function of a generic for", function()
    local i = 0
    local function iter() gsock.sleep(0.002); i = i + 1; if i <= 3 then return i end end
    local got = {}
    for v in iter do got[#got + 1] = v end
    assert.same({ 1, 2, 3 }, got)
  end)

  it("works inside pcall and xpcall", function()
    assert.is_true((pcall(gsock.sleep, 0.005)))
    assert.is_true((xpcall(gsock.sleep, debug.traceback, 0.005)))
  end)
end)

describe("a wait where Lua cannot yield", function()
  it("inside table.sort's comparator raises a clear error, not a yield-across-C error", function()
    local ok, err = pcall(table.sort, { 3, 1, 2 }, function(a, b) gsock.sleep(0); return a < b end)
    assert.is_false(ok)
    assert.equals("string", type(err))
    assert.matches("cannot wait here", err)
    assert.matches("sleep", err)                -- names the function that waited
    assert.is_nil(err:find("C%-call boundary"))
  end)

  it("names the position of the wait", function()
    local ok, err = pcall(table.sort, { 2, 1 }, function(a, b)
      gsock.sleep(0)                             -- this line is in the message
      return a < b
    end)
    assert.is_false(ok)
    assert.matches("^[^\n]*coroutines_test%.lua:%d+:", err)
  end)

  it("inside a string.gsub callback raises the same clear error", function()
    local pipe <close> = fds.pipe()
    local ok, err = pcall(string.gsub, "abc", "%w", function(c) gsock.wait_read(pipe.rfd, 1); return c end)
    assert.is_false(ok)
    assert.matches("cannot wait here", err)
    assert.matches("wait_read", err)
  end)

  it("inside a coroutine resumed from a comparator raises a clear error", function()
    local ok, err = pcall(table.sort, { 2, 1 }, function(a, b)
      local gen = coroutine.wrap(function() gsock.sleep(0); return true end)
      gen()
      return a < b
    end)
    assert.is_false(ok)
    assert.matches("cannot wait", err)
  end)

  it("leaves the fiber able to wait normally afterwards", function()
    pcall(table.sort, { 2, 1 }, function(a, b) gsock.sleep(0); return a < b end)
    pcall(table.sort, { 2, 1 }, function(a, b)
      local gen = coroutine.wrap(function() gsock.sleep(0.01); return true end)
      gen()
      return a < b
    end)
    local t0 = fresh_now()
    local ok, err = pcall(gsock.sleep, 0.03)
    assert.is_true(ok, tostring(err))
    assert.is_true(gsock.now() - t0 >= 0.02)
    local ok2, err2 = pcall(gsock.with_timeout, 1, function() gsock.event():wait(0.01) end)
    assert.is_true(ok2, tostring(err2))
  end)

  it("a plain coroutine.yield at a fiber's top level ends that fiber with an error", function()
    local f = gsock.spawn(function() coroutine.yield("stray") end)
    assert.is_true(f:join(1))
    assert.is_false(f:successful())
    assert.matches("yield", tostring(f.error))
  end)
end)
