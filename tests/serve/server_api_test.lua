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
