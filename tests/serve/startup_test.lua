-- Startup failures of `gsockd run` and `gsockd serve` (SPEC §5 exit statuses, §6):
-- a handler that does not compile exits 2 with file:line; an address in use exits 1
-- naming the address and saying "in use".
local gsock = require "gsock"
local socket = require "socket"
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/serve/"
local proc = dofile(here .. "support/proc.lua")

after_each(proc.cleanup)

local BROKEN = "return function(sock, peer)\n  local line = sock:receive()\n  sock:send(line ..)\nend\n"

--- A listening socket held by the test on 127.0.0.1; returns it and its port.
local function occupy()
  local s = proc.track(assert(socket.bind("127.0.0.1", 0)))
  local _, port = s:getsockname()
  return s, tonumber(port)
end

describe("a handler that does not compile", function()
  it("gsockd run exits 2 with file:line", function()
    local dir = proc.tmpdir()
    local file = proc.write(dir, "broken_run.lua", BROKEN)
    local p = proc.start({ "run", file, "--listen", "127.0.0.1:0" }, { cwd = dir })
    assert.equals(2, p:wait_exit(5), p:describe())
    assert.matches("broken_run%.lua:3:", p:stderr())
    assert.equals(0, #p:listen_lines())
  end)

  it("gsockd serve exits 2 with file:line", function()
    local dir = proc.tmpdir()
    proc.write(dir, "handlers/broken_serve.lua", BROKEN)
    proc.write(dir, "handlers/echo.lua", proc.ECHO)
    local config = proc.write(dir, "gsockd.toml", [[
[services.fine]
listen = "127.0.0.1:0"
handler = "handlers/echo.lua"

[services.broken]
listen = "127.0.0.1:0"
handler = "handlers/broken_serve.lua"
]])
    local p = proc.start({ "serve", config }, { cwd = dir })
    assert.equals(2, p:wait_exit(5), p:describe())
    assert.matches("broken_serve%.lua:3:", p:stderr())
    assert.equals(0, #p:listen_lines(), "nothing may be bound before the config is known good")
  end)
end)

describe("an address in use", function()
  it("gsockd run exits 1 naming the address and 'in use'", function()
    local _, port = occupy()
    local dir = proc.tmpdir()
    local file = proc.write(dir, "echo.lua", proc.ECHO)
    local p = proc.start({ "run", file, "--listen", "127.0.0.1:" .. port }, { cwd = dir })
    assert.equals(1, p:wait_exit(5), p:describe())
    assert.matches("127%.0%.0%.1:" .. port, p:stderr())
    assert.matches("in use", p:stderr())
  end)

  it("gsockd run exits 1 when the second of two addresses is in use", function()
    local _, port = occupy()
    local dir = proc.tmpdir()
    local file = proc.write(dir, "echo.lua", proc.ECHO)
    local p = proc.start({ "run", file, "--listen", "127.0.0.1:0", "--listen", "127.0.0.1:" .. port },
                         { cwd = dir })
    assert.equals(1, p:wait_exit(5), p:describe())
    assert.matches("127%.0%.0%.1:" .. port, p:stderr())
    assert.matches("in use", p:stderr())
  end)

  it("gsockd serve exits 1 naming the address and 'in use'", function()
    local _, port = occupy()
    local dir = proc.tmpdir()
    proc.write(dir, "echo.lua", proc.ECHO)
    local config = proc.write(dir, "gsockd.toml", ([[
[services.free]
listen = "127.0.0.1:0"
handler = "echo.lua"

[services.taken]
listen = "127.0.0.1:%d"
handler = "echo.lua"
]]):format(port))
    local p = proc.start({ "serve", config }, { cwd = dir })
    assert.equals(1, p:wait_exit(5), p:describe())
    assert.matches("127%.0%.0%.1:" .. port, p:stderr())
    assert.matches("in use", p:stderr())
  end)

  it("a unix socket path with a live server on it is in use", function()
    local dir = proc.tmpdir()
    local path = proc.unix_path(dir, "busy")
    local file = proc.write(dir, "echo.lua", proc.ECHO)
    local first = proc.start({ "run", file, "--listen", "unix:" .. path }, { cwd = dir })
    first:listening()
    local second = proc.start({ "run", file, "--listen", "unix:" .. path }, { cwd = dir })
    assert.equals(1, second:wait_exit(5), second:describe())
    assert.matches(proc.lit(path), second:stderr())
    assert.matches("in use", second:stderr())
    -- and the first one still serves on it
    assert.equals("still", proc.request("unix:" .. path, "still"))
  end)
end)
