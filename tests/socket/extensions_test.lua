-- gsockd's OpenResty-style extensions of tcp objects (SPEC §4): receiveany,
-- settimeouts (in SECONDS), receiveuntil, and the client connection pool
-- (setkeepalive / getreusedtimes).
local gsock = require "gsock"
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/socket/"
local net = dofile(here .. "support/net.lua")
local socket = net.socket()

after_each(net.cleanup)

describe("receiveany", function()
  it("returns what is available, up to max bytes", function()
    local c, s = net.pair()
    s:settimeout(2)
    c:send("hello")
    gsock.sleep(0.05)
    assert.equals("hel", s:receiveany(3))
    assert.equals("lo", s:receiveany(100))
  end)

  it("returns as soon as there is any data, without waiting to fill max", function()
    local c, s = net.pair()
    s:settimeout(2)
    net.spawn(function() gsock.sleep(0.05); c:send("a"); gsock.sleep(0.5); c:send("b") end)
    local r, dt = net.timed(s.receiveany, s, 10)
    assert.equals("a", r[1])
    assert.is_true(dt < 0.4, "waited " .. dt .. " s for more data")
  end)

  it("returns buffered data left by an earlier receive first", function()
    local c, s = net.pair()
    s:settimeout(2)
    c:send("line\nrest")
    assert.equals("line", s:receive())
    local got = s:receiveany(100)
    -- "rest" may have arrived with the line or just after: what is returned is a prefix of it
    assert.is_true(#got >= 1 and ("rest"):sub(1, #got) == got, "got " .. tostring(got))
  end)

  it("blocks only its fiber while nothing is available", function()
    local c, s = net.pair()
    local ticks, got = 0, nil
    local reader = net.spawn(function() got = s:receiveany(16) end)
    local ticker = net.spawn(function() while not got do ticks = ticks + 1; gsock.sleep(0.01) end end)
    gsock.sleep(0.1)
    assert.is_true(ticks >= 5)
    c:send("xyz")
    assert.is_true(reader:join(2))
    assert.equals("xyz", got)
    ticker:join(1)
  end)

  it("gives nil, 'timeout' on timeout and nil, 'closed' once the peer closed", function()
    local c, s = net.pair()
    s:settimeout(0.1)
    local d, err = s:receiveany(10)
    assert.is_nil(d); assert.equals("timeout", err)
    c:close()
    s:settimeout(2)
    local d2, err2 = s:receiveany(10)
    assert.is_nil(d2); assert.equals("closed", err2)
  end)
end)

describe("settimeouts(connect, send, read) in seconds", function()
  it("the read timeout applies to receive, in seconds (not OpenResty's milliseconds)", function()
    local c, s = net.pair()
    s:settimeouts(5, 5, 0.15)
    local r, dt = net.timed(s.receive, s)
    assert.is_nil(r[1]); assert.equals("timeout", r[2])
    assert.is_true(dt >= 0.1 and dt < 1.5, "read timed out after " .. dt .. " s (0.15 s expected)")
  end)

  it("the read timeout applies to receiveany and to receiveuntil readers", function()
    local c, s = net.pair()
    s:settimeouts(5, 5, 0.1)
    local r1, dt1 = net.timed(s.receiveany, s, 10)
    assert.is_nil(r1[1]); assert.equals("timeout", r1[2])
    assert.is_true(dt1 >= 0.07 and dt1 < 1.5)
    local reader = s:receiveuntil("--")
    c:send("abc")
    local r2, dt2 = net.timed(reader)
    assert.is_nil(r2[1]); assert.equals("timeout", r2[2]); assert.equals("abc", r2[3])
    assert.is_true(dt2 >= 0.07 and dt2 < 1.5)
  end)

  it("the send timeout applies to send", function()
    local c, s = net.pair()
    c:settimeouts(5, 0.2, 5)
    local r, dt = net.timed(c.send, c, string.rep("x", 64 * 1024 * 1024))
    assert.is_nil(r[1]); assert.equals("timeout", r[2])
    assert.is_true(type(r[3]) == "number" and r[3] > 0)
    assert.is_true(dt >= 0.15 and dt < 3, "send timed out after " .. dt .. " s (0.2 s expected)")
  end)

  it("the connect timeout applies to connect", function()
    -- listen(0) on Linux queues one connection and then drops SYNs, so later connects hang
    local m = net.track(socket.tcp())
    assert.equals(1, m:bind("127.0.0.1", 0))
    assert.equals(1, m:listen(0))
    local _, port = m:getsockname()
    local timed_out, took
    for _ = 1, 6 do
      local c = net.track(socket.tcp())
      c:settimeouts(0.2, 5, 5)
      local r, dt = net.timed(c.connect, c, "127.0.0.1", tonumber(port))
      if r[1] == nil and r[2] == "timeout" then timed_out, took = true, dt; break end
    end
    assert.is_true(timed_out, "no connect timed out against a full backlog")
    assert.is_true(took >= 0.15 and took < 1.5, "connect timed out after " .. took .. " s (0.2 s expected)")
  end)

  it("each timeout applies to its own operation only", function()
    local c, s = net.pair()
    s:settimeouts(5, 0.05, 0.3)                 -- a short send timeout must not cut the read short
    local r, dt = net.timed(s.receive, s)
    assert.equals("timeout", r[2])
    assert.is_true(dt >= 0.25, "the read timed out after " .. dt .. " s, not 0.3 s")
  end)
end)

describe("receiveuntil", function()
  it("reader() returns the data before the pattern and consumes the pattern (OpenResty's example)", function()
    local c, s = net.pair()
    s:settimeout(2)
    c:send("hello, world! -agentzh\r\n--abcedhb blah blah")
    local reader = s:receiveuntil("\r\n--abcedhb")
    local data, err, partial = reader()
    assert.equals("hello, world! -agentzh", data)
    assert.is_nil(err); assert.is_nil(partial)
    assert.equals(" blah", s:receive(5))       -- mixes with the other receive methods
  end)

  it("called again, reads up to the next occurrence", function()
    local c, s = net.pair()
    s:settimeout(2)
    c:send("a--bb----c--")
    local reader = s:receiveuntil("--")
    assert.equals("a", reader())
    assert.equals("bb", reader())
    assert.equals("", reader())                 -- the pattern right after the last one
    assert.equals("c", reader())
  end)

  it("reader(size) returns chunks of the data, then nil, nil at the pattern (OpenResty's example)", function()
    local c, s = net.pair()
    s:settimeout(2)
    c:send("hello, world! -agentzh\r\n--abcedhb blah blah")
    local reader = s:receiveuntil("\r\n--abcedhb")
    local chunks = {}
    while true do
      local data, err, partial = reader(4)
      if not data then
        assert.is_nil(err, "error " .. tostring(err) .. " partial " .. tostring(partial))
        break
      end
      chunks[#chunks + 1] = data
      assert.is_true(#chunks < 50, "the reader never ended")
    end
    assert.same({ "hell", "o, w", "orld", "! -a", "gent", "zh" }, chunks)
    assert.equals(" blah", s:receive(5))
  end)

  it("after the nil of reader(size), the reader resets and reads to the next occurrence", function()
    local c, s = net.pair()
    s:settimeout(2)
    c:send("abcdef|ghij|")
    local reader = s:receiveuntil("|")
    local function drain(size)
      local parts = {}
      while true do
        local d, err = reader(size)
        if not d then assert.is_nil(err); break end
        parts[#parts + 1] = d
        assert.is_true(#parts < 50)
      end
      return table.concat(parts)
    end
    assert.equals("abcdef", drain(4))
    assert.equals("ghij", drain(3))
  end)

  it("finds a pattern split across sends", function()
    local c, s = net.pair()
    s:settimeout(2)
    net.spawn(function()
      c:send("first\r"); gsock.sleep(0.03)
      c:send("\n-"); gsock.sleep(0.03)
      c:send("-b second")
    end)
    local reader = s:receiveuntil("\r\n--b")
    assert.equals("first", reader())
    assert.equals(" second", s:receive(7))
  end)

  it("handles self-overlapping patterns (no false or missed matches)", function()
    local c, s = net.pair()
    s:settimeout(2)
    c:send("xaaab|ababc|aabaab|")
    local r1 = s:receiveuntil("aab")
    assert.equals("xa", r1())
    assert.equals("|", s:receive(1))
    local r2 = s:receiveuntil("abc")
    assert.equals("ab", r2())
    assert.equals("|", s:receive(1))
    local r3 = s:receiveuntil("aab|")
    assert.equals("aab", r3())
  end)

  it("gives nil, 'closed', the partial data when the peer closes before the pattern", function()
    local c, s = net.pair()
    s:settimeout(2)
    c:send("no boundary here")
    c:close()
    local reader = s:receiveuntil("--")
    local data, err, partial = reader()
    assert.is_nil(data)
    assert.equals("closed", err)
    assert.equals("no boundary here", partial)
  end)

  it("gives nil, 'timeout', the partial data on timeout", function()
    local c, s = net.pair()
    s:settimeout(0.1)
    c:send("half")
    local reader = s:receiveuntil("--")
    local data, err, partial = reader()
    assert.is_nil(data)
    assert.equals("timeout", err)
    assert.equals("half", partial)
  end)

  it("a reader blocks only its fiber", function()
    local c, s = net.pair()
    local reader = s:receiveuntil("\n\n")
    local ticks, got = 0, nil
    local f = net.spawn(function() got = reader() end)
    local t = net.spawn(function() while not got do ticks = ticks + 1; gsock.sleep(0.01) end end)
    gsock.sleep(0.1)
    assert.is_true(ticks >= 5)
    c:send("head\n\nbody")
    assert.is_true(f:join(2))
    assert.equals("head", got)
    t:join(1)
  end)

  it("works on a large stream with many boundaries", function()
    local c, s = net.pair()
    s:settimeout(5)
    local parts = {}
    for i = 1, 2000 do parts[i] = ("record %d %s"):format(i, string.rep("z", i % 50)) end
    net.spawn(function() c:send(table.concat(parts, "\r\n~~\r\n") .. "\r\n~~\r\n") end)
    local reader = s:receiveuntil("\r\n~~\r\n")
    for i = 1, 2000 do
      local d, err = reader()
      assert.equals(parts[i], d, "record " .. i .. " (" .. tostring(err) .. ")")
    end
  end)
end)

describe("the connection pool: setkeepalive and getreusedtimes", function()
  --- A server that answers each line "<connection number>:<line>". Returns it; the
  --- handler records in server.ends[n] how connection n ended.
  local function counting_server()
    local server
    local n = 0
    server = net.serve(function(c)
      n = n + 1
      local id = n
      c:settimeout(5)
      while true do
        local line, err = c:receive()
        if not line then server.ends[id] = err; return end
        if line == "CLOSE" then server.ends[id] = "asked"; return end
        if line == "EXTRA" then c:send(id .. ":EXTRA\nunsolicited\n")
        else c:send(id .. ":" .. line .. "\n") end
      end
    end)
    server.ends = {}
    return server
  end

  local function ask(c, line)
    c:settimeout(2)
    assert.equals(#line + 1, c:send(line .. "\n"))
    return c:receive()
  end

  it("a fresh connection has been reused 0 times", function()
    local server = counting_server()
    local c = net.track(assert(socket.connect("127.0.0.1", server.port)))
    assert.equals(0, c:getreusedtimes())
  end)

  it("setkeepalive returns 1 and the next connect to that address reuses the connection", function()
    local server = counting_server()
    local c = net.track(assert(socket.connect("127.0.0.1", server.port)))
    assert.equals("1:hello", ask(c, "hello"))
    assert.equals(1, c:setkeepalive())
    local d = net.track(assert(socket.connect("127.0.0.1", server.port)))
    assert.equals(1, d:getreusedtimes())
    assert.equals("1:again", ask(d, "again"))            -- served by the same server connection
    assert.equals(1, server.accepted)
    assert.equals(1, d:setkeepalive())
    local e = net.track(assert(socket.connect("127.0.0.1", server.port)))
    assert.equals(2, e:getreusedtimes())
    assert.equals("1:third", ask(e, "third"))
    assert.equals(1, server.accepted)
  end)

  it("tcp():connect reuses a pooled connection too", function()
    local server = counting_server()
    local c = net.track(assert(socket.connect("127.0.0.1", server.port)))
    assert.equals("1:x", ask(c, "x"))
    assert.equals(1, c:setkeepalive())
    local m = net.track(socket.tcp())
    assert.equals(1, m:connect("127.0.0.1", server.port))
    assert.equals(1, m:getreusedtimes())
    assert.matches("^tcp{client}: ", tostring(m))
    assert.equals("1:y", ask(m, "y"))
    assert.equals(1, server.accepted)
  end)

  it("the pool is keyed by address: another server's connect is fresh", function()
    local a, b = counting_server(), counting_server()
    local c = net.track(assert(socket.connect("127.0.0.1", a.port)))
    ask(c, "x")
    c:setkeepalive()
    local d = net.track(assert(socket.connect("127.0.0.1", b.port)))
    assert.equals(0, d:getreusedtimes())
    assert.equals("1:to b", ask(d, "to b"))
    assert.equals(1, b.accepted)
    local e = net.track(assert(socket.connect("127.0.0.1", a.port)))
    assert.equals(1, e:getreusedtimes())
  end)

  it("a pooled connection that the peer closed is discarded, never handed out", function()
    local server = counting_server()
    local c = net.track(assert(socket.connect("127.0.0.1", server.port)))
    assert.equals("1:x", ask(c, "x"))
    c:setkeepalive()
    -- the server side closes the pooled connection
    server.clients[1]:close()
    gsock.sleep(0.1)
    local d = net.track(assert(socket.connect("127.0.0.1", server.port)))
    assert.equals(0, d:getreusedtimes())
    assert.equals("2:works", ask(d, "works"))
    assert.equals(2, server.accepted)
  end)

  it("a pooled connection that received unread data is discarded", function()
    local server = counting_server()
    local c = net.track(assert(socket.connect("127.0.0.1", server.port)))
    assert.equals("1:x", ask(c, "x"))
    c:setkeepalive()
    server.clients[1]:send("unsolicited\n")          -- arrives while the connection is pooled
    gsock.sleep(0.1)
    local d = net.track(assert(socket.connect("127.0.0.1", server.port)))
    assert.equals(0, d:getreusedtimes())
    assert.equals("2:fresh", ask(d, "fresh"))         -- not "unsolicited"
  end)

  it("a connection with unread data when setkeepalive is called is not pooled", function()
    local server = counting_server()
    local c = net.track(assert(socket.connect("127.0.0.1", server.port)))
    assert.equals("1:EXTRA", ask(c, "EXTRA"))        -- "unsolicited\n" is left unread
    gsock.sleep(0.05)
    c:setkeepalive()
    local d = net.track(assert(socket.connect("127.0.0.1", server.port)))
    assert.equals(0, d:getreusedtimes())
    assert.equals("2:fresh", ask(d, "fresh"))
  end)

  it("an idle connection is not handed out after max_idle seconds", function()
    local server = counting_server()
    local c = net.track(assert(socket.connect("127.0.0.1", server.port)))
    ask(c, "x")
    assert.equals(1, c:setkeepalive(0.1))
    gsock.sleep(0.4)
    local d = net.track(assert(socket.connect("127.0.0.1", server.port)))
    assert.equals(0, d:getreusedtimes())
    assert.equals("2:y", ask(d, "y"))
  end)

  it("the pool closes an idle connection itself once max_idle passes (as OpenResty does)", function()
    local server = counting_server()
    local c = net.track(assert(socket.connect("127.0.0.1", server.port)))
    ask(c, "x")
    assert.equals(1, c:setkeepalive(0.1))
    gsock.sleep(0.5)                                   -- no connect meanwhile
    assert.equals("closed", server.ends[1], "0.5 s later the server still sees the idle connection open")
  end)

  it("pool_size bounds how many idle connections are kept per address", function()
    local server = counting_server()
    local c1 = net.track(assert(socket.connect("127.0.0.1", server.port)))
    local c2 = net.track(assert(socket.connect("127.0.0.1", server.port)))
    ask(c1, "a"); ask(c2, "b")
    c1:setkeepalive(10, 1)
    c2:setkeepalive(10, 1)
    local d1 = net.track(assert(socket.connect("127.0.0.1", server.port)))
    local d2 = net.track(assert(socket.connect("127.0.0.1", server.port)))
    assert.same({ 1, 0 }, { d1:getreusedtimes(), d2:getreusedtimes() })
    assert.matches(":d1$", ask(d1, "d1"))
    assert.matches(":d2$", ask(d2, "d2"))
    assert.equals(3, server.accepted)
  end)

  it("a pooled connection is served to one connect only", function()
    local server = counting_server()
    local c = net.track(assert(socket.connect("127.0.0.1", server.port)))
    ask(c, "x")
    c:setkeepalive()
    local fibers, reused = {}, {}
    for i = 1, 5 do
      fibers[i] = net.spawn(function()
        local d = net.track(assert(socket.connect("127.0.0.1", server.port)))
        reused[i] = d:getreusedtimes()
        assert(ask(d, "f" .. i):match(":f" .. i .. "$"))
      end)
    end
    assert.equals(5, #gsock.joinall(fibers, 3))
    for _, f in ipairs(fibers) do assert.is_true(f:successful(), tostring(f.error)) end
    local total = 0
    for i = 1, 5 do total = total + reused[i] end
    assert.equals(1, total)
    assert.equals(5, server.accepted)
  end)
end)
