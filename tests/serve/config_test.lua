-- `gsockd serve CONFIG` (SPEC §6): services from a TOML config file, each printed as
-- `listening on ADDRESS (SERVICE)`; handlers and lua_path relative to the config file;
-- [services.NAME.env] handed to init(config) as config.env.
local gsock = require "gsock"
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/serve/"
local proc = dofile(here .. "support/proc.lua")

after_each(proc.cleanup)

--- The listen entries of a service, by service name.
local function by_name(lines)
  local t = {}
  for _, e in ipairs(lines) do
    t[e.name or "?"] = t[e.name or "?"] or {}
    table.insert(t[e.name or "?"], e)
  end
  return t
end

describe("gsockd serve", function()
  it("serves two services from one config: an echo and an HTTP hello", function()
    local dir = proc.tmpdir()
    proc.write(dir, "handlers/echo.lua", proc.ECHO)
    proc.write(dir, "handlers/http_hello.lua", proc.http_hello("Hello, World!"))
    local config = proc.write(dir, "gsockd.toml", [[
shutdown_timeout = 2

[services.echo]
listen = "127.0.0.1:0"
handler = "handlers/echo.lua"

[services.hello]
listen = "127.0.0.1:0"
handler = "handlers/http_hello.lua"
]])
    local p = proc.start({ "serve", config }, { cwd = dir })
    local s = by_name(p:listening(2))
    assert.is_not_nil(s.echo, p:describe())
    assert.is_not_nil(s.hello, p:describe())
    assert.matches("^127%.0%.0%.1:%d+$", s.echo[1].address)
    assert.is_true(s.echo[1].port > 0 and s.hello[1].port > 0)
    assert.are_not.equal(s.echo[1].port, s.hello[1].port)
    assert.equals("echo me", proc.request(s.echo[1].address, "echo me"))
    local code, body = proc.http_get(s.hello[1].address, "/")
    assert.equals(200, code, tostring(body))
    assert.equals("Hello, World!", body)
    -- both keep answering, interleaved
    assert.equals("second", proc.request(s.echo[1].address, "second"))
    code, body = proc.http_get(s.hello[1].address, "/again")
    assert.equals(200, code, tostring(body))
  end)

  it("hands [services.NAME.env] to init(config) as config.env, with config.name", function()
    local dir = proc.tmpdir()
    proc.write(dir, "handlers/hello.lua", [[
      local greeting, name, listen_type
      return {
        init = function(config)
          greeting = config.env and config.env.greeting
          name = config.name
          listen_type = type(config.listen)
        end,
        handle = function(sock)
          repeat local line = sock:receive("*l") until not line or line == ""
          local body = tostring(greeting) .. "|" .. tostring(name) .. "|" .. tostring(listen_type)
          sock:send("HTTP/1.1 200 OK\r\nContent-Length: " .. #body .. "\r\nConnection: close\r\n\r\n" .. body)
        end,
      }
    ]])
    local config = proc.write(dir, "gsockd.toml", [[
[services.hello]
listen = "127.0.0.1:0"
handler = "handlers/hello.lua"
idle_timeout = 30
[services.hello.env]
greeting = "Hello, World!"
]])
    local p = proc.start({ "serve", config }, { cwd = dir })
    local l = p:listening()
    assert.equals("hello", l[1].name, p:describe())
    local code, body = proc.http_get(l[1].address, "/")
    assert.equals(200, code, tostring(body))
    assert.equals("Hello, World!|hello|table", body)
  end)

  it("listens on every address of a listen array (TCP and unix), one line each", function()
    local dir = proc.tmpdir()
    proc.write(dir, "echo.lua", proc.ECHO)
    local path = proc.unix_path(dir, "echo")
    local config = proc.write(dir, "gsockd.toml", ([[
[services.echo]
listen = ["127.0.0.1:0", "unix:%s"]
handler = "echo.lua"
]]):format(path))
    local p = proc.start({ "serve", config }, { cwd = dir })
    local l = p:listening(2)
    local seen_unix = false
    for _, e in ipairs(l) do
      assert.equals("echo", e.name, e.line)
      if e.path then seen_unix = true; assert.equals(path, e.path) end
      assert.equals("via " .. e.address, proc.request(e.address, "via " .. e.address))
    end
    assert.is_true(seen_unix, p:describe())
  end)

  it("reads config/gsockd.toml from the cwd by default; handler paths are relative to the config file", function()
    local dir = proc.tmpdir()
    proc.write(dir, "config/handlers/echo.lua", proc.ECHO)
    proc.write(dir, "config/gsockd.toml", [[
[services.defaulted]
listen = "127.0.0.1:0"
handler = "handlers/echo.lua"
]])
    local p = proc.start({ "serve" }, { cwd = dir })
    local l = p:listening()
    assert.equals("defaulted", l[1].name, p:describe())
    assert.equals("found", proc.request(l[1].address, "found"))
  end)

  it("a config given by path works from any cwd", function()
    local dir = proc.tmpdir()
    local elsewhere = proc.tmpdir()
    proc.write(dir, "h/echo.lua", proc.ECHO)
    local config = proc.write(dir, "svc.toml", [[
[services.far]
listen = "127.0.0.1:0"
handler = "h/echo.lua"
]])
    local p = proc.start({ "serve", config }, { cwd = elsewhere })
    local l = p:listening()
    assert.equals("far", proc.request(l[1].address, "far"))
  end)

  it("adds lua_path (relative to the config file) to package.path", function()
    local dir = proc.tmpdir()
    proc.write(dir, "lib/greetlib.lua", 'return { word = "from-lib" }\n')
    proc.write(dir, "handlers/h.lua", [[
      local lib = require "greetlib"
      return function(sock) sock:send(lib.word .. "\n") end
    ]])
    local config = proc.write(dir, "gsockd.toml", [[
lua_path = ["lib/?.lua"]

[services.lib]
listen = "127.0.0.1:0"
handler = "handlers/h.lua"
]])
    local p = proc.start({ "serve", config }, { cwd = "/" })
    local l = p:listening()
    local c = assert(proc.connect(l[1]))
    assert.equals("from-lib", c:receive("*l"))
  end)

  it("sets TCP_NODELAY by default and not with nodelay = false", function()
    local dir = proc.tmpdir()
    proc.write(dir, "nd.lua", [[
      return function(sock) sock:send(tostring(sock:getoption("tcp-nodelay")) .. "\n") end
    ]])
    local config = proc.write(dir, "gsockd.toml", [[
[services.fast]
listen = "127.0.0.1:0"
handler = "nd.lua"

[services.nagle]
listen = "127.0.0.1:0"
handler = "nd.lua"
nodelay = false
]])
    local p = proc.start({ "serve", config }, { cwd = dir })
    local s = by_name(p:listening(2))
    local c = assert(proc.connect(s.fast[1]))
    assert.equals("true", c:receive("*l"))
    c = assert(proc.connect(s.nagle[1]))
    assert.equals("false", c:receive("*l"))
  end)

  it("a bad config exits 2 and binds nothing", function()
    local dir = proc.tmpdir()
    proc.write(dir, "echo.lua", proc.ECHO)
    local port = proc.free_port()
    local config = proc.write(dir, "gsockd.toml", ([[
[services.good]
listen = "127.0.0.1:%d"
handler = "echo.lua"

[services.bad]
listen = "127.0.0.1:0"
handler = "echo.lua"
max_connections = "lots"
]]):format(port))
    local p = proc.start({ "serve", config }, { cwd = dir })
    local status = p:wait_exit(5)
    assert.equals(2, status, p:describe())
    assert.matches("max_connections", p:stderr())
    assert.equals(0, #p:listen_lines(), p:describe())
  end)

  it("a missing config file exits 2 naming it", function()
    local dir = proc.tmpdir()
    local p = proc.start({ "serve", dir .. "/nope.toml" }, { cwd = dir })
    assert.equals(2, p:wait_exit(5), p:describe())
    assert.matches("\ngsockd:[^\n]*nope%.toml", "\n" .. p:stderr())
  end)
end)
