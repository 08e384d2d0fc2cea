-- `gsockd check CONFIG|FILE.lua` (SPEC §1, §6): validates a config and compiles every
-- handler without binding anything; exit 0 when fine, 2 with every problem on stderr
-- (`gsockd: ...` lines naming the file and the key).
local gsock = require "gsock"
local socket = require "socket"
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/serve/"
local proc = dofile(here .. "support/proc.lua")

after_each(proc.cleanup)

local function check(dir, target)
  local p = proc.start({ "check", target }, { cwd = dir })
  local status = p:wait_exit(5)
  return p, status
end

--- The stderr lines containing `needle` (plain).
local function lines_with(text, needle)
  local out = {}
  for line in text:gmatch("[^\n]+") do
    if line:find(needle, 1, true) then out[#out + 1] = line end
  end
  return out
end

--- The stderr lines that start with "gsockd:" and contain `needle` (plain).
local function gsockd_lines(text, needle)
  local out = {}
  for _, line in ipairs(lines_with(text, needle)) do
    if line:find("^gsockd:") then out[#out + 1] = line end
  end
  return out
end

describe("gsockd check", function()
  it("exits 0 on a good config, without binding its addresses", function()
    local dir = proc.tmpdir()
    proc.write(dir, "handlers/echo.lua", proc.ECHO)
    -- hold the service's address ourselves: check must not try to bind it
    local holder = proc.track(assert(socket.bind("127.0.0.1", 0)))
    local _, port = holder:getsockname()
    local upath = proc.unix_path(dir, "never-bound")
    local config = proc.write(dir, "gsockd.toml", ([[
workers = 2
log_level = "info"
shutdown_timeout = 5
memory_limit = "64M"
max_run_time = 0.5
max_run_time_action = "error"

[services.echo]
listen = ["127.0.0.1:%s", "unix:%s"]
handler = "handlers/echo.lua"
max_connections = 100
backlog = 64
idle_timeout = 30
nodelay = true
[services.echo.env]
greeting = "hi"
]]):format(port, upath))
    local p, status = check(dir, config)
    assert.equals(0, status, p:describe())
    assert.equals(0, #p:listen_lines(), p:describe())
    local f = io.open(upath, "r")
    if f then f:close() end
    assert.is_nil(f, "check created the unix socket file")
  end)

  it("accepts memory_limit in bytes", function()
    local dir = proc.tmpdir()
    proc.write(dir, "echo.lua", proc.ECHO)
    local config = proc.write(dir, "gsockd.toml", [[
memory_limit = 67108864
[services.echo]
listen = "127.0.0.1:0"
handler = "echo.lua"
]])
    local p, status = check(dir, config)
    assert.equals(0, status, p:describe())
  end)

  it("reports three different mistakes at once, exit 2", function()
    local dir = proc.tmpdir()
    proc.write(dir, "handlers/echo.lua", proc.ECHO)
    local config = proc.write(dir, "three.toml", [[
wrokers = 2

[services.echo]
listen = "127.0.0.1:0"
handler = "handlers/echo.lua"
idle_timeout = "soon"

[services.api]
listen = "127.0.0.1:0"
handler = "handlers/missing_handler.lua"
]])
    local p, status = check(dir, config)
    assert.equals(2, status, p:describe())
    local err = p:stderr()
    -- 1. an unknown top-level key
    local unknown = lines_with(err, "wrokers")
    assert.is_true(#unknown >= 1, "the unknown key 'wrokers' is not reported:\n" .. err)
    -- 2. a wrong type
    local wrong = lines_with(err, "idle_timeout")
    assert.is_true(#wrong >= 1, "the wrong type of idle_timeout is not reported:\n" .. err)
    -- 3. a missing handler file
    local missing = lines_with(err, "missing_handler.lua")
    assert.is_true(#missing >= 1, "the missing handler is not reported:\n" .. err)
    -- the config problems name the file and start with "gsockd:"
    for _, line in ipairs({ unknown[1], wrong[1] }) do
      assert.matches("three%.toml", line)
      assert.matches("^gsockd:", line)
    end
    -- three distinct lines, not one message
    assert.are_not.equal(unknown[1], wrong[1])
    assert.are_not.equal(wrong[1], missing[1])
  end)

  it("reports a bad address, two services on one address and a handler that does not compile", function()
    local dir = proc.tmpdir()
    proc.write(dir, "echo.lua", proc.ECHO)
    proc.write(dir, "broken.lua", "return function(sock)\n  local x = = 1\nend\n")
    local port = proc.free_port()
    local config = proc.write(dir, "gsockd.toml", ([[
[services.one]
listen = "127.0.0.1:%d"
handler = "echo.lua"

[services.two]
listen = "127.0.0.1:%d"
handler = "echo.lua"

[services.three]
listen = "localhost:notaport"
handler = "echo.lua"

[services.four]
listen = "127.0.0.1:0"
handler = "broken.lua"
]]):format(port, port))
    local p, status = check(dir, config)
    assert.equals(2, status, p:describe())
    local err = p:stderr()
    assert.is_true(#lines_with(err, "localhost:notaport") >= 1, "bad address not reported:\n" .. err)
    assert.is_true(#lines_with(err, "127.0.0.1:" .. port) >= 1, "two services on one address not reported:\n" .. err)
    assert.is_true(#lines_with(err, "broken.lua:2:") >= 1, "the handler's compile error (file:line) not reported:\n" .. err)
  end)

  it("reports a TOML syntax error with the file, exit 2", function()
    local dir = proc.tmpdir()
    local config = proc.write(dir, "gsockd.toml", "[services.x\nlisten = \n")
    local p, status = check(dir, config)
    assert.equals(2, status, p:describe())
    assert.is_true(#gsockd_lines(p:stderr(), "gsockd.toml") >= 1, "no 'gsockd: ...' line names the file\n" .. p:describe())
  end)

  it("reports a service without a handler", function()
    local dir = proc.tmpdir()
    local config = proc.write(dir, "gsockd.toml", '[services.nohandler]\nlisten = "127.0.0.1:0"\n')
    local p, status = check(dir, config)
    assert.equals(2, status, p:describe())
    assert.matches("nohandler", p:stderr())
    assert.matches("handler", p:stderr())
  end)

  it("checks a handler file: 0 when it compiles", function()
    local dir = proc.tmpdir()
    local file = proc.write(dir, "echo.lua", proc.ECHO)
    local p, status = check(dir, file)
    assert.equals(0, status, p:describe())
    assert.equals(0, #p:listen_lines())
  end)

  it("checks a handler file: 2 with file:line when it does not compile", function()
    local dir = proc.tmpdir()
    local file = proc.write(dir, "bad_handler.lua", "return function(sock, peer)\n  sock:send('x')\n  if then\nend\n")
    local p, status = check(dir, file)
    assert.equals(2, status, p:describe())
    assert.matches("bad_handler%.lua:3:", p:stderr())
  end)

  it("a missing file exits 2 naming it", function()
    local dir = proc.tmpdir()
    local p, status = check(dir, dir .. "/does_not_exist.toml")
    assert.equals(2, status, p:describe())
    assert.is_true(#gsockd_lines(p:stderr(), "does_not_exist.toml") >= 1, "no 'gsockd: ...' line names the file\n" .. p:describe())
  end)
end)

describe("gsockd check and serve: a unix: path longer than sun_path", function()
  -- 107 bytes and the NUL fill sun_path; the path is bound as written.
  local function config_with_path(length)
    local dir = proc.tmpdir()
    proc.write(dir, "echo.lua", proc.ECHO)
    local path = dir .. "/" .. ("p"):rep(length - #dir - 1)
    assert.equals(length, #path)
    return dir, proc.write(dir, "gsockd.toml", ('[services.echo]\nlisten = ["127.0.0.1:0", "unix:%s"]\nhandler = "echo.lua"\n')
      :format(path)), path
  end

  it("is a bad address in check and serve: exit 2 naming it and the limit, nothing bound; 107 bytes serve", function()
    local dir, config, path = config_with_path(108)
    local p, status = check(dir, config)
    assert.equals(2, status, p:describe())
    local reason = "bad address 'unix:" .. path .. "' (a unix socket path is at most 107 bytes, this one is 108)"
    assert.equals(1, #gsockd_lines(p:stderr(), "gsockd.toml:2: services.echo.listen[2]: " .. reason), p:describe())
    local s = proc.start({ "serve", config }, { cwd = dir })
    assert.equals(2, s:wait_exit(5), s:describe())
    assert.equals(1, #gsockd_lines(s:stderr(), reason), s:describe())
    assert.equals(0, #s:listen_lines(), s:describe())

    dir, config, path = config_with_path(107)
    p, status = check(dir, config)
    assert.equals(0, status, p:describe())
    s = proc.start({ "serve", config }, { cwd = dir })
    s:listening(2)
    assert.equals("long", proc.request("unix:" .. path, "long"), s:describe())
  end)
end)

describe("gsockd check: keys and values nested too deeply, keys too long", function()
  -- Each must end at once with the error; 8 s stays inside the test's own timeout.
  local deep = ("a."):rep(19999) .. "a"
  local service = '[services.x]\nlisten = "127.0.0.1:0"\nhandler = "echo.lua"\n'
  local cases = {
    { "a key of 20,000 dotted parts", deep .. " = 1\n" .. service, 1, "key nested deeper than 32 levels" },
    { "a [table] header of 20,000 parts", "[" .. deep .. "]\n" .. service, 1, "key nested deeper than 32 levels" },
    { "an [[array of tables]] header of 20,000 parts", service .. "[[" .. deep .. "]]\n", 4,
      "key nested deeper than 32 levels" },
    { "an env key of 20,000 parts", service .. "[services.x.env]\n" .. deep .. " = 1\n", 5,
      "key nested deeper than 32 levels" },
    { "an env inline table with a key of 20,000 parts", service .. "[services.x.env]\nt = {" .. deep .. " = 1}\n", 5,
      "value nested deeper than 32 levels" },
    { "arrays nested 20,000 deep", "a = " .. ("["):rep(20000) .. ("]"):rep(20000) .. "\n" .. service, 1,
      "value nested deeper than 32 levels" },
    { "inline tables nested 20,000 deep", "a = " .. ("{b="):rep(20000) .. "1" .. ("}"):rep(20000) .. "\n" .. service,
      1, "value nested deeper than 32 levels" },
    { "a key of 20,000 parts before a syntax error", "x = 1\n" .. deep .. " = 1\n= = =\n", 2,
      "key nested deeper than 32 levels" },
    { "a key of 1,000,000 bytes", ("k"):rep(1000000) .. " = 1\n" .. service, 1, "key longer than 1024 bytes" },
  }
  for _, case in ipairs(cases) do
    it(case[1] .. ": exit 2 with the file, the line and the limit, at once", function()
      local dir = proc.tmpdir()
      proc.write(dir, "echo.lua", proc.ECHO)
      local config = proc.write(dir, "gsockd.toml", case[2])
      local p = proc.start({ "check", config }, { cwd = dir })
      local status = p:wait_exit(8)
      local err = p:stderr():sub(1, 2000)
      assert.equals(2, status, ("status %s (nil: still running after 8 s)\n%s"):format(tostring(status), err))
      local want = ("gsockd: %s:%d: "):format(config, case[3])
      local line = err:match("[^\n]*")
      assert.equals(want, line:sub(1, #want), err)
      assert.equals(case[4], line:sub(-#case[4]), err)
    end)
  end
end)

describe("gsockd check: the handlers' tables", function()
  it("reports every handler whose table is wrong, or that returns nothing, and exits 2", function()
    local dir = proc.tmpdir()
    proc.write(dir, "typo.lua", 'return {\n  handle = function() end,\n  idle_timout = 30,\n}\n')
    proc.write(dir, "script.lua", 'local x = 1\n')
    proc.write(dir, "good.lua", proc.ECHO)
    local config = proc.write(dir, "gsockd.toml", [[
[services.typo]
listen = "127.0.0.1:1"
handler = "typo.lua"
[services.script]
listen = "127.0.0.1:2"
handler = "script.lua"
[services.good]
listen = "127.0.0.1:3"
handler = "good.lua"
]])
    local p, status = check(dir, config)
    assert.equals(2, status, p:describe())
    local err = p:stderr()
    assert.equals(1, #gsockd_lines(err, "services.typo.handler: " .. dir .. "/typo.lua:3: handler table: "
      .. "unknown key 'idle_timout'; did you mean 'idle_timeout'?"), err)
    assert.equals(1, #gsockd_lines(err, "services.script.handler: " .. dir .. "/script.lua: a handler file "
      .. "returns a function(sock, peer) or a table with a 'handle' function, got nothing"), err)
    assert.equals(0, #gsockd_lines(err, "good"), err)
  end)
end)
