-- The namespace helpers of `require "socket"`: LTN13 exceptions (try, newtry,
-- protect), skip, sink/source, choose, gettime, sleep, constants and socket.core.
-- Expected values checked against real LuaSocket 3.0.0 ("oracle").
local gsock = require "gsock"
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/socket/"
local net = dofile(here .. "support/net.lua")
local socket = net.socket()

after_each(net.cleanup)

describe("the module surface", function()
  it("has every name real LuaSocket 3.0.0 exports, with the same type", function()
    local expected = {
      BLOCKSIZE = "number", _DATAGRAMSIZE = "number", _SETSIZE = "number", _SOCKETINVALID = "number",
      _VERSION = "string", __unload = "function", bind = "function", choose = "function",
      connect = "function", connect4 = "function", connect6 = "function", dns = "table",
      gettime = "function", newtry = "function", protect = "function", select = "function",
      sink = "function", sinkt = "table", skip = "function", sleep = "function", source = "function",
      sourcet = "table", tcp = "function", tcp4 = "function", tcp6 = "function", try = "function",
      udp = "function", udp4 = "function", udp6 = "function",
    }
    local wrong = {}
    for name, ty in pairs(expected) do
      if type(socket[name]) ~= ty then wrong[#wrong + 1] = name .. " is " .. type(socket[name]) .. ", not " .. ty end
    end
    table.sort(wrong)
    assert.same({}, wrong)
    for _, name in ipairs({ "toip", "tohostname", "gethostname", "getaddrinfo", "getnameinfo" }) do
      assert.equals("function", type(socket.dns[name]), "socket.dns." .. name)
    end
  end)

  it("is gsockd's cooperative module although Debian's blocking LuaSocket is on package.path/cpath", function()
    -- (support/net.lua already refused to run the file otherwise; this says it as a test)
    local ran = false
    net.spawn(function() ran = true end)
    local srv = net.listen()
    srv:settimeout(0.05)
    assert.is_nil((srv:accept()))
    assert.is_true(ran, "a 0.05 s accept() did not let another fiber run")
    assert.equals(socket, require "socket")
  end)

  it("_VERSION starts with 'LuaSocket'; the constants have LuaSocket's values", function()
    assert.matches("^LuaSocket %d", socket._VERSION)
    assert.equals(2048, socket.BLOCKSIZE)
    assert.equals(8192, socket._DATAGRAMSIZE)
    assert.equals(-1, socket._SOCKETINVALID)
  end)

  it("socket.core can be required and offers the core functions", function()
    local core = require "socket.core"
    assert.equals("table", type(core))
    assert.equals(socket._VERSION, core._VERSION)
    for _, name in ipairs({ "tcp", "udp", "connect", "bind", "select", "sleep", "gettime", "skip",
                            "newtry", "protect" }) do
      assert.equals("function", type(core[name]), "socket.core." .. name)
    end
    assert.equals("table", type(core.dns))
  end)

  it("sinkt and sourcet list LuaSocket's modes", function()
    for _, m in ipairs({ "close-when-done", "keep-open", "default" }) do
      assert.is_not_nil(socket.sinkt[m], "sinkt " .. m)
    end
    for _, m in ipairs({ "by-length", "until-closed", "default" }) do
      assert.is_not_nil(socket.sourcet[m], "sourcet " .. m)
    end
  end)
end)

describe("socket.skip", function()
  it("drops the first d arguments", function()
    assert.same({ "b", "c" }, { socket.skip(1, "a", "b", "c") })
    assert.same({ "a", "b" }, { socket.skip(0, "a", "b") })
    assert.equals(0, select("#", socket.skip(5, "a")))
    assert.same({ 2 }, { socket.skip(1, 1, 2) })
  end)
end)

describe("socket.try, newtry and protect (LTN13)", function()
  it("try returns all its arguments when the first is truthy", function()
    assert.same({ 1, 2, 3 }, { socket.try(1, 2, 3) })
    assert.same({ 0, "x" }, { socket.try(0, "x") })
  end)

  it("try raises when the first argument is nil or false", function()
    assert.is_false(pcall(socket.try, nil, "msg"))
    assert.is_false(pcall(socket.try, false, "m2"))
  end)

  it("protect turns a try failure into nil, msg", function()
    local f = socket.protect(function(x)
      local a = socket.try(x, "bad")
      return a, "second"
    end)
    assert.same({ 5, "second" }, { f(5) })
    local r = table.pack(f(nil))
    assert.equals(2, r.n)
    assert.is_nil(r[1])
    assert.equals("bad", r[2])
  end)

  it("protect passes the arguments and all results through", function()
    local f = socket.protect(function(...) return select("#", ...), ... end)
    assert.same({ 3, "a", "b", "c" }, { f("a", "b", "c") })
  end)

  it("protect lets other errors propagate", function()
    local g = socket.protect(function() error("real error") end)
    local ok, err = pcall(g)
    assert.is_false(ok)
    assert.matches("real error", tostring(err))
    local tbl = { code = 1 }
    local g2 = socket.protect(function() error(tbl) end)
    local ok2, err2 = pcall(g2)
    assert.is_false(ok2)
    assert.equals(tbl, err2)
  end)

  it("try without a message: protect gives nil, nil", function()
    local p = socket.protect(function() socket.try(nil) end)
    local r = table.pack(p())
    assert.is_nil(r[1])
    assert.is_nil(r[2])
  end)

  it("newtry calls its finalizer on failure only, then raises like try", function()
    local fin = 0
    local t = socket.newtry(function() fin = fin + 1 end)
    assert.same({ 1, 2 }, { t(1, 2) })
    assert.equals(0, fin)
    assert.is_false(pcall(t, nil, "oops"))
    assert.equals(1, fin)
    local p = socket.protect(function() t(nil, "via newtry") end)
    local a, b = p()
    assert.is_nil(a)
    assert.equals("via newtry", b)
    assert.equals(2, fin)
  end)

  it("newtry without a finalizer works like try", function()
    local t = socket.newtry()
    local p = socket.protect(function() return t(nil, "plain") end)
    assert.same({ nil, "plain" }, { p() })
  end)

  it("a protected function may wait on sockets: the fiber yields across protect", function()
    local c, s = net.pair()
    local fetch = socket.protect(function(sock)
      local try = socket.newtry(function() sock:close() end)
      local line = try(sock:receive("*l"))
      try(sock:send("got " .. line .. "\n"))
      return line
    end)
    local got
    local f = net.spawn(function() got = table.pack(fetch(s)) end)
    gsock.sleep(0.05)
    assert.is_false(f:dead())
    c:settimeout(2)
    c:send("hello\n")
    assert.equals("got hello", c:receive())
    assert.is_true(f:join(2))
    assert.is_true(f:successful(), tostring(f.error))
    assert.equals("hello", got[1])
  end)

  it("a try failure after a wait inside protect gives nil, msg and runs the finalizer", function()
    local c, s = net.pair()
    local closed = false
    local fetch = socket.protect(function()
      local try = socket.newtry(function() closed = true; s:close() end)
      return try(s:receive("*l"))
    end)
    net.spawn(function() gsock.sleep(0.05); c:close() end)
    local a, b = fetch()
    assert.is_nil(a)
    assert.equals("closed", b)
    assert.is_true(closed)
  end)

  it("protect works in coroutines of the fiber's own (coroutine.wrap)", function()
    local c, s = net.pair()
    local gen = coroutine.wrap(socket.protect(function()
      coroutine.yield("first")
      return socket.try(s:receive("*l"))
    end))
    assert.equals("first", gen())
    net.spawn(function() gsock.sleep(0.02); c:send("second\n") end)
    assert.equals("second", gen())
  end)
end)

describe("socket.sink", function()
  it("'keep-open' sends chunks and leaves the socket open at the end", function()
    local c, s = net.pair()
    local sink = socket.sink("keep-open", c)
    assert.equals(3, sink("abc"))
    assert.equals(1, sink(nil))
    assert.is_true(c:getfd() >= 0)
    assert.equals(0, sink(""))
    s:settimeout(2)
    assert.equals("abc", s:receive(3))
  end)

  it("'close-when-done' closes the socket at the end of the data", function()
    local c, s = net.pair()
    local sink = socket.sink("close-when-done", c)
    assert.equals(3, sink("def"))
    assert.equals(1, sink(nil))
    assert.equals(-1, c:getfd())
    s:settimeout(2)
    assert.equals("def", s:receive("*a"))
  end)

  it("'default' is keep-open; an unknown mode raises 'unknown key'", function()
    local c = net.pair()
    local sink = socket.sink("default", c)
    sink(nil)
    assert.is_true(c:getfd() >= 0)
    assert.error_matches(function() socket.sink("bogus", c) end, "unknown key")
  end)
end)

describe("socket.source", function()
  it("'by-length' gives exactly len bytes in BLOCKSIZE chunks, then nil", function()
    local c, s = net.pair()
    s:settimeout(2)
    c:send(string.rep("x", 5000))
    local src = socket.source("by-length", s, 4100)
    local sizes = {}
    while true do
      local chunk, err = src()
      if not chunk then assert.is_nil(err); break end
      sizes[#sizes + 1] = #chunk
    end
    assert.same({ 2048, 2048, 4 }, sizes)
    assert.equals(900, #s:receive(900))    -- the rest stayed in the socket
  end)

  it("'by-length' with too few bytes before close gives nil, 'closed'", function()
    local c, s = net.pair()
    s:settimeout(2)
    c:send("abc")
    c:close()
    local src = socket.source("by-length", s, 10)
    local chunk, err = src()
    assert.is_nil(chunk)
    assert.equals("closed", err)
  end)

  it("'until-closed' reads until the peer closes, then nil", function()
    local c, s = net.pair()
    s:settimeout(2)
    net.spawn(function()
      for i = 1, 5 do c:send(string.rep(tostring(i), 1000)); gsock.sleep(0.01) end
      c:close()
    end)
    local src = socket.source("until-closed", s)
    local parts = {}
    while true do
      local chunk, err = src()
      if not chunk then assert.is_nil(err); break end
      parts[#parts + 1] = chunk
    end
    local all = table.concat(parts)
    assert.equals(5000, #all)
    assert.equals(string.rep("1", 1000) .. string.rep("2", 1000), all:sub(1, 2000))
    assert.is_nil(src())
  end)

  it("an unknown mode raises 'unknown key'", function()
    local c, s = net.pair()
    assert.error_matches(function() socket.source("bogus", s) end, "unknown key")
  end)
end)

describe("socket.choose", function()
  it("calls the function of the key, or raises 'unknown key'", function()
    local ch = socket.choose({ a = function(x) return "A" .. tostring(x) end, default = function() return "D" end })
    assert.equals("A1", ch("a", 1))
    assert.equals("D", ch(nil))              -- a non-string key selects "default"
    assert.error_matches(function() ch("zz") end, "unknown key %(zz%)")
  end)
end)

describe("socket.gettime", function()
  it("is the wall clock in seconds, as a float", function()
    local t = socket.gettime()
    assert.equals("float", math.type(t))
    assert.is_true(math.abs(t - os.time()) < 2)
  end)

  it("advances with time", function()
    local t0 = socket.gettime()
    gsock.sleep(0.1)
    local dt = socket.gettime() - t0
    assert.is_true(dt >= 0.09 and dt < 1, "advanced " .. dt)
  end)
end)

describe("socket.sleep", function()
  it("sleeps that long, returns nothing, and lets other fibers run meanwhile", function()
    local ticks = 0
    local ticker = net.spawn(function() while true do ticks = ticks + 1; gsock.sleep(0.01) end end)
    local t0 = socket.gettime()
    local n = select("#", socket.sleep(0.2))
    local dt = socket.gettime() - t0
    assert.equals(0, n)
    assert.is_true(dt >= 0.18 and dt < 1, "slept " .. dt)
    assert.is_true(ticks >= 8, "the other fiber ran only " .. ticks .. " times")
    ticker:kill()
  end)

  it("sleep(0) and negative sleeps return at once", function()
    local t0 = socket.gettime()
    socket.sleep(0)
    socket.sleep(-1)
    assert.is_true(socket.gettime() - t0 < 0.05)
  end)
end)
