-- Every wait of the HTTP layer, every way it can end (issue 13): the host's wait for a
-- head (data, header_timeout, keepalive_timeout, a stop), and a handler's waits for the
-- body (data, body_timeout, a peer reset, a kill, a stop that kills), and a handler that
-- retries after the error (it must get the error again at once, not spin or hang).
local socket = require "socket"

local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/http/"
local client = dofile(here .. "support/client.lua")
local connect, drain, reset, no_connections, serves_next, kill_closes, failed_with = client.connect,
  client.drain, client.reset, client.no_connections, client.serves_next, client.kill_closes, client.failed_with
local body_waiter = client.body_waiter

--- Reads a 200 response whose body is "x" (the handlers below answer that).
local function answered(c)
  assert.equals("HTTP/1.1 200 OK", c:receive("*l"))
  repeat local line = c:receive("*l") until line == ""
  assert.equals("x", c:receive(1))
end

--- Sends 5 bytes of a 100-byte body, then resets the connection.
local function reset_mid_body(srv)
  local c = connect(srv)
  assert(c:send("POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\nhello"))
  gsock.sleep(0.05)
  reset(c)
end

--- Sends a POST head with Expect: 100-continue and a 5-byte body to come; returns the
--- connection once it read the 100 Continue (the handler is then waiting for the body).
local function continued(srv)
  local c = connect(srv)
  assert(c:send("POST /wait HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"))
  assert.equals("HTTP/1.1 100 Continue", c:receive("*l"))
  assert.equals("", c:receive("*l"))
  return c
end

--- A server whose handler answers /next with "next" and upgrades any other path, then
--- calls use(sock); and a client connection that has read the 101 head.
local function upgraded(use)
  local srv = gsock.http.server("127.0.0.1:0", function(req, res)
    if req.path == "/next" then return 200, "next" end
    res.status = 101
    res.headers.Upgrade = "test"
    res.headers.Connection = "Upgrade"
    use(assert(res:upgrade()))
  end):start()
  local c = connect(srv)
  assert(c:send("GET /up HTTP/1.1\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\n"))
  assert.equals("HTTP/1.1 101 Switching Protocols", c:receive("*l"))
  repeat local line = assert(c:receive("*l")) until line == ""
  return srv, c
end



