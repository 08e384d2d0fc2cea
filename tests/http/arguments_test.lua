-- The HTTP layer's methods given a wrong self (found by tests/fuzz's argument fuzzer):
-- each raises luaL_checkudata's error naming the method, never http.lua's own "attempt to
-- index a nil value"; the request is served after.
local gsock = require "gsock"
local socket = require "socket"

describe("HTTP methods with a wrong self", function()
  it("req's and res's methods raise 'bad argument #1 to <method>' naming what they expected", function()
    local got = {}
    local srv = gsock.http.server("127.0.0.1:0", function(req, res)
      for _, call in ipairs({
        { "body", req.body, {} }, { "reader", req.reader, 1 }, { "header_values", req.header_values, {}, "x" },
        { "args", req.args, "x" }, { "write", res.write, {}, "x" }, { "finish", res.finish, req },
        { "upgrade", res.upgrade, {} }, { "write", res.write },
      }) do
        got[#got + 1] = { call[1], pcall(call[2], table.unpack(call, 3)) }
      end
      return 200, "served"
    end):start()
    local c = assert(socket.connect("127.0.0.1", srv.port))
    c:settimeout(3)
    assert(c:send("GET / HTTP/1.1\r\nConnection: close\r\n\r\n"))
    assert.equals("HTTP/1.1 200 OK", c:receive("*l"))
    c:close()
    srv:stop()
    local types = { body = "table", reader = "number", header_values = "table", args = "string", finish = "userdata",
                    upgrade = "table" }
    for i, r in ipairs(got) do
      local method, ok, err = r[1], r[2], r[3]
      local object = ({ body = "request", reader = "request", header_values = "request", args = "request" })[method]
        or "response"
      local given = types[method] or (i == #got and "nil" or "table")
      assert.is_false(ok, method)
      assert.equals(("bad argument #1 to '%s' (gsock.http.%s expected, got %s)"):format(method, object, given), err)
    end
  end)

  it("a server's start, stop and serve_forever on something that is not a server raise naming it", function()
    local srv = gsock.http.server("127.0.0.1:0", function() return 200, "x" end)
    for _, m in ipairs({ "start", "stop", "serve_forever" }) do
      assert.has_error(function() srv[m]({}) end, ("bad argument #1 to '%s' (gsock.server expected, got table)"):format(m))
    end
    local udp = gsock.udp_server("127.0.0.1:0", function() end)
    assert.has_error(function() udp.start(srv) end, "bad argument #1 to 'start' (gsock.udp_server expected, got table)")
  end)
end)
