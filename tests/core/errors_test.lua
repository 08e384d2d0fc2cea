-- Error values (SPEC §2 "Errors", §3): kind, errno, message, tostring, is_timeout;
-- and argument errors in Lua's standard shape.
local gsock = require "gsock"
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/core/"
local fds = dofile(here .. "support/fds.lua")
local util = dofile(here .. "support/util.lua")

local EBADF = 9

-- The error raised by fn(...), which must raise.
local function error_of(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  return err
end

local function fresh_timeout_error()
  return error_of(gsock.with_timeout, 0.01, gsock.sleep, 1)
end

describe("a timeout error", function()
  it("has kind 'timeout', message 'timed out', no errno, and tostring gives the message", function()
    local e = fresh_timeout_error()
    assert.equals("table", type(e))
    assert.equals("timeout", e.kind)
    assert.equals("timed out", e.message)
    assert.is_nil(e.errno)
    assert.equals("timed out", tostring(e))
  end)

  it("is recognised by is_timeout wherever it comes from", function()
    local pipe <close> = fds.pipe()
    local sources = {
      wait_read = function() gsock.wait_read(pipe.rfd, 0.01) end,
      wait = function() local w <close> = gsock.io(pipe.rfd, "r"); gsock.wait(w, 0.01) end,
      timeout = function() local t <close> = gsock.timeout(0.01); gsock.sleep(1) end,
      with_timeout = function() gsock.with_timeout(0.01, gsock.sleep, 1) end,
      queue_get = function() gsock.queue():get(0.01) end,
      fiber_get = function()
        local f = gsock.spawn(function() gsock.sleep(1) end)
        local ok, e = pcall(f.get, f, 0.01)
        f:kill()
        error(e, 0)
      end,
    }
    for name, fn in pairs(sources) do
      local e = error_of(fn)
      assert.is_true(gsock.is_timeout(e), name .. " raised " .. tostring(e))
      assert.equals("timed out", tostring(e), name)
    end
  end)
end)

describe("gsock.is_timeout", function()
  it("is false for everything that is not a gsock timeout error", function()
    local pipe <close> = fds.pipe()
    local w = gsock.io(pipe.rfd, "r")
    local f = util.spawn_waiting(function() gsock.wait(w) end)
    gsock.cancel_wait(w)
    f:join(1)
    local cancelled = f.error
    w:close()
    local g = gsock.spawn(function() gsock.sleep(1) end)
    gsock.sleep(0)
    g:kill()
    local killed = g.error
    local io_error = error_of(gsock.wait_read, fds.unused_fd())
    for _, v in ipairs({ "timed out", "timeout", 42, true, {}, cancelled, killed, io_error }) do
      assert.is_false(gsock.is_timeout(v), "is_timeout(" .. tostring(v) .. ")")
    end
    assert.is_false(gsock.is_timeout(nil))
    assert.is_false(gsock.is_timeout())
  end)

  it("is false for a custom timeout_exc value (it is the user's own value)", function()
    local pipe <close> = fds.pipe()
    local mine = { kind = "timeout", message = "timed out" }
    local e = error_of(gsock.wait_read, pipe.rfd, 0.01, mine)
    assert.is_true(rawequal(mine, e))
    assert.is_false(gsock.is_timeout(e))
  end)
end)

describe("the error of cancel_wait", function()
  it("has kind 'closed', errno EBADF and the gevent message", function()
    local pipe <close> = fds.pipe()
    local w = gsock.io(pipe.rfd, "r")
    local f = util.spawn_waiting(function() gsock.wait(w) end)
    gsock.cancel_wait(w)
    f:join(1)
    local e = f.error
    assert.equals("closed", e.kind)
    assert.equals(EBADF, e.errno)
    assert.equals("File descriptor was closed in another fiber", e.message)
    assert.equals(e.message, tostring(e))
    w:close()
  end)
end)

describe("the error of a kill", function()
  it("has kind 'killed' and a message", function()
    local f = gsock.spawn(function() gsock.sleep(1) end)
    gsock.sleep(0)
    f:kill()
    local e = f.error
    assert.equals("killed", e.kind)
    assert.equals("string", type(e.message))
    assert.equals(e.message, tostring(e))
  end)
end)

describe("the error for a descriptor that is not open", function()
  it("has kind 'io', errno EBADF and the system's message", function()
    local e = error_of(gsock.wait_read, fds.unused_fd())
    assert.equals("io", e.kind)
    assert.equals(EBADF, e.errno)
    assert.equals("string", type(e.message))
    assert.matches("[Bb]ad file descriptor", e.message)
    assert.equals(e.message, tostring(e))
  end)
end)

describe("the 'busy' error", function()
  it("has kind 'busy' and a message", function()
    local pipe <close> = fds.pipe()
    local w = gsock.io(pipe.rfd, "r")
    local f = util.spawn_waiting(function() gsock.wait(w, 1) end)
    local e = error_of(gsock.wait, w)
    assert.equals("busy", e.kind)
    assert.equals("string", type(e.message))
    assert.equals(e.message, tostring(e))
    f:kill()
    w:close()
  end)
end)

describe("gsock error values", function()
  it("share one metatable, so a program can tell them from its own values", function()
    local pipe <close> = fds.pipe()
    local t = fresh_timeout_error()
    local io_error = error_of(gsock.wait_read, fds.unused_fd())
    local f = gsock.spawn(function() gsock.sleep(1) end)
    gsock.sleep(0)
    f:kill()
    assert.is_not_nil(getmetatable(t))
    assert.is_true(getmetatable(t) == getmetatable(io_error))
    assert.is_true(getmetatable(t) == getmetatable(f.error))
  end)

  it("are fresh values: changing one does not change the next", function()
    local a = fresh_timeout_error()
    a.message = "changed"
    local b = fresh_timeout_error()
    assert.equals("timed out", b.message)
    assert.equals("timed out", tostring(b))
  end)

  it("keep their fields when they cross fibers (get re-raises the same value)", function()
    local f = gsock.spawn(function() gsock.with_timeout(0.01, gsock.sleep, 1) end)
    local e = error_of(f.get, f)
    assert.is_true(rawequal(f.error, e))
    assert.is_true(gsock.is_timeout(e))
  end)
end)

describe("argument errors", function()
  -- Lua's own shape: `file:line: bad argument #N to 'name' (message)`, with the name
  -- the function was called by, as luaL_argerror words it.
  local pipe
  before_each(function() pipe = fds.pipe() end)
  after_each(function() pipe:close() end)

  local function arg_error(fn)
    local ok, err = pcall(fn)
    assert.is_false(ok, "expected an argument error")
    assert.equals("string", type(err))
    return err
  end

  it("a negative timeout: bad argument #2 to 'wait_read', with the caller's position", function()
    local err = arg_error(function() gsock.wait_read(pipe.rfd, -1) end)
    assert.matches("^[^\n]*errors_test%.lua:%d+: bad argument #2 to 'wait_read' %(.+%)$", err)
  end)

  it("a timeout that is not a number: (number expected, got string)", function()
    local err = arg_error(function() gsock.wait_read(pipe.rfd, "1") end)
    assert.matches("bad argument #2 to 'wait_read' %(number expected, got string%)", err)
    err = arg_error(function() gsock.wait_write(pipe.wfd, true) end)
    assert.matches("bad argument #2 to 'wait_write' %(number expected, got boolean%)", err)
  end)

  it("a descriptor that is not a number: bad argument #1", function()
    local err = arg_error(function() gsock.wait_read("3") end)
    assert.matches("bad argument #1 to 'wait_read' %(number expected, got string%)", err)
    err = arg_error(function() gsock.wait_readwrite(nil) end)
    assert.matches("bad argument #1 to 'wait_readwrite'", err)
    err = arg_error(function() gsock.wait_read(1.5) end)
    assert.matches("bad argument #1 to 'wait_read'", err)
  end)

  it("gsock.wait and cancel_wait check their watcher", function()
    local err = arg_error(function() gsock.wait(pipe.rfd) end)
    assert.matches("bad argument #1 to 'wait' %(gsock.io expected, got number%)", err)
    err = arg_error(function() gsock.cancel_wait({}) end)
    assert.matches("bad argument #1 to 'cancel_wait'", err)
    local w = gsock.io(pipe.rfd, "r")
    err = arg_error(function() gsock.wait(w, -2) end)
    assert.matches("bad argument #2 to 'wait'", err)
    w:close()
  end)

  it("fiber functions check their arguments", function()
    local err = arg_error(function() gsock.sleep("x") end)
    assert.matches("bad argument #1 to 'sleep' %(number expected, got string%)", err)
    err = arg_error(function() gsock.spawn(nil) end)
    assert.matches("bad argument #1 to 'spawn'", err)
    local f = gsock.spawn(function() end)
    err = arg_error(function() f:join(-1) end)
    assert.matches("bad argument #1 to 'join'", err)
    err = arg_error(function() gsock.timeout("soon") end)
    assert.matches("bad argument #1 to 'timeout'", err)
  end)

  it("are raised at once, without waiting", function()
    local t0 = util.fresh_now()
    arg_error(function() gsock.wait_read(pipe.rfd, -1) end)
    gsock.sleep(0)
    assert.is_true(gsock.now() - t0 < 0.05)
  end)
end)
