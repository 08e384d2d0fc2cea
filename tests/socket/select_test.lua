-- socket.select(recvt, sendt [, timeout]) (LUASOCKET.md), cooperative: it blocks only
-- the calling fiber. Expected values checked against real LuaSocket 3.0.0 ("oracle").
local gsock = require "gsock"
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/socket/"
local net = dofile(here .. "support/net.lua")
local socket = net.socket()

after_each(net.cleanup)

--- The number of keys of a table.
local function count_keys(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

describe("socket.select", function()
  it("keys the readable sockets by index and by socket (oracle: t[sock] is its index)", function()
    local c, s = net.pair()
    local c2, s2 = net.pair()
    c:send("x")
    gsock.sleep(0.05)
    local r, w, err = socket.select({ s2, s }, nil, 1)
    assert.is_nil(err)
    assert.equals(s, r[1])
    assert.equals(1, r[s])
    assert.is_nil(r[s2])                     -- nothing to read there
    assert.is_nil(r[2])
    assert.equals(2, count_keys(r))
    assert.same({}, w)
  end)

  it("keys the writable sockets by index and by socket", function()
    local c, s = net.pair()
    local r, w, err = socket.select(nil, { c, s }, 1)
    assert.is_nil(err)
    assert.same({}, r)
    assert.is_true(w[c] ~= nil and w[s] ~= nil)
    assert.equals(c, w[w[c]])
    assert.equals(s, w[w[s]])
    assert.equals(4, count_keys(w))
  end)

  it("reports readable and writable in the same call", function()
    local c, s = net.pair()
    c:send("x")
    gsock.sleep(0.05)
    local r, w, err = socket.select({ s, c }, { c }, 1)
    assert.is_nil(err)
    assert.equals(s, r[1]); assert.equals(1, r[s]); assert.is_nil(r[c])
    assert.equals(c, w[1]); assert.equals(1, w[c])
  end)

  it("on timeout gives two empty tables and 'timeout' (oracle: not nil), after about that long", function()
    local c, s = net.pair()
    local r, dt = net.timed(socket.select, { s, c }, nil, 0.2)
    assert.equals(3, r.n)
    assert.same({}, r[1])
    assert.same({}, r[2])
    assert.equals("timeout", r[3])
    assert.is_true(dt >= 0.15 and dt < 1.5, "select timed out after " .. dt .. " s")
  end)

  it("with nothing to watch just waits out the timeout", function()
    local r, dt = net.timed(socket.select, nil, nil, 0.1)
    assert.same({}, r[1]); assert.same({}, r[2]); assert.equals("timeout", r[3])
    assert.is_true(dt >= 0.08)
    local r0 = table.pack(socket.select({}, {}, 0))
    assert.same({}, r0[1]); assert.same({}, r0[2]); assert.equals("timeout", r0[3])
  end)

  it("timeout 0 polls without waiting", function()
    local c, s = net.pair()
    local r, dt = net.timed(socket.select, { s }, nil, 0)
    assert.equals("timeout", r[3])
    assert.is_true(dt < 0.05)
  end)

  it("counts buffered data (dirty) as readable", function()
    local c, s = net.pair()
    s:settimeout(2)
    c:send("xy\n")
    assert.equals("x", s:receive(1))         -- "y\n" now waits in s's buffer
    assert.is_true(s:dirty())
    local r, _, err = socket.select({ s }, nil, 0)
    assert.is_nil(err)
    assert.equals(s, r[1])
  end)

  it("reports a server with a pending connection as readable", function()
    local srv, port = net.listen()
    local c = net.track(assert(socket.connect("127.0.0.1", port)))
    local r, _, err = socket.select({ srv }, nil, 1)
    assert.is_nil(err)
    assert.equals(srv, r[1])
    srv:settimeout(0)
    net.track(assert(srv:accept()))
  end)

  it("reports a socket whose peer closed as readable", function()
    local c, s = net.pair()
    c:close()
    local r, _, err = socket.select({ s }, nil, 1)
    assert.is_nil(err)
    assert.equals(s, r[1])
  end)

  it("ignores closed sockets in the lists (oracle: timeout)", function()
    local c, s = net.pair()
    s:close()
    local r, w, err = socket.select({ s }, nil, 0.05)
    assert.same({}, r); assert.same({}, w); assert.equals("timeout", err)
  end)

  it("accepts any object with getfd and dirty", function()
    local c, s = net.pair()
    local wrapper = { getfd = function() return s:getfd() end, dirty = function() return false end }
    c:send("x")
    local r, _, err = socket.select({ wrapper }, nil, 1)
    assert.is_nil(err)
    assert.equals(wrapper, r[1])
    assert.equals(1, r[wrapper])
  end)

  it("without a timeout waits until a socket is ready", function()
    local c, s = net.pair()
    net.spawn(function() gsock.sleep(0.1); c:send("late") end)
    local r, dt = net.timed(socket.select, { s }, nil)
    assert.equals(s, r[1][1])
    assert.is_nil(r[3])
    assert.is_true(dt >= 0.08, "returned after " .. dt)
  end)

  it("handles 300 sockets in one call", function()
    local list = {}
    local srv, port = net.listen(512)
    for i = 1, 300 do
      list[i] = net.track(assert(socket.connect("127.0.0.1", port)))
    end
    local r, w, err = socket.select(nil, list, 2)
    assert.is_nil(err)
    assert.equals(300, #w)
  end)

  it("handles descriptors above FD_SETSIZE (1024), where real LuaSocket raises", function()
    local p = io.popen("ulimit -n")
    local limit = tonumber(p:read("a"):match("%d+")) or 0
    p:close()
    if limit < 2600 then pending("needs ulimit -n >= 2600 (it is " .. limit .. ")") end
    local list = {}
    local srv, port = net.listen(2048)
    for i = 1, 1100 do
      list[i] = net.track(assert(socket.connect("127.0.0.1", port)))
    end
    assert.is_true(list[1100]:getfd() > 1024)
    local r, w, err = socket.select(nil, { list[1100], list[1] }, 2)
    assert.is_nil(err)
    assert.equals(2, #w)
    assert.equals(1, w[list[1100]])
  end)
end)

describe("socket.select is cooperative", function()
  it("other fibers run while it waits", function()
    local c, s = net.pair()
    local ticks = 0
    local ticker = net.spawn(function() while true do ticks = ticks + 1; gsock.sleep(0.01) end end)
    local r = table.pack(socket.select({ s }, nil, 0.2))
    assert.equals("timeout", r[3])
    assert.is_true(ticks >= 8, "the other fiber ran only " .. ticks .. " times in 0.2 s")
    ticker:kill()
  end)

  it("wakes when another fiber makes a socket readable", function()
    local c, s = net.pair()
    local got
    local waiter = net.spawn(function() got = table.pack(socket.select({ s }, nil, 3)) end)
    gsock.sleep(0.05)
    assert.is_false(waiter:dead())
    c:send("x")
    assert.is_true(waiter:join(1))
    assert.equals(s, got[1][1])
    assert.is_nil(got[3])
  end)

  it("two fibers can select on the same socket and both wake", function()
    local c, s = net.pair()
    local woke = 0
    local a = net.spawn(function() local r = socket.select({ s }, nil, 2); if r[1] == s then woke = woke + 1 end end)
    local b = net.spawn(function() local r = socket.select({ s }, nil, 2); if r[1] == s then woke = woke + 1 end end)
    gsock.sleep(0.05)
    c:send("x")
    assert.equals(2, #gsock.joinall({ a, b }, 2))
    assert.equals(2, woke)
  end)
end)
