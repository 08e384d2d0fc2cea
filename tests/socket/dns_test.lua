-- Name resolution: socket.dns (LUASOCKET.md), never blocking the loop (SPEC §4).
--
-- Resolver answers depend on the machine (/etc/hosts, nsswitch), so where real
-- LuaSocket (Debian lua-socket, plain lua5.4: the "oracle") is installed, its answer on
-- this very machine is the expectation; the fixed values are what it gives on a stock
-- Debian with "127.0.0.1 localhost" first in /etc/hosts.
local gsock = require "gsock"
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/socket/"
local net = dofile(here .. "support/net.lua")
local socket = net.socket()
local dns = socket.dns

after_each(net.cleanup)

--- True when list (an array) holds a value for which pred(value) holds.
local function any(list, pred)
  for _, v in ipairs(list) do if pred(v) then return true end end
  return false
end

describe("socket.dns.toip", function()
  it("resolves localhost to 127.0.0.1 with the resolved table {name=, alias={}, ip={}}", function()
    local ip, resolved = dns.toip("localhost")
    assert.equals("127.0.0.1", ip)
    assert.equals("table", type(resolved))
    assert.equals("string", type(resolved.name))
    assert.equals("table", type(resolved.alias))
    assert.equals("table", type(resolved.ip))
    assert.is_true(any(resolved.ip, function(a) return a == "127.0.0.1" end))
    local want = net.oracle_values('socket.dns.toip("localhost")')
    if want then assert.same(want[2], resolved) end
  end)

  it("returns an address given as an address", function()
    local ip, resolved = dns.toip("127.0.0.1")
    assert.equals("127.0.0.1", ip)
    assert.equals("table", type(resolved))
  end)

  it("gives nil, 'host not found' for an unknown host (oracle)", function()
    local want = net.oracle_values('socket.dns.toip("nonexistent.invalid")')
    local ip, err = dns.toip("nonexistent.invalid")
    assert.is_nil(ip)
    assert.equals(want and want[2] or "host not found", err)
  end)
end)

describe("socket.dns.tohostname", function()
  it("names 127.0.0.1 (oracle: 'localhost') and gives the resolved table", function()
    local want = net.oracle_values('socket.dns.tohostname("127.0.0.1")')
    local name, resolved = dns.tohostname("127.0.0.1")
    assert.equals(want and want[1] or "localhost", name)
    assert.equals("table", type(resolved))
    assert.is_true(any(resolved.ip, function(a) return a == "127.0.0.1" end))
    if want then assert.same(want[2], resolved) end
  end)

  it("gives nil, 'host not found' for an unknown host (oracle)", function()
    local want = net.oracle_values('socket.dns.tohostname("nonexistent.invalid")')
    local name, err = dns.tohostname("nonexistent.invalid")
    assert.is_nil(name)
    assert.equals(want and want[2] or "host not found", err)
  end)
end)

describe("socket.dns.gethostname", function()
  it("is the machine's host name", function()
    local f = io.open("/proc/sys/kernel/hostname", "r")
    local expected = f and f:read("l")
    if f then f:close() end
    local name = dns.gethostname()
    assert.equals("string", type(name))
    if expected then assert.equals(expected, name) end
  end)
end)

describe("socket.dns.getaddrinfo", function()
  it("lists {family=, addr=} entries for localhost, with 127.0.0.1 as 'inet'", function()
    local list = assert(dns.getaddrinfo("localhost"))
    assert.is_true(#list >= 1)
    for _, e in ipairs(list) do
      assert.is_true(e.family == "inet" or e.family == "inet6", tostring(e.family))
      assert.equals("string", type(e.addr))
    end
    assert.is_true(any(list, function(e) return e.family == "inet" and e.addr == "127.0.0.1" end))
    local want = net.oracle_values('socket.dns.getaddrinfo("localhost")')
    if want then assert.same(want[1], list) end
  end)

  it("gives one entry for a numeric address", function()
    assert.same({ { family = "inet", addr = "127.0.0.1" } }, dns.getaddrinfo("127.0.0.1"))
    assert.same({ { family = "inet6", addr = "::1" } }, dns.getaddrinfo("::1"))
  end)

  it("gives nil and LuaSocket's message for an unknown host (oracle)", function()
    local want = net.oracle_values('socket.dns.getaddrinfo("nonexistent.invalid")')
    local list, err = dns.getaddrinfo("nonexistent.invalid")
    assert.is_nil(list)
    assert.equals(want and want[2] or "host or service not provided, or not known", err)
  end)
end)

describe("socket.dns.getnameinfo", function()
  it("gives a table of names, and the service name when a port is given (oracle)", function()
    local names, service = dns.getnameinfo("127.0.0.1", 80)
    assert.equals("table", type(names))
    assert.equals("string", type(names[1]))
    assert.equals("http", service)
    local want = net.oracle_values('socket.dns.getnameinfo("127.0.0.1")')
    local names2 = dns.getnameinfo("127.0.0.1")
    if want then assert.same(want[1], names2) else assert.equals("localhost", names2[1]) end
  end)

  it("gives nil and a message for an unknown host", function()
    local names, err = dns.getnameinfo("nonexistent.invalid")
    assert.is_nil(names)
    assert.equals("string", type(err))
  end)
end)

describe("resolution is cooperative", function()
  it("lookups do not block other fibers: a counter fiber advances during them", function()
    local count, running = 0, true
    local counter = net.spawn(function()
      while running do count = count + 1; gsock.sleep(0) end
    end)
    gsock.sleep(0)
    local before = count
    local results = {}
    -- a lookup that blocked the loop (getaddrinfo on the loop thread) would let the
    -- counter run only between lookups that also yield; off the loop, it runs during each
    for i = 1, 10 do
      results[#results + 1] = dns.toip("localhost")
      results[#results + 1] = (dns.getaddrinfo("localhost") or {})[1] and "ok"
      results[#results + 1] = select(2, dns.toip("n" .. i .. ".nonexistent.invalid"))
    end
    local during = count - before
    running = false
    counter:join(1)
    for i = 1, 30, 3 do
      assert.equals("127.0.0.1", results[i])
      assert.equals("ok", results[i + 1])
      assert.equals("string", type(results[i + 2]))   -- the error message of the failed lookup
    end
    assert.is_true(during >= 30, "the counter fiber advanced only " .. during .. " times during 30 lookups")
  end)

  it("socket.connect to a name resolves without blocking other fibers", function()
    local srv, port = net.listen()
    local ticks, running = 0, true
    local ticker = net.spawn(function() while running do ticks = ticks + 1; gsock.sleep(0) end end)
    gsock.sleep(0)
    local before = ticks
    for _ = 1, 5 do
      local c = net.track(assert(socket.connect("localhost", port)))
      c:close()
    end
    local during = ticks - before
    running = false
    ticker:join(1)
    assert.is_true(during >= 5, "the other fiber advanced only " .. during .. " times during 5 connects")
  end)

  it("40 fibers resolving at once all get the right answer", function()
    local want = net.oracle_values('socket.dns.toip("x1.nonexistent.invalid")')
    local not_found = want and want[2] or "host not found"
    local fibers, answers = {}, {}
    for i = 1, 40 do
      fibers[i] = net.spawn(function()
        if i % 2 == 0 then answers[i] = dns.toip("localhost")
        else answers[i] = select(2, dns.toip("x" .. i .. ".nonexistent.invalid")) end
      end)
    end
    assert.equals(40, #gsock.joinall(fibers, 5))
    for i = 1, 40 do
      assert.equals(i % 2 == 0 and "127.0.0.1" or not_found, answers[i], "fiber " .. i)
    end
  end)
end)
