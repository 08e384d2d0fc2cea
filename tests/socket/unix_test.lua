-- Unix-domain sockets: `require "socket.unix"` (LUASOCKET.md "Unix objects"), checked
-- against real LuaSocket 3.0.0 ("oracle").
local gsock = require "gsock"
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/socket/"
local net = dofile(here .. "support/net.lua")
net.socket()
local unix = require "socket.unix"

local paths = {}
--- A fresh socket path, removed after the test.
local function path(tag)
  local p = net.tmp_path(tag)
  paths[#paths + 1] = p
  return p
end

after_each(function()
  net.cleanup()
  for _, p in ipairs(paths) do os.remove(p) end
  paths = {}
end)

--- A listening unixstream server on a fresh path; returns it and the path.
local function listening()
  local p = path("stream")
  local m = net.track(assert(unix.stream()))
  assert.equals(1, m:bind(p))
  assert.equals(1, m:listen())
  return m, p
end

describe("socket.unix", function()
  it("is a table with stream and dgram (and the aliases tcp and udp)", function()
    assert.equals("table", type(unix))
    assert.equals("function", type(unix.stream))
    assert.equals("function", type(unix.dgram))
    assert.equals(unix.stream, unix.tcp)
    assert.equals(unix.dgram, unix.udp)
  end)

  it("calling the module makes a stream master, like unix.stream() (oracle)", function()
    local m = net.track(unix())
    assert.matches("^unixstream{master}: ", tostring(m))
  end)
end)

describe("unix stream sockets", function()
  it("have the class names unixstream{master}, {server} and {client}", function()
    local p = path("classes")
    local m = net.track(unix.stream())
    assert.matches("^unixstream{master}: 0x%x+$", tostring(m))
    assert.equals(1, m:bind(p))
    assert.matches("^unixstream{master}: ", tostring(m))
    assert.equals(1, m:listen())
    assert.matches("^unixstream{server}: ", tostring(m))
    local c = net.track(unix.stream())
    assert.equals(1, c:connect(p))
    assert.matches("^unixstream{client}: ", tostring(c))
    m:settimeout(2)
    local a = net.track(assert(m:accept()))
    assert.matches("^unixstream{client}: ", tostring(a))
  end)

  it("carry data both ways with the receive patterns of tcp", function()
    local m, p = listening()
    local c = net.track(unix.stream())
    assert.equals(1, c:connect(p))
    m:settimeout(2)
    local a = net.track(assert(m:accept()))
    a:settimeout(2); c:settimeout(2)
    assert.equals(11, c:send("hello\nworld"))
    assert.equals("hello", a:receive())
    assert.equals(5, a:send("back\n"))
    assert.equals("back", c:receive("*l"))
    c:close()
    assert.equals("world", a:receive("*a"))
  end)

  it("getsockname of a bound socket gives its path (oracle)", function()
    local m, p = listening()
    assert.equals(p, (m:getsockname()))
  end)

  it("connecting to a missing path gives nil and strerror (oracle: 'No such file or directory')", function()
    local c = net.track(unix.stream())
    local ok, err = c:connect(path("missing"))
    assert.is_nil(ok)
    assert.equals("No such file or directory", err)
  end)

  it("binding a path in use gives nil, 'address already in use'", function()
    local _, p = listening()
    local m2 = net.track(unix.stream())
    local ok, err = m2:bind(p)
    assert.is_nil(ok)
    assert.equals("address already in use", err)
  end)

  it("accept with a timeout gives nil, 'timeout' and lets other fibers run meanwhile", function()
    local m = listening()
    m:settimeout(0.2)
    local ticks = 0
    local ticker = net.spawn(function() while true do ticks = ticks + 1; gsock.sleep(0.01) end end)
    local r, dt = net.timed(m.accept, m)
    assert.is_nil(r[1]); assert.equals("timeout", r[2])
    assert.is_true(dt >= 0.15, "took " .. dt)
    assert.is_true(ticks >= 5, "the other fiber ran only " .. ticks .. " times")
    ticker:kill()
  end)

  it("serve many clients concurrently, a fiber per connection", function()
    local m, p = listening()
    local acceptor = net.spawn(function()
      while true do
        local c = m:accept()
        if not c then return end
        net.track(c)
        net.spawn(function() net.echo_lines(c); c:close() end)
      end
    end)
    local clients, ok = {}, 0
    for k = 1, 20 do
      clients[k] = net.spawn(function()
        local c = net.track(unix.stream())
        assert(c:connect(p) == 1)
        c:settimeout(3)
        for i = 1, 10 do
          c:send(("%d:%d\n"):format(k, i))
          assert(c:receive() == ("%d:%d"):format(k, i))
        end
        c:close()
        ok = ok + 1
      end)
    end
    assert.equals(20, #gsock.joinall(clients, 5))
    assert.equals(20, ok)
    m:close()
    acceptor:join(1)
  end)

  it("close from another fiber wakes a blocked receive with nil, 'closed'", function()
    local m, p = listening()
    local c = net.track(unix.stream())
    c:connect(p)
    local got
    local reader = net.spawn(function() got = table.pack(c:receive()) end)
    gsock.sleep(0.05)
    c:close()
    assert.is_true(reader:join(1))
    assert.is_nil(got[1]); assert.equals("closed", got[2])
  end)
end)

describe("unix datagram sockets", function()
  it("have the class names unixdgram{unconnected} and {connected}", function()
    local d = net.track(unix.dgram())
    assert.matches("^unixdgram{unconnected}: 0x%x+$", tostring(d))
    local p = path("dg-classes")
    local d2 = net.track(unix.dgram())
    assert.equals(1, d2:bind(p))
    assert.equals(1, d:connect(p))
    assert.matches("^unixdgram{connected}: ", tostring(d))
  end)

  it("sendto returns the bytes sent and receivefrom gives the datagram and the sender's path", function()
    local pa, pb = path("dg-a"), path("dg-b")
    local a = net.track(unix.dgram())
    assert.equals(1, a:bind(pa))
    local b = net.track(unix.dgram())
    assert.equals(1, b:bind(pb))
    a:settimeout(2)
    assert.equals(2, b:sendto("dg", pa))
    local data, from = a:receivefrom()
    assert.equals("dg", data)
    assert.equals(pb, from)
    assert.equals(pa, (a:getsockname()))
  end)

  it("a connected one sends with send; receive keeps datagram boundaries", function()
    local pa = path("dg-c")
    local a = net.track(unix.dgram())
    a:bind(pa)
    a:settimeout(2)
    local b = net.track(unix.dgram())
    assert.equals(1, b:connect(pa))
    assert.equals(3, b:send("one"))
    assert.equals(3, b:send("two"))
    assert.equals("one", a:receive())
    assert.equals("two", a:receive())
  end)

  it("receive with a timeout gives nil, 'timeout' and blocks only its fiber", function()
    local a = net.track(unix.dgram())
    a:bind(path("dg-t"))
    a:settimeout(0.15)
    local ticks = 0
    local ticker = net.spawn(function() while true do ticks = ticks + 1; gsock.sleep(0.01) end end)
    local r, dt = net.timed(a.receive, a)
    assert.is_nil(r[1]); assert.equals("timeout", r[2])
    assert.is_true(dt >= 0.1)
    assert.is_true(ticks >= 5)
    ticker:kill()
  end)
end)
