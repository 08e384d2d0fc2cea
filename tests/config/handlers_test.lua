-- The bundled handlers of config/gsockd.toml (config/handlers/), served with
-- gsock.testing.serve and driven by LuaSocket clients. `gsockd check` on the config
-- itself is tested in Tests/GSockTests/ConfigTests.swift.
local socket = require "socket"
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/config/"
local handlers = here .. "../../config/handlers/"

local function connect(address)
  local host, port = address:match("^(.*):(%d+)$")
  local client = assert(socket.connect(host, tonumber(port)))
  client:settimeout(5)
  return client
end

describe("config/handlers/echo.lua", function()
  it("echoes lines until the client closes, and a last line without a newline", function()
    local _, address = gsock.testing.serve(dofile(handlers .. "echo.lua"))
    local client = connect(address)
    assert(client:send("hello\r\nworld\n"))
    assert.equals("hello", client:receive("*l"))
    assert.equals("world", client:receive("*l"))
    assert(client:send("bye"))
    client:shutdown("send")
    assert.equals("bye", client:receive("*a"))
    client:close()
  end)
end)

describe("config/handlers/http_hello.lua", function()
  local function response(client)
    local status = client:receive("*l")
    local headers = {}
    while true do
      local line = assert(client:receive("*l"))
      if line == "" then break end
      local name, value = line:match("^([^:]+):%s*(.*)$")
      headers[name:lower()] = value
    end
    local body = assert(client:receive(tonumber(headers["content-length"])))
    return status, headers, body
  end

  it("answers keep-alive requests with init's greeting until Connection: close", function()
    local handler = dofile(handlers .. "http_hello.lua")
    handler.init({ env = { greeting = "Hi from env" } })
    local _, address = gsock.testing.serve(handler)
    local client = connect(address)
    for _ = 1, 2 do
      assert(client:send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
      local status, headers, body = response(client)
      assert.equals("HTTP/1.1 200 OK", status)
      assert.equals("11", headers["content-length"])
      assert.is_nil(headers["connection"])
      assert.equals("Hi from env", body)
    end
    assert(client:send("POST /x HTTP/1.1\r\nContent-Length: 4\r\nConnection: close\r\n\r\nabcd"))
    local status, headers, body = response(client)
    assert.equals("HTTP/1.1 200 OK", status)
    assert.equals("close", headers["connection"])
    assert.equals("Hi from env", body)
    local line, err = client:receive("*l")
    assert.is_nil(line)
    assert.equals("closed", err)
    client:close()
  end)

  it("says Hello, World! without an env, and closes HTTP/1.0 connections", function()
    local handler = dofile(handlers .. "http_hello.lua")
    handler.init({})
    local _, address = gsock.testing.serve(handler)
    local client = connect(address)
    assert(client:send("GET / HTTP/1.0\r\n\r\n"))
    local _, headers, body = response(client)
    assert.equals("Hello, World!", body)
    assert.equals("close", headers["connection"])
    local line, err = client:receive("*l")
    assert.is_nil(line)
    assert.equals("closed", err)
    client:close()
  end)
end)