describe("HTTP waits", function()
  it("a head: data arriving a byte at a time still makes one request", function()
    local srv = gsock.http.server("127.0.0.1:0", function(req) return 200, req.path end):start()
    local c = connect(srv)
    for ch in ("GET /slowly HTTP/1.1\r\nConnection: close\r\n\r\n"):gmatch(".") do
      assert(c:send(ch))
      gsock.sleep(0.001)
    end
    local text, err = drain(c)
    assert.equals("closed", err)
    assert.truthy(text:find("^HTTP/1.1 200 OK\r\n"))
    assert.truthy(text:find("\r\n\r\n/slowly$"))
    c:close()
    srv:stop()
  end)

  it("a head: header_timeout answers 408 to a partial head and closes; an empty connection is closed silently", function()
    local srv = gsock.http.server("127.0.0.1:0", function() return 200, "x" end, { header_timeout = 0.2 }):start()
    local partial, silent = connect(srv), connect(srv)
    assert(partial:send("GET / HTTP/1.1\r\nHost: a"))
    local t0 = gsock.now()
    local text, err = drain(partial)
    assert.equals("closed", err)
    assert.truthy(text:find("^HTTP/1.1 408 Request Timeout\r\n"))
    assert.truthy(text:find("\r\nConnection: close\r\n"))
    assert.is_true(gsock.now() - t0 < 1)
    local none, err2 = drain(silent)
    assert.equals("", none)
    assert.equals("closed", err2)
    partial:close()
    silent:close()
    srv:stop()
  end)

  it("a head: a client dribbling a byte every 0.05 s does not move header_timeout (slowloris)", function()
    local srv = gsock.http.server("127.0.0.1:0", function() return 200, "x" end, { header_timeout = 0.4 }):start()
    local c = connect(srv)
    local t0 = gsock.now()
    local dribbler = gsock.spawn(function()
      local head = "GET / HTTP/1.1\r\nHost: a\r\nX-Slow: " .. ("y"):rep(200)
      for i = 1, #head do
        if not c:send(head:sub(i, i)) then return end
        gsock.sleep(0.05)
      end
    end)
    c:settimeout(3)
    local line = c:receive("*l")
    local waited = gsock.now() - t0
    dribbler:kill()
    assert.equals("HTTP/1.1 408 Request Timeout", line)
    assert.is_true(waited >= 0.35 and waited < 1, tostring(waited))
    c:close()
    assert.equals(0, no_connections(srv))
    srv:stop()
  end)

  it("a head: keepalive_timeout closes an idle connection without a response", function()
    local srv = gsock.http.server("127.0.0.1:0", function() return 200, "x" end, { keepalive_timeout = 0.2 }):start()
    local c = connect(srv)
    assert(c:send("GET / HTTP/1.1\r\n\r\n"))
    local status = c:receive("*l")
    assert.equals("HTTP/1.1 200 OK", status)
    repeat local line = c:receive("*l") until line == ""
    assert.equals("x", c:receive(1))
    local t0 = gsock.now()
    local rest, err = drain(c)
    assert.equals("", rest)
    assert.equals("closed", err)
    assert.is_true(gsock.now() - t0 < 1.5)
    c:close()
    srv:stop()
  end)

  it("a head: each wait has its own limit: header_timeout before the first request, then keepalive_timeout, then header_timeout for a partial head", function()
    local srv = gsock.http.server("127.0.0.1:0", function() return 200, "x" end,
                                  { header_timeout = 0.3, keepalive_timeout = 1.2 }):start()
    local c = connect(srv)
    assert(c:send("GET / HTTP/1.1\r\n\r\n"))
    answered(c)
    gsock.sleep(0.6)   -- past the first header_timeout, within keepalive_timeout: still open
    assert(c:send("GET / HTTP/1.1\r\n\r\n"))
    answered(c)
    assert(c:send("GET / HTTP/1.1\r\nHost: a"))   -- a partial head: header_timeout again
    local t0 = gsock.now()
    local text, err = drain(c)
    local waited = gsock.now() - t0
    assert.equals("closed", err)
    assert.truthy(text:find("^HTTP/1.1 408 "))
    assert.is_true(waited > 0.2 and waited < 1.0, "408 after " .. waited .. " s")
    c:close()
    local idle = connect(srv)
    assert(idle:send("GET / HTTP/1.1\r\n\r\n"))
    answered(idle)
    t0 = gsock.now()
    text, err = drain(idle)
    waited = gsock.now() - t0
    assert.equals("", text)
    assert.equals("closed", err)
    assert.is_true(waited > 1.0 and waited < 2.5, "closed after " .. waited .. " s idle")
    idle:close()
    srv:stop()
  end)

  it("a head: the waits of many connections share the service's timer: each ends at its own deadline, and one that leaves early disturbs none", function()
    local srv = gsock.http.server("127.0.0.1:0", function() return 200, "x" end,
                                  { header_timeout = 0.6, keepalive_timeout = 0.3 }):start()
    -- Staggered arrivals of four kinds: idle after a response (keepalive_timeout), a
    -- partial head (header_timeout), one whose peer leaves while it waits (out of the middle
    -- of its queue), and one that sends a request every 0.1 s for 1.2 s (it leaves and
    -- rejoins the idle queue each time, and outlives both limits).
    local kinds = { "idle", "partial", "leaver", "busy" }
    local ends, fibers = {}, {}
    for i = 1, 24 do
      fibers[i] = gsock.spawn(function()
        gsock.sleep((i % 5) * 0.04)
        local kind = kinds[(i - 1) % 4 + 1]
        local c = connect(srv)
        if kind == "partial" then
          assert(c:send("GET / HTTP/1.1\r\nHost: a"))
        else
          assert(c:send("GET / HTTP/1.1\r\n\r\n"))
          answered(c)
        end
        local t0 = gsock.now()
        if kind == "leaver" then
          gsock.sleep(0.1)
          c:close()
          ends[i] = { kind = kind }
          return
        elseif kind == "busy" then
          for _ = 1, 12 do
            gsock.sleep(0.1)
            assert(c:send("GET / HTTP/1.1\r\n\r\n"))
            answered(c)
          end
          t0 = gsock.now()
        end
        local text, err = drain(c)
        ends[i] = { kind = kind, waited = gsock.now() - t0, text = text, err = err }
        c:close()
      end)
    end
    gsock.joinall(fibers)
    local limits = { idle = { 0.25, 0.55 }, partial = { 0.55, 0.9 }, busy = { 0.25, 0.55 } }
    for i = 1, 24 do
      local e = ends[i]
      assert.is_table(e, "connection " .. i .. " did not finish")
      if e.kind ~= "leaver" then
        assert.equals("closed", e.err)
        local lo, hi = limits[e.kind][1], limits[e.kind][2]
        assert.is_true(e.waited > lo and e.waited < hi, ("%s connection %d closed after %.2f s"):format(e.kind, i, e.waited))
        if e.kind == "partial" then assert.truthy(e.text:find("^HTTP/1.1 408 ")) else assert.equals("", e.text) end
      end
    end
    assert.equals(0, no_connections(srv))
    srv:stop()
  end)

  it("a head: connections whose peer left before they were accepted are counted and uncounted; max_connections still admits the next", function()
    local srv = gsock.http.server("127.0.0.1:0", function() return 200, "x" end, { max_connections = 2 }):start()
    -- Connected and closed before the server's accept runs (this fiber does not yield):
    -- its first read finds the end at once.
    for _ = 1, 6 do
      local c = socket.tcp()
      assert(c:connect("127.0.0.1", srv.port))
      c:close()
    end
    assert.equals(0, no_connections(srv))
    for _ = 1, 3 do
      local c = connect(srv)
      assert(c:send("GET / HTTP/1.1\r\n\r\n"))
      answered(c)
      c:close()
    end
    assert.equals(0, no_connections(srv))
    local t0 = gsock.now()
    srv:stop(5)
    assert.is_true(gsock.now() - t0 < 1)
  end)

  it("upgrade: the handed-over socket has the server's idle_timeout", function()
    local result = gsock.queue()
    local srv = gsock.http.server("127.0.0.1:0", function(req, res)
      res.status = 101
      res.headers["Upgrade"] = "x"
      local sock = assert(res:upgrade())
      local t0 = gsock.now()
      local line, err = sock:receive("*l")
      result:put({ line, err, gsock.now() - t0, sock:gettimeout() })
    end, { idle_timeout = 0.2 }):start()
    local c = connect(srv)
    assert(c:send("GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n"))
    local got = result:get(5)
    assert.is_nil(got[1])
    assert.equals("timeout", got[2])
    assert.is_true(got[3] >= 0.15 and got[3] < 1.5)
    assert.equals(0.2, got[4])
    c:close()
    srv:stop()
  end)

  it("a head: stop closes idle keep-alive connections at once and finishes busy ones", function()
    local release = gsock.event()
    local srv = gsock.http.server("127.0.0.1:0", function(req)
      if req.path == "/busy" then release:wait(2) end
      return 200, req.path
    end, { keepalive_timeout = 60 }):start()
    local idle, busy = connect(srv), connect(srv)
    assert(idle:send("GET /idle HTTP/1.1\r\n\r\n"))
    assert.equals("HTTP/1.1 200 OK", idle:receive("*l"))
    assert(busy:send("GET /busy HTTP/1.1\r\n\r\n"))
    gsock.sleep(0.05)
    local stopper = gsock.spawn(function() srv:stop(3) end)
    gsock.sleep(0.05)
    local rest, err = drain(idle, 1)
    assert.equals("closed", err)
    assert.truthy(rest:find("/idle$"))
    release:set()
    local text, err2 = drain(busy)
    assert.equals("closed", err2)
    assert.truthy(text:find("\r\nConnection: close\r\n"))
    assert.truthy(text:find("/busy$"))
    stopper:join(3)
    assert.equals(0, srv:connections())
    idle:close()
    busy:close()
  end)

  it("a body: body_timeout gives the handler nil, 'timeout'; asking again returns at once; the connection then closes", function()
    local got = {}
    local srv = gsock.http.server("127.0.0.1:0", function(req)
      got[1], got[2] = req:body()
      local t0 = gsock.now()
      got[3], got[4] = req:body()
      got[5] = gsock.now() - t0
      return 200, "late"
    end, { body_timeout = 0.2 }):start()
    local c = connect(srv)
    assert(c:send("POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc"))
    local text, err = drain(c)
    assert.equals("closed", err)
    assert.is_nil(got[1])
    assert.equals("timeout", got[2])
    assert.is_nil(got[3])
    assert.equals("timeout", got[4])
    assert.is_true(got[5] < 0.05)
    assert.truthy(text:find("\r\nConnection: close\r\n"))
    assert.truthy(text:find("late$"))
    c:close()
    srv:stop()
  end)

  it("a body: a handler that sends nothing after the body timed out answers 408", function()
    local srv = gsock.http.server("127.0.0.1:0", function(req) req:body() end, { body_timeout = 0.1 }):start()
    local c = connect(srv)
    assert(c:send("POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc"))
    local text = drain(c)
    assert.truthy(text:find("^HTTP/1.1 408 Request Timeout\r\n"))
    c:close()
    srv:stop()
  end)

  it("a body: a peer reset ends the wait with nil, 'closed'", function()
    local result = gsock.queue()
    local srv = gsock.http.server("127.0.0.1:0", function(req)
      local reader = req:reader(4)
      local chunks = {}
      while true do
        local data, err = reader()
        if not data then result:put({ chunks = table.concat(chunks), err = err }) return end
        chunks[#chunks + 1] = data
      end
    end):start()
    reset_mid_body(srv)
    local r = result:get(2)
    assert.equals("hello", r.chunks)
    assert.equals("closed", r.err)
    assert.equals(0, no_connections(srv))
    srv:stop()
  end)

  it("a body: after a peer reset every retry says 'closed' at once, never an empty body", function()
    local result = gsock.queue()
    local srv = gsock.http.server("127.0.0.1:0", function(req)
      local got = { req:body() }
      local t0 = gsock.now()
      for i = 1, 100 do
        local data, err = req:body()
        if data ~= nil or err ~= "closed" then got.bad = { i, data, err } break end
      end
      local reader = req:reader()
      got.reader = { reader() }
      got.seconds = gsock.now() - t0
      result:put(got)
    end):start()
    reset_mid_body(srv)
    local got = result:get(2)
    assert.is_nil(got[1])
    assert.equals("closed", got[2])
    assert.is_nil(got.bad)
    assert.is_nil(got.reader[1])
    assert.equals("closed", got.reader[2])
    assert.is_true(got.seconds < 0.1)
    assert.equals(0, no_connections(srv))
    srv:stop()
  end)

  it("a write: body_timeout gives res:write nil, 'timeout', every later write the same at once, and closes the connection", function()
    local result = gsock.queue()
    local big = ("z"):rep(16 * 1024 * 1024)
    local srv = gsock.http.server("127.0.0.1:0", function(req, res)
      if req.path == "/next" then return 200, "next" end
      local got = { res:write(big) }
      local t0 = gsock.now()
      got.again = { res:write("more") }
      got.finish = { res:finish("end") }
      got.seconds = gsock.now() - t0
      result:put(got)
    end, { body_timeout = 0.2 }):start()
    local c = connect(srv)
    assert(c:send("GET / HTTP/1.1\r\n\r\n"))   -- and read nothing until the write timed out
    local got = result:get(5)
    assert.is_nil(got[1])
    assert.equals("timeout", got[2])
    assert.same({ nil, "timeout" }, got.again)
    assert.same({ nil, "timeout" }, got.finish)
    assert.is_true(got.seconds < 0.05)
    -- The client gets part of the body, then the close: no last chunk, no "more".
    local text, err = drain(c, 5)
    assert.equals("closed", err)
    assert.truthy(text:find("^HTTP/1.1 200 OK\r\n"))
    assert.is_true(#text < #big)
    assert.is_nil(text:find("0\r\n\r\n$"))
    assert.is_nil(text:find("more", 1, true))
    c:close()
    assert.equals(0, no_connections(srv))
    local d = connect(srv)
    assert(d:send("GET /next HTTP/1.1\r\nConnection: close\r\n\r\n"))
    assert.truthy((drain(d)):find("next$"))
    d:close()
    srv:stop()
  end)

  it("a write: a retry loop on res:write's error ends at once (the connection was closed), it does not spin", function()
    local result = gsock.queue()
    local srv = gsock.http.server("127.0.0.1:0", function(req, res)
      local chunk = ("w"):rep(1024 * 1024)
      local tries, errors = 0, {}
      local t0 = gsock.now()
      while tries < 1000 do
        tries = tries + 1
        local ok, err = res:write(chunk)
        if not ok then
          errors[err] = (errors[err] or 0) + 1
          if errors[err] >= 100 then break end
        end
      end
      result:put({ errors = errors, seconds = gsock.now() - t0 })
    end, { body_timeout = 0.2 }):start()
    local c = connect(srv)
    assert(c:send("GET / HTTP/1.1\r\n\r\n"))
    gsock.sleep(0.05)
    reset(c)   -- a reset under the writer
    local r = result:get(5)
    local kinds = 0
    for err, n in pairs(r.errors) do
      kinds = kinds + 1
      assert.equals("closed", err)
      assert.equals(100, n)
    end
    assert.equals(1, kinds)
    assert.is_true(r.seconds < 1)
    assert.equals(0, no_connections(srv))
    srv:stop()
  end)

  it("a write: after a failed res:write the handler still has its request (req.peer), and the connection closes when it ends", function()
    local result, release = gsock.queue(), gsock.event()
    local srv = gsock.http.server("127.0.0.1:0", function(req, res)
      local got = { res:write(("w"):rep(16 * 1024 * 1024)) }
      got.peer = req.peer.host
      result:put(got)
      release:wait(2)
    end, { body_timeout = 0.2 }):start()
    local c = connect(srv)
    assert(c:send("GET / HTTP/1.1\r\n\r\n"))
    local got = result:get(5)
    assert.is_nil(got[1])
    assert.equals("timeout", got[2])
    assert.equals("127.0.0.1", got.peer)
    -- shut down at once: the client sees the end while the handler still runs
    local _, err = drain(c, 5)
    assert.equals("closed", err)
    assert.equals(1, srv:connections())
    release:set()
    assert.equals(0, no_connections(srv))
    c:close()
    srv:stop()
  end)

  it("a req and res kept past their request (by a spawned fiber) cannot read or write the next request's", function()
    local kept = gsock.queue()
    local srv = gsock.http.server("127.0.0.1:0", function(req, res)
      if req.path == "/first" then
        kept:put({ req = req, res = res })
        return 200, "first"
      end
      local body = req:body()
      return 200, "second got " .. body
    end):start()
    local c = connect(srv)
    assert(c:send("GET /first HTTP/1.1\r\n\r\n"))
    assert.equals("HTTP/1.1 200 OK", c:receive("*l"))
    repeat local line = c:receive("*l") until line == ""
    assert.equals("first", c:receive(5))
    local old = kept:get(2)
    -- the next request is running (its handler waits for its body) when the old ones try
    assert(c:send("POST /second HTTP/1.1\r\nContent-Length: 5\r\n\r\n"))
    gsock.sleep(0.05)
    local data, err = old.req:body()
    assert.is_nil(data)
    assert.equals("the request is over", err)
    local ok, werr = pcall(old.res.write, old.res, "INJECTED")
    assert.is_false(ok)
    assert.matches("the response is already over", werr)
    assert.is_false((pcall(old.res.finish, old.res, "INJECTED")))
    assert.equals("/first", old.req.path)   -- its fields stay readable
    assert(c:send("hello"))
    assert.equals("HTTP/1.1 200 OK", c:receive("*l"))
    local text = ""
    repeat local line = c:receive("*l"); text = text .. line .. "\n" until line == ""
    assert.equals("second got hello", c:receive(16))
    assert.is_nil(text:find("INJECTED", 1, true))
    c:close()
    srv:stop()
  end)

  it("a body: killing the request's fiber closes its connection; the server serves the next", function()
    local waiting = gsock.queue()
    local srv = gsock.http.server("127.0.0.1:0", function(req)
      if req.path == "/wait" then
        waiting:put(gsock.current())
        req:body()
        return 200, "never"
      end
      return 200, "next"
    end):start()
    local c = connect(srv)
    assert(c:send("POST /wait HTTP/1.1\r\nContent-Length: 5\r\n\r\n"))
    kill_closes(srv, waiting:get(2), c)
  end)

  it("100-continue: a client that sends nothing after the 100 Continue gives the handler nil, 'timeout' at body_timeout; the connection then closes", function()
    local result = gsock.queue()
    local srv = gsock.http.server("127.0.0.1:0", function(req)
      local t0 = gsock.now()
      local body, err = req:body()
      result:put({ body, err, waited = gsock.now() - t0 })
      return 200, "late"
    end, { body_timeout = 0.2 }):start()
    local c = continued(srv)
    failed_with(result, "timeout", 0.15, 1)
    local text, err = drain(c)
    assert.equals("closed", err)
    assert.truthy(text:find("^HTTP/1.1 200 OK\r\n"), text)
    assert.truthy(text:find("\r\nConnection: close\r\n"), text)
    c:close()
    assert.equals(0, no_connections(srv))
    srv:stop()
  end)

  it("100-continue: a peer reset after the 100 Continue gives the waiting handler nil, 'closed'", function()
    local result = gsock.queue()
    local srv = gsock.http.server("127.0.0.1:0", function(req) result:put({ req:body() }) end):start()
    reset(continued(srv))
    failed_with(result, "closed")
    assert.equals(0, no_connections(srv))
    srv:stop()
  end)

  it("100-continue: killing the handler while it waits after the 100 Continue closes the connection; the server serves the next", function()
    local handler, waiting = body_waiter()
    local srv = gsock.http.server("127.0.0.1:0", handler):start()
    local c = continued(srv)
    kill_closes(srv, waiting:get(2), c)
  end)

  it("100-continue: a handler that never reads the body sends no 100 Continue, and its response says Connection: close", function()
    local srv = gsock.http.server("127.0.0.1:0", function() return 200, "x" end):start()
    local c = connect(srv)
    assert(c:send("POST / HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"))
    local text, err = drain(c)
    assert.equals("closed", err)
    assert.truthy(text:find("^HTTP/1.1 200 OK\r\n"), text)   -- not 100 Continue first
    assert.is_nil(text:find("100 Continue", 1, true), text)
    assert.truthy(text:find("\r\nConnection: close\r\n"), text)
    assert.truthy(text:find("\r\n\r\nx$"), text)
    c:close()
    srv:stop()
  end)

  it("upgrade: a receive on the handed-over socket times out with nil, 'timeout' and the partial line; the socket still works after", function()
    local result = gsock.queue()
    local srv, c = upgraded(function(sock)
      sock:settimeout(0.2)
      local t0 = gsock.now()
      local data, err, partial = sock:receive("*l")
      result:put({ data, err, partial = partial, waited = gsock.now() - t0 })
      sock:send("still here\n")
    end)
    assert(c:send("par"))
    assert.equals("par", failed_with(result, "timeout", 0.15, 1).partial)
    local text, err = drain(c)
    assert.equals("still here\n", text)
    assert.equals("closed", err)   -- the handler returned
    c:close()
    assert.equals(0, no_connections(srv))
    srv:stop()
  end)

  it("upgrade: a close from another fiber wakes a receive waiting on the handed-over socket with nil, 'closed'", function()
    local result = gsock.queue()
    local srv, c = upgraded(function(sock)
      local closer = gsock.spawn(function()
        gsock.sleep(0.1)
        sock:close()
      end)
      local t0 = gsock.now()
      local data, err = sock:receive("*l")
      result:put({ data, err, waited = gsock.now() - t0 })
      closer:join(1)
    end)
    failed_with(result, "closed", 0.05, 1)
    local text, err = drain(c)
    assert.equals("", text)
    assert.equals("closed", err)
    c:close()
    assert.equals(0, no_connections(srv))
    srv:stop()
  end)

  it("upgrade: a peer reset ends a receive waiting on the handed-over socket with nil, 'closed'", function()
    local result = gsock.queue()
    local srv, c = upgraded(function(sock) result:put({ sock:receive("*l") }) end)
    gsock.sleep(0.05)
    reset(c)
    failed_with(result, "closed")
    assert.equals(0, no_connections(srv))
    srv:stop()
  end)

  it("upgrade: killing the handler while it waits on the handed-over socket closes the connection; the server serves the next", function()
    local waiting = gsock.queue()
    local srv, c = upgraded(function(sock)
      waiting:put(gsock.current())
      sock:receive("*l")
      sock:send("never\n")
    end)
    local f = waiting:get(2)
    gsock.sleep(0.05)
    kill_closes(srv, f, c)
  end)

  it("a write: killing the handler while res:write waits on a full socket closes the connection; the server serves the next", function()
    local waiting = gsock.queue()
    local big = ("z"):rep(16 * 1024 * 1024)
    local srv = gsock.http.server("127.0.0.1:0", function(req, res)
      if req.path == "/next" then return 200, "next" end
      waiting:put(gsock.current())
      res:write(big)
      res:write("never")
    end):start()
    local c = connect(srv)
    assert(c:send("GET / HTTP/1.1\r\n\r\n"))   -- and read nothing while the write waits
    local f = waiting:get(2)
    gsock.sleep(0.2)
    assert.is_false(f:dead(), "res:write did not wait")
    f:kill()
    -- The client gets part of the body, then the close: no last chunk, no "never".
    local text, err = drain(c, 5)
    assert.equals("closed", err)
    assert.truthy(text:find("^HTTP/1.1 200 OK\r\n"))
    assert.is_true(#text < #big, "the whole body arrived: " .. #text .. " bytes")
    assert.is_nil(text:find("never", 1, true))
    assert.is_nil(text:find("0\r\n\r\n$"))
    c:close()
    serves_next(srv)
    assert.equals(0, no_connections(srv))
    srv:stop()
  end)

  it("a body: stop(timeout) kills a handler still waiting for its body once the timeout passes", function()
    local srv = gsock.http.server("127.0.0.1:0", function(req) req:body() return 200, "never" end):start()
    local c = connect(srv)
    assert(c:send("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n"))
    gsock.sleep(0.05)
    local t0 = gsock.now()
    srv:stop(0.2)
    assert.is_true(gsock.now() - t0 < 1.5)
    local _, err = drain(c, 1)
    assert.equals("closed", err)
    assert.equals(0, srv:connections())
    c:close()
  end)

  it("a pipelined request that waits lets the complete responses ahead of it go first", function()
    local srv = gsock.http.server("127.0.0.1:0", function(req)
      if req.path == "/slow" then gsock.sleep(0.5) end
      return 200, req.path
    end):start()
    local c = connect(srv)
    local t0 = gsock.now()
    assert(c:send("GET /fast HTTP/1.1\r\n\r\nGET /slow HTTP/1.1\r\n\r\n"))
    assert.equals("HTTP/1.1 200 OK", c:receive("*l"))
    repeat local line = c:receive("*l") until line == ""
    assert.equals("/fast", c:receive(5))
    assert.is_true(gsock.now() - t0 < 0.3)
    assert.equals("HTTP/1.1 200 OK", c:receive("*l"))
    repeat local line = c:receive("*l") until line == ""
    assert.equals("/slow", c:receive(5))
    assert.is_true(gsock.now() - t0 >= 0.5)
    c:close()
    srv:stop()
  end)

  it("a request killed before its fiber ran closes its connection, after the responses pipelined ahead of it", function()
    local srv = gsock.http.server("127.0.0.1:0", function() return 200, "x" end):start()
    local c = connect(srv)
    for _ = 1, 200 do
      if srv:connections() == 1 then break end
      gsock.sleep(0.01)
    end
    assert(c:send("GET /0 HTTP/1.1\r\n\r\n"))
    answered(c)
    -- A request read by the descriptor's callback runs at once; one pipelined behind it is
    -- queued. Kill every request fiber the moment it exists: from a fiber that is always
    -- queued ahead of it (it sleeps 0 in a loop).
    local killer = gsock.spawn(function()
      while true do
        for _, f in ipairs(srv.http:fibers()) do f:kill(nil, false) end
        gsock.sleep(0)
      end
    end)
    assert(c:send("GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n"))
    local text, err = drain(c, 2)
    killer:kill()
    assert.equals("closed", err)
    -- /1 was answered (its response waited to go with /2's), /2 never ran.
    local _, answers = text:gsub("HTTP/1.1 200 OK", "")
    assert.equals(1, answers)
    assert.truthy(text:find("\r\n\r\nx$"))
    assert.equals(0, no_connections(srv))
    c:close()
    srv:stop()
  end)
end)

describe("HTTP request fibers", function()
  --- One keep-alive request and its body (the handlers below answer 2 bytes).
  local function get(c, path)
    assert(c:send("GET " .. path .. " HTTP/1.1\r\nHost: a\r\n\r\n"))
    local status = assert(c:receive("*l"))
    repeat local line = assert(c:receive("*l")) until line == ""
    return status, assert(c:receive(2))
  end

  it("gsock.current() in a handler is its request's fiber: the same value each time asked, another the next request", function()
    local seen = {}
    local srv = gsock.http.server("127.0.0.1:0", function(req)
      local a = gsock.current()
      gsock.sleep(0)   -- still the same fiber after a wait
      seen[#seen + 1] = { fiber = a, same = rawequal(a, gsock.current()), alive = not a:dead() }
      return 200, "ok"
    end):start()
    local c = connect(srv)
    for i = 1, 3 do
      local status, body = get(c, "/" .. i)
      assert.equals("HTTP/1.1 200 OK", status)
      assert.equals("ok", body)
    end
    assert.equals(3, #seen)
    for i, s in ipairs(seen) do
      assert.is_true(s.same)
      assert.is_true(s.alive)
      assert.is_true(s.fiber:dead())   -- the request ended
      assert.is_true(s.fiber:successful())
      for j = i + 1, #seen do assert.is_false(rawequal(s.fiber, seen[j].fiber)) end
    end
    c:close()
    srv:stop()
  end)

  it("the Lua threads that run requests are reused: 200 sequential requests run on a few threads; a thread given to Lua code is not reused", function()
    -- A fiber handle holds its thread as user value 1 while it runs (Runtime.pushHandle):
    -- the thread without coroutine.running(), which would keep it from being reused.
    local threads, count = {}, 0
    local srv = gsock.http.server("127.0.0.1:0", function(req)
      if req.path == "/seen" then coroutine.running() end
      local co = debug.getuservalue(gsock.current(), 1)
      if type(co) ~= "thread" then return 500, "no thread: " .. type(co) end
      if not threads[co] then threads[co], count = true, count + 1 end   -- held: never collected, never a new one at its address
      return 200, "ok"
    end):start()
    local c = connect(srv)
    for _ = 1, 200 do assert.equals("ok", select(2, get(c, "/"))) end
    local reused = count
    assert.is_true(reused <= 4, reused .. " threads for 200 sequential requests")
    for _ = 1, 10 do assert.equals("ok", select(2, get(c, "/seen"))) end
    -- Each of those threads was seen by Lua code and dropped: the measure sees new ones.
    assert.is_true(count >= 10, count .. " threads after 10 requests whose thread was seen")
    c:close()
    srv:stop()
  end)

  it("the fiber objects of handle-less requests are reborn with their threads: each request starts clean, fiber_objects stays flat", function()
    -- /sleep arms the fiber's timer; /wait times out a wait (its timeout error), /spawn
    -- parks on a child and kills another; /check runs next on a reborn fiber.
    local srv = gsock.http.server("127.0.0.1:0", function(req)
      if req.path == "/sleep" then gsock.sleep(0.001) end
      if req.path == "/wait" then
        local u = socket.udp()
        assert(u:setsockname("127.0.0.1", 0))
        u:settimeout(0.001)
        local data, err = u:receive()
        u:close()
        if data or err ~= "timeout" then return 500, "wait: " .. tostring(err) end
      end
      if req.path == "/spawn" then
        local child = gsock.spawn(function() gsock.sleep(0.001) return "child" end)
        local stuck = gsock.spawn(function() gsock.sleep(60) end)
        child:join()
        stuck:kill()
        if child:get() ~= "child" or not child:successful() then return 500, "child" end
      end
      if req.path == "/check" then
        local me = gsock.current()
        if me:dead() or not rawequal(me, gsock.current()) then return 500, "not a fresh fiber" end
        local t0 = gsock.now()
        gsock.sleep(0.002)   -- the reborn fiber's timer, made again
        if gsock.now() - t0 < 0.0015 then return 500, "slept " .. (gsock.now() - t0) end
      end
      return 200, "ok"
    end):start()
    local c = connect(srv)
    local function get(path)   -- the whole body, whatever its length
      assert(c:send("GET " .. path .. " HTTP/1.1\r\nHost: a\r\n\r\n"))
      local status, length = assert(c:receive("*l")), nil
      repeat
        local line = assert(c:receive("*l"))
        length = length or tonumber(line:match("^[Cc]ontent%-[Ll]ength: *(%d+)"))
      until line == ""
      return status, assert(c:receive(length))
    end
    assert.equals("ok", select(2, get("/")))
    collectgarbage()   -- the earlier tests' dead fibers whose handles are garbage
    local base = gsock.stats().fiber_objects
    for _ = 1, 30 do
      for _, path in ipairs({ "/", "/sleep", "/wait", "/spawn", "/check" }) do
        local status, body = get(path)
        assert.equals("HTTP/1.1 200 OK ok", status .. " " .. body, path)
      end
    end
    gsock.sleep(0.01)
    collectgarbage()
    assert.equals(base, gsock.stats().fiber_objects)
    c:close()
    srv:stop()
  end)

  it("a handler that raised, one killed and one given its thread leave the next requests a clean fiber", function()
    local t = {}
    local srv = gsock.http.server("127.0.0.1:0", function(req)
      if req.path == "/raise" then error("on purpose") end
      if req.path == "/seen" then t.co = coroutine.running() end
      if req.path == "/check" then
        return 200, (coroutine.running() ~= t.co and debug.gethook() == nil) and "ok" or "no"
      end
      if req.path == "/hook" then debug.sethook(function() end, "c") end
      return 200, "ok"
    end):start()
    for _, path in ipairs({ "/raise", "/seen", "/hook" }) do
      local first = connect(srv)
      local status = get(first, path)
      assert.truthy(status:find(path == "/raise" and " 500 " or " 200 "), status)
      first:close()
      local c = connect(srv)
      for _ = 1, 5 do
        local s, body = get(c, "/check")
        assert.equals("HTTP/1.1 200 OK", s)
        assert.equals("ok", body)
      end
      c:close()
    end
    srv:stop()
  end)
end)
