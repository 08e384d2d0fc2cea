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

  it("an option of the wrong type is an argument error naming it", function()
    local ok, err = pcall(gsock.server, "127.0.0.1:0", function() end, { idle_timeout = "soon" })
    assert.is_false(ok)
    assert.matches("bad argument #3 to 'server' %('idle_timeout' must be a positive number of seconds, "
      .. "got string%)", tostring(err))
  end)
end)

