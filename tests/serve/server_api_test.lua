-- gsock.server used from Lua inside one process (SPEC §5): the object `gsockd run`
-- and config services are built on, driven here without a child process.
local gsock = require "gsock"
local socket = require "socket"

local function connect(server)
  local c = socket.tcp()
  c:settimeout(2)
  assert(c:connect(server.host, server.port))
  return c
end

describe("gsock.server:stop(0)", function()
  it("kills running handlers, whose clients see the connection closed", function()
    local started = gsock.event()
    local server = gsock.server("127.0.0.1:0", function(sock)
      started:set()
      sock:receive("*l")
    end):start()
    local c = connect(server)
    assert.is_true(started:wait(2))
    server:stop(0)
    assert.equals(0, server:connections())
    local data, err = c:receive("*l")
    assert.is_nil(data)
    assert.equals("closed", err)
    c:close()
  end)
end)

describe("gsock.server: the handler table and options are checked", function()
  it("an unknown handler-table key is an argument error with did you mean", function()
    local ok, err = pcall(gsock.server, "127.0.0.1:0", { handle = function() end, max_conections = 5 })
    assert.is_false(ok)
    assert.matches("bad argument #2 to 'server' %(handler table: unknown key 'max_conections'; "
      .. "did you mean 'max_connections'%?%)", tostring(err))
  end)

  it("a unix: path longer than 107 bytes is an argument error naming it and the limit", function()
    local path = "/tmp/" .. ("p"):rep(103)
    local ok, err = pcall(gsock.server, { "127.0.0.1:0", "unix:" .. path }, function() end)
    assert.is_false(ok)
    assert.equals("bad argument #1 to 'server' (bad address 'unix:" .. path .. "' (a unix socket path is at most "
      .. "107 bytes, this one is 108))", tostring(err):match("bad argument.*"))
    assert.is_true((pcall(gsock.server, "unix:/tmp/" .. ("p"):rep(102), function() end)), "107 bytes fit")
  end)

  it("an option of the wrong type is an argument error naming it", function()
    local ok, err = pcall(gsock.server, "127.0.0.1:0", function() end, { idle_timeout = "soon" })
    assert.is_false(ok)
    assert.matches("bad argument #3 to 'server' %('idle_timeout' must be a positive number of seconds, "
      .. "got string%)", tostring(err))
  end)
end)

describe("gsock.udp_server:stop()", function()
  local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/serve/"
  local script = dofile(here .. "../core/support/script.lua")

  -- In a child process: a receive loop that spun on the closed socket froze its whole loop.
  it("ends the receive loop: no spin on the closed socket, the process goes on idle", function()
    local r = script.run([[
local gsock = require "gsock"
local socket = require "socket"
local server = gsock.udp_server("127.0.0.1:0", function(data, peer, srv) srv:sendto(data, peer.host, peer.port) end):start()
local c = socket.udp()
c:settimeout(2)
c:sendto("ping", "127.0.0.1", server.port)
print("echo " .. tostring(c:receive()))
server:stop()
local cpu = os.clock()
gsock.sleep(0.5)
print(("cpu %.2f"):format(os.clock() - cpu))
print("receiver dead " .. tostring(server.receiver:dead()))
]], { limit = 6 })
    assert.equals(0, r.status, r.output)
    assert.matches("echo ping", r.stdout)
    assert.matches("receiver dead true", r.stdout)
    local cpu = tonumber(r.stdout:match("cpu ([%d.]+)"))
    assert.is_true(cpu < 0.2, "used " .. tostring(cpu) .. " s of CPU in 0.5 s after stop")
    assert.falsy(r.stderr:find("without yielding", 1, true), r.stderr)
  end)
end)
