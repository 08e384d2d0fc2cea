-- examples/json_api.lua (a JSON API on the HTTP layer with Debian's lua-cjson, which
-- scripts/setup installs): its handler table served with gsock.http.server, as
-- `gsockd run examples/json_api.lua` serves it, on a free port.
local gsock = require "gsock"
local socket = require "socket"

local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/http/"
local example = here .. "../../examples/json_api.lua"

--- One request on its own connection: status, body, Content-Type.
local function request(server, method, path, body)
  local c = socket.tcp()
  c:settimeout(2)
  assert(c:connect(server.host, server.port))
  local head = ("%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"):format(method, path)
  if body then head = head .. ("Content-Type: application/json\r\nContent-Length: %d\r\n"):format(#body) end
  assert(c:send(head .. "\r\n" .. (body or "")))
  local status = tonumber(assert(c:receive("*l")):match("^HTTP/1%.1 (%d%d%d) "))
  local length, content_type
  while true do
    local line = assert(c:receive("*l"))
    if line == "" then break end
    local name, value = line:match("^([^:]+):%s*(.*)$")
    name = name:lower()
    if name == "content-length" then length = tonumber(value) end
    if name == "content-type" then content_type = value end
  end
  assert(length, "a Content-Length")
  local data = assert(c:receive(length))
  c:close()
  return status, data, content_type
end

describe("examples/json_api.lua", function()
  local cjson = require "cjson"  -- Debian's lua-cjson, found on gsockd's package.cpath
  local server

  before_each(function()
    server = gsock.http.server("127.0.0.1:0", dofile(example)):start()
  end)
  after_each(function() server:stop(0) end)

  it("GET /items is an empty JSON array at first", function()
    local status, body, content_type = request(server, "GET", "/items")
    assert.equals(200, status)
    assert.equals("application/json", content_type)
    assert.equals("[]", body)
  end)

  it("POST /items stores the item read from the body, and GET /items lists it", function()
    local status, body = request(server, "POST", "/items", '{"name": "pen"}')
    assert.equals(201, status)
    assert.same({ id = 1, name = "pen" }, cjson.decode(body))
    status, body = request(server, "POST", "/items", '{"name": "ink"}')
    assert.same({ id = 2, name = "ink" }, cjson.decode(body))
    status, body = request(server, "GET", "/items")
    assert.equals(200, status)
    assert.same({ { id = 1, name = "pen" }, { id = 2, name = "ink" } }, cjson.decode(body))
  end)

  it("a body that is not a JSON object with a name is 400, and stores nothing", function()
    for _, bad in ipairs({ "not json", "[1, 2]", '{"name": 3}' }) do
      local status, body = request(server, "POST", "/items", bad)
      assert.equals(400, status, bad)
      assert.matches('"name" string', cjson.decode(body).error)
    end
    local _, body = request(server, "GET", "/items")
    assert.equals("[]", body)
  end)

  it("any other method or path is 404 with a JSON error", function()
    for _, case in ipairs({ { "GET", "/" }, { "GET", "/items/1" }, { "DELETE", "/items" } }) do
      local status, body, content_type = request(server, case[1], case[2])
      assert.equals(404, status, case[1] .. " " .. case[2])
      assert.equals("application/json", content_type)
      assert.equals("no route for " .. case[1] .. " " .. case[2], cjson.decode(body).error)
    end
  end)
end)
