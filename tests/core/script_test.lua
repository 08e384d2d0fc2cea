-- Script mode (SPEC §1 `gsockd run`, §2 errors in unjoined fibers, §5 exit statuses):
-- runs the gsockd binary on small scripts written to /tmp and checks what it prints
-- and how it exits. The binary is $GSOCKD_BIN, else the gsockd running these tests,
-- else /work/main/.build/debug/gsockd (see support/script.lua). Every run is bounded
-- by `timeout` (status 124 means gsockd hung and was killed).
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/core/"
local script = dofile(here .. "support/script.lua")

local function describe_run(r)
  return ("status %s\n--- stdout ---\n%s--- stderr ---\n%s"):format(tostring(r.status), r.stdout, r.stderr)
end

-- The file name of a script as messages show it (the last part of its path).
local function base(path) return path:match("[^/]+$") end

describe("gsockd run: exit statuses", function()
  it("a script that ends normally exits 0", function()
    local r = script.run('print("hello from the script")\n')
    assert.equals(0, r.status, describe_run(r))
    assert.matches("hello from the script", r.stdout)
  end)

  it("a syntax error exits 2 with file:line: message", function()
    local r = script.run('local x = 1\nprint(x)\nlocal y = = 2\n')
    assert.equals(2, r.status, describe_run(r))
    assert.matches(base(r.path):gsub("%p", "%%%0") .. ":3:", r.output)
  end)

  it("a main fiber that raises exits 1 with file:line: message and a traceback on stderr", function()
    local r = script.run('local function fail()\n  error("main-boom-7f3")\nend\nfail()\n')
    assert.equals(1, r.status, describe_run(r))
    assert.matches(base(r.path):gsub("%p", "%%%0") .. ":2: main%-boom%-7f3", r.stderr)
    assert.matches("stack traceback", r.stderr)
    assert.matches("in [%a ]*'fail'", r.stderr)            -- the traceback names the function
  end)

  it("a main fiber that raises an error value shows it with tostring", function()
    local r = script.run([[
      error(setmetatable({}, { __tostring = function() return "value-error-91c" end }))
    ]])
    assert.equals(1, r.status, describe_run(r))
    assert.matches("value%-error%-91c", r.stderr)
  end)

  it("a main fiber that dies of a timeout exits 1 with 'timed out'", function()
    local r = script.run('gsock.with_timeout(0.05, gsock.sleep, 5)\n')
    assert.equals(1, r.status, describe_run(r))
    assert.matches("timed out", r.stderr)
  end)

  it("a main fiber killed by another fiber exits 1 and says it was killed", function()
    local r = script.run([[
      local main = gsock.current()
      gsock.spawn(function() main:kill() end)
      gsock.sleep(2)
      print("main was not killed")
    ]])
    assert.equals(1, r.status, describe_run(r))
    assert.matches("killed", r.stderr)
    assert.is_nil(r.stdout:find("main was not killed", 1, true))
  end)

  it("a write to a pipe whose reader is gone fails with EPIPE; it does not kill the process (SIGPIPE ignored, as LuaSocket does)", function()
    local r = script.run([[
local p = assert(io.popen("exit 0", "w"))
gsock.sleep(0.2)   -- the reader has exited
local ok, err = p:write(("x"):rep(1000000))
if ok then ok, err = p:flush() end
print("alive", tostring(ok), tostring(err))
]])
    assert.equals(0, r.status, r.stderr)
    assert.equals("alive\tnil\tBroken pipe\n", r.stdout)
  end)

  it("os.exit(3) exits 3, after what the script printed", function()
    local r = script.run('print("before exit")\ngsock.sleep(0.01)\nos.exit(3)\nprint("after exit")\n')
    assert.equals(3, r.status, describe_run(r))
    assert.matches("before exit", r.stdout)
    assert.is_nil(r.stdout:find("after exit", 1, true))
  end)

  it("os.exit(n) in another fiber exits n", function()
    local r = script.run([[
      gsock.spawn(function() gsock.sleep(0.02); os.exit(5) end)
      gsock.sleep(2)
      print("main was not stopped")
    ]])
    assert.equals(5, r.status, describe_run(r))
    assert.is_nil(r.stdout:find("main was not stopped", 1, true))
  end)

  it("os.exit(true) exits 0 and os.exit(false) exits 1", function()
    assert.equals(0, script.run("os.exit(true)\n").status)
    assert.equals(1, script.run("os.exit(false)\n").status)
  end)

  it("a missing FILE argument is bad usage: exit 2", function()
    local r = script.run(nil, { argv = { "run" } })
    assert.equals(2, r.status, describe_run(r))
  end)

  it("a file that does not exist exits 2 and names it", function()
    local r = script.run(nil, { argv = { "run", "/tmp/gsock-no-such-script-4711.lua" } })
    assert.equals(2, r.status, describe_run(r))
    assert.matches("gsock%-no%-such%-script%-4711%.lua", r.stderr)
  end)
end)

describe("gsockd run: arguments", function()
  it("arg and ... hold the arguments after --", function()
    local r = script.run([[
      local n = select("#", ...)
      print("n=" .. n)
      for i = 1, n do print(("dots[%d]=%s"):format(i, (select(i, ...)))) end
      print("#arg=" .. #arg)
      for i = 1, #arg do print(("arg[%d]=%s"):format(i, arg[i])) end
      print("arg0=" .. tostring(arg[0]))
    ]], { args = { "one", "two words", "-v", "" } })
    assert.equals(0, r.status, describe_run(r))
    assert.matches("n=4\n", r.stdout)
    assert.matches("dots%[1%]=one\n", r.stdout)
    assert.matches("dots%[2%]=two words\n", r.stdout)
    assert.matches("dots%[3%]=%-v\n", r.stdout)
    assert.matches("dots%[4%]=\n", r.stdout)
    assert.matches("#arg=4\n", r.stdout)
    assert.matches("arg%[2%]=two words\n", r.stdout)
    assert.matches("arg%[3%]=%-v\n", r.stdout)
    assert.matches("arg0=[^\n]*" .. base(r.path):gsub("%p", "%%%0"), r.stdout)
  end)

  it("no arguments: ... is empty and arg has only the script", function()
    local r = script.run('print(select("#", ...), #arg, arg[0] ~= nil)\n')
    assert.equals(0, r.status, describe_run(r))
    assert.matches("^0\t0\ttrue\n", r.stdout)
  end)
end)

describe("gsockd run: fibers", function()
  it("an error in an unjoined fiber is logged once with its traceback; main goes on and exits 0", function()
    local r = script.run([[
      local function inner() error("unjoined-boom-3b7") end
      gsock.spawn(function() gsock.sleep(0.01); inner() end)
      gsock.sleep(0.1)
      print("main continues")
    ]])
    assert.equals(0, r.status, describe_run(r))
    assert.matches("main continues", r.stdout)
    assert.equals(1, script.count(r.stderr, "unjoined-boom-3b7"), describe_run(r))
    assert.matches("stack traceback", r.stderr)
    assert.matches(base(r.path):gsub("%p", "%%%0") .. ":1:", r.stderr)   -- where it was raised
    assert.matches("inner", r.stderr)                                      -- the traceback's frames
  end)

  it("an error in a fiber that is joined is not logged", function()
    local r = script.run([[
      local f = gsock.spawn(function() error("joined-boom-c21") end)
      f:join()
      print("joined", f:successful())
    ]])
    assert.equals(0, r.status, describe_run(r))
    assert.matches("joined\tfalse", r.stdout)
    assert.equals(0, script.count(r.stderr, "joined-boom-c21"), describe_run(r))
  end)

  it("the process exits when the main fiber ends, abandoning pending fibers", function()
    local r = script.run([[
      gsock.spawn(function() gsock.sleep(100) end)
      gsock.spawn_later(100, function() print("never") end)
      print("main done")
    ]], { limit = 10 })
    assert.equals(0, r.status, describe_run(r))
    assert.matches("main done", r.stdout)
    assert.is_nil(r.stdout:find("never", 1, true))
    assert.is_true(r.seconds <= 3, "took " .. r.seconds .. " s")
  end)

  it("a main fiber waiting on an event nobody can set ends with 'block forever' (exit 1)", function()
    local r = script.run('gsock.event():wait()\nprint("unreachable")\n', { limit = 10 })
    assert.is_true(r.status ~= 124, "gsockd hung")
    assert.equals(1, r.status, describe_run(r))
    assert.matches("block forever", r.output)
    assert.is_nil(r.stdout:find("unreachable", 1, true))
  end)

  it("also when other fibers are blocked for ever too", function()
    local r = script.run([[
      local q = gsock.queue()
      for i = 1, 3 do gsock.spawn(function() q:get() end) end
      local f = gsock.spawn(function() gsock.event():wait() end)
      f:join()
    ]], { limit = 10 })
    assert.is_true(r.status ~= 124, "gsockd hung")
    assert.equals(1, r.status, describe_run(r))
    assert.matches("block forever", r.output)
  end)

  it("is not declared blocked for ever while a timer can still wake it", function()
    local r = script.run([[
      local ev = gsock.event()
      gsock.spawn_later(0.2, function() ev:set() end)
      print("woken", ev:wait())
    ]], { limit = 10 })
    assert.equals(0, r.status, describe_run(r))
    assert.matches("woken\ttrue", r.stdout)
  end)

  it("the main chunk is a fiber: gsock.current() is not nil there", function()
    local r = script.run('print(gsock.current() ~= nil, type(gsock.current().id))\n')
    assert.equals(0, r.status, describe_run(r))
    assert.matches("true\tnumber", r.stdout)
  end)

  it("require 'gsock' gives the global gsock", function()
    local r = script.run('print(require("gsock") == gsock)\n')
    assert.equals(0, r.status, describe_run(r))
    assert.matches("true", r.stdout)
  end)
end)
