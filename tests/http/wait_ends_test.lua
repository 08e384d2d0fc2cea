-- The cells of "every wait, every way it can end" that tests/http/waits_test.lua leaves
-- out (SPEC §11, §4, §10): a peer reset under a waiting head, a body dribbled under
-- body_timeout (a limit per wait), reader() retries, res:write that waits and then gets
-- its data through or a reset, sends that wait on an upgraded socket (timeout, close from
-- another fiber, kill, reset, retries), and the same waits of an HTTPS service (HTTP over
-- TLS: the host reads and writes through OpenSSL), whose waits no other file covers.
local gsock = require "gsock"
local socket = require "socket"
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/http/"
local tls = dofile(here .. "../tls/support/tls.lua")
local proc = tls.proc
local ssl = tls.load_ssl()

local client = dofile(here .. "support/client.lua")
local connect, drain, reset, no_connections, serves_next, kill_closes, failed_with = client.connect,
  client.drain, client.reset, client.no_connections, client.serves_next, client.kill_closes, client.failed_with
local body_waiter = client.body_waiter

--- Decodes a chunked body (the text after the head); returns it and whether the last
--- chunk came.
local function dechunk(text)
  local parts, pos = {}, 1
  while true do
    local size_line_end = text:find("\r\n", pos, true)
    if not size_line_end then return table.concat(parts), false end
    local size = tonumber(text:sub(pos, size_line_end - 1):match("^%x+"), 16)
    if not size then return table.concat(parts), false end
    if size == 0 then return table.concat(parts), true end
    parts[#parts + 1] = text:sub(size_line_end + 2, size_line_end + 1 + size)
    pos = size_line_end + 2 + size + 2
  end
end


--- A server that answers /next with "next" and upgrades any other path, then calls
--- use(sock); and a client connection that has read the 101 head.
local function upgraded(use, opts)
  local srv = gsock.http.server("127.0.0.1:0", function(req, res)
    if req.path == "/next" then return 200, "next" end
    res.status = 101
    res.headers.Upgrade = "test"
    res.headers.Connection = "Upgrade"
    use(assert(res:upgrade()))
  end, opts):start()
  local c = connect(srv)
  assert(c:send("GET /up HTTP/1.1\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\n"))
  assert.equals("HTTP/1.1 101 Switching Protocols", c:receive("*l"))
  repeat local line = assert(c:receive("*l")) until line == ""
  return srv, c
end

local BIG = ("u"):rep(32 * 1024 * 1024)   -- more than both ends' socket buffers hold

describe("HTTP waits, the cells waits_test.lua leaves out", function()
  it("a head: a peer reset under a partial head frees the connection at once (not at header_timeout); the server serves the next", function()
    local ran = false
    local srv = gsock.http.server("127.0.0.1:0", function(req)
      if req.path ~= "/next" then ran = true end
      return 200, "next"
    end, { header_timeout = 5 }):start()
    local c = connect(srv)
    assert(c:send("GET /partial HTTP/1.1\r\nHost: a"))
    gsock.sleep(0.05)
    assert.equals(1, srv:connections())
    local t0 = gsock.now()
    reset(c)
    assert.equals(0, no_connections(srv, 1), "the reset connection is still held")
    assert.is_true(gsock.now() - t0 < 1)
    assert.is_false(ran)
    serves_next(srv)
    srv:stop()
  end)

  it("a head: a slowloris client that resets while dribbling is freed at once; others are served meanwhile", function()
    local srv = gsock.http.server("127.0.0.1:0", function() return 200, "next" end, { header_timeout = 5 }):start()
    local c = connect(srv)
    for ch in ("GET / HTTP/1.1\r\nX-Slow: aaaa"):gmatch(".") do
      assert(c:send(ch))
      gsock.sleep(0.01)
    end
    serves_next(srv)
    reset(c)
    assert.equals(0, no_connections(srv, 1))
    srv:stop()
  end)

  it("a body: body_timeout bounds each wait, not the whole body: a body dribbled over 1 s with gaps of 0.1 s under body_timeout 0.3 is read whole", function()
    local result = gsock.queue()
    local srv = gsock.http.server("127.0.0.1:0", function(req)
      local t0 = gsock.now()
      local body, err = req:body()
      result:put({ body, err, waited = gsock.now() - t0 })
      return 200, "got " .. tostring(body and #body)
    end, { body_timeout = 0.3 }):start()
    local c = connect(srv)
    assert(c:send("POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n"))
    for i = 1, 10 do
      gsock.sleep(0.1)
      assert(c:send(tostring(i % 10)))
    end
    local got = result:get(3)
    assert.equals("1234567890", got[1], tostring(got[2]))
    assert.is_true(got.waited > 0.9, "read the body in " .. got.waited .. " s")
    assert.equals("HTTP/1.1 200 OK", c:receive("*l"))
    c:close()
    srv:stop()
  end)

  it("a body: reader(4) hands out the bytes that came without waiting for the rest", function()
    local result = gsock.queue()
    local srv = gsock.http.server("127.0.0.1:0", function(req)
      local reader = req:reader(4)
      local first, err = reader()
      result:put({ first, err })
      local rest = {}
      while true do
        local d = reader()
        if not d then break end
        rest[#rest + 1] = d
      end
      return 200, "rest " .. table.concat(rest)
    end, { body_timeout = 2 }):start()
    local c = connect(srv)
    assert(c:send("POST / HTTP/1.1\r\nContent-Length: 8\r\n\r\nab"))
    local got = result:get(1)   -- before the other 6 bytes are sent
    assert.equals("ab", got[1], tostring(got[2]))
    assert(c:send("cdefgh"))
    local text = drain(c, 2)
    assert.truthy(text:find("rest cdefgh$"), text)
    c:close()
    srv:stop()
  end)

  it("a body: after body_timeout, 100 reader() retries return nil, 'timeout' at once (no spin, no new wait)", function()
    local result = gsock.queue()
    local srv = gsock.http.server("127.0.0.1:0", function(req)
      local reader = req:reader()
      local got = { first = reader() }   -- "abc", the bytes that came
      got[1], got[2] = reader()          -- waits for the rest: body_timeout
      local t0, cpu0 = gsock.now(), tls.cpu()
      for i = 1, 100 do
        local data, err = reader()
        if data ~= nil or err ~= "timeout" then got.bad = { i, data, err } break end
      end
      got.seconds, got.cpu = gsock.now() - t0, tls.cpu() - cpu0
      result:put(got)
    end, { body_timeout = 0.2 }):start()
    local c = connect(srv)
    assert(c:send("POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc"))
    local got = result:get(3)
    assert.equals("abc", got.first)
    assert.is_nil(got[1])
    assert.equals("timeout", got[2])
    assert.is_nil(got.bad)
    assert.is_true(got.seconds < 0.1, "100 retries took " .. got.seconds .. " s")
    c:close()
    assert.equals(0, no_connections(srv))
    srv:stop()
  end)

  it("a write: res:write waiting on a client that reads late completes (true); the whole chunked body arrives and the connection serves the next", function()
    local result = gsock.queue()
    local big = ("w"):rep(8 * 1024 * 1024)
    local srv = gsock.http.server("127.0.0.1:0", function(req, res)
      if req.path == "/next" then return 200, "next" end
      local t0 = gsock.now()
      local ok, err = res:write(big)
      result:put({ ok, err, waited = gsock.now() - t0 })
      res:write("end")
    end, { body_timeout = 3 }):start()
    local c = connect(srv)
    assert(c:send("GET / HTTP/1.1\r\n\r\n"))
    gsock.sleep(0.3)                       -- res:write waits meanwhile
    assert.equals("HTTP/1.1 200 OK", c:receive("*l"))
    repeat local line = assert(c:receive("*l")) until line == ""
    local parts = {}
    while true do
      local size = tonumber(assert(c:receive("*l")):match("^%x+"), 16)
      if size == 0 then assert.equals("", c:receive("*l")) break end
      parts[#parts + 1] = assert(c:receive(size))
      assert.equals("", c:receive("*l"))
    end
    local got = result:get(2)
    assert.is_true(got[1], tostring(got[2]))
    assert.is_true(got.waited >= 0.25, "res:write did not wait: " .. got.waited)
    local body = table.concat(parts)
    assert.equals(#big + 3, #body)
    assert.equals("end", body:sub(-3))
    serves_next(srv, c)
    srv:stop()
  end)

  it("a write: a peer reset ends a waiting res:write with nil, 'closed' at once, not at body_timeout (5 s)", function()
    local result = gsock.queue()
    local srv = gsock.http.server("127.0.0.1:0", function(req, res)
      local t0 = gsock.now()
      local ok, err = res:write(BIG)
      result:put({ ok, err, waited = gsock.now() - t0 })
    end, { body_timeout = 5 }):start()
    local c = connect(srv)
    assert(c:send("GET / HTTP/1.1\r\n\r\n"))
    gsock.sleep(0.2)
    reset(c)
    failed_with(result, "closed", 0.1, 1)
    assert.equals(0, no_connections(srv))
    srv:stop()
  end)
end)

describe("HTTP chunked request bodies: the waits inside the chunk framing", function()
  local function chunked_server(result, opts)
    return gsock.http.server("127.0.0.1:0", function(req)
      if req.path == "/next" then return 200, "next" end
      local t0 = gsock.now()
      local got = { req:body() }
      got.waited = gsock.now() - t0
      result:put(got)
      return 200, "body " .. tostring(got[1])
    end, opts):start()
  end

  it("data: chunks dribbled a piece at a time (size line, data, CRLF split) are decoded whole", function()
    local result = gsock.queue()
    local srv = chunked_server(result, { body_timeout = 1 })
    local c = connect(srv)
    assert(c:send("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"))
    for _, piece in ipairs({ "5", "\r", "\nhel", "lo", "\r\n", "3;ext=1\r\n", "abc\r", "\n0\r\n", "\r\n" }) do
      gsock.sleep(0.03)
      assert(c:send(piece))
    end
    local got = result:get(3)
    assert.equals("helloabc", got[1], tostring(got[2]))
    assert.equals("HTTP/1.1 200 OK", c:receive("*l"))
    c:close()
    srv:stop()
  end)

  it("timeout: body_timeout in the middle of a chunk-size line gives nil, 'timeout'; the connection then closes", function()
    local result = gsock.queue()
    local srv = chunked_server(result, { body_timeout = 0.2 })
    local c = connect(srv)
    assert(c:send("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1"))
    failed_with(result, "timeout", 0.15, 1.5)
    local text, err = drain(c)
    assert.equals("closed", err)
    assert.truthy(text:find("\r\nConnection: close\r\n"), text)
    c:close()
    assert.equals(0, no_connections(srv))
    srv:stop()
  end)

  it("reset: a peer reset inside a chunk's data gives nil, 'closed' at once", function()
    local result = gsock.queue()
    local srv = chunked_server(result, { body_timeout = 5 })
    local c = connect(srv)
    assert(c:send("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nhalf"))
    gsock.sleep(0.1)
    reset(c)
    failed_with(result, "closed", 0, 1)
    assert.equals(0, no_connections(srv))
    srv:stop()
  end)

  it("kill: killing the handler waiting for the next chunk closes the connection; the server serves the next", function()
    local handler, waiting = body_waiter()
    local srv = gsock.http.server("127.0.0.1:0", handler):start()
    local c = connect(srv)
    assert(c:send("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"))
    local f = waiting:get(2)
    gsock.sleep(0.05)
    kill_closes(srv, f, c)
  end)

  it("retry: after a timeout inside the chunk framing, 100 reader() calls give nil, 'timeout' at once", function()
    local result = gsock.queue()
    local srv = gsock.http.server("127.0.0.1:0", function(req)
      local reader = req:reader()
      local parts = {}
      local d, e
      repeat
        d, e = reader()
        if d then parts[#parts + 1] = d end
      until not d
      local got = { d, e, data = table.concat(parts) }
      local t0 = gsock.now()
      for i = 1, 100 do
        local d2, e2 = reader()
        if d2 ~= nil or e2 ~= "timeout" then got.bad = { i, d2, e2 } break end
      end
      got.seconds = gsock.now() - t0
      result:put(got)
    end, { body_timeout = 0.2 }):start()
    local c = connect(srv)
    assert(c:send("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4\r\nde"))
    local got = result:get(3)
    assert.equals("abcde", got.data)
    assert.is_nil(got[1])
    assert.equals("timeout", got[2])
    assert.is_nil(got.bad)
    assert.is_true(got.seconds < 0.1)
    c:close()
    srv:stop()
  end)
end)

describe("HTTP: a read and a write of one request at once", function()
  it("full duplex in one request: a fiber streams the body back with res:write while the handler reads it (echo of 2 MiB)", function()
    local srv = gsock.http.server("127.0.0.1:0", function(req, res)
      local reader = req:reader(65536)
      res.headers["Content-Type"] = "application/octet-stream"
      while true do
        local d, e = reader()
        if not d then
          if e then error("read: " .. e) end
          break
        end
        local ok, we = res:write(d)
        if not ok then error("write: " .. tostring(we)) end
      end
    end, { body_timeout = 3, max_body = 4 * 1024 * 1024 }):start()
    local c = connect(srv)
    local body = ("e"):rep(2 * 1024 * 1024)
    local sender = gsock.spawn(function()
      c:send("POST / HTTP/1.1\r\nContent-Length: " .. #body .. "\r\nConnection: close\r\n\r\n")
      c:send(body)
    end)
    local text, err = drain(c, 8)
    sender:join(2)
    assert.equals("closed", err)
    local head_end = text:find("\r\n\r\n", 1, true)
    assert.truthy(head_end, text:sub(1, 200))
    assert.truthy(text:find("^HTTP/1.1 200 OK\r\n"), text:sub(1, 200))
    local echoed, last = dechunk(text:sub(head_end + 4))
    assert.is_true(last, "no last chunk")
    assert.equals(#body, #echoed)
    c:close()
    srv:stop()
  end)
end)

--- A handler that upgrades, times gsock.wait_read(sock) and socket.select on what came
--- with the head, then reads it with read(sock), and puts { ok, e, waited, selected, n,
--- data, read_took } in `result`.
local function upgrade_and_time(result, read)
  return function(req, res)
    res.status = 101
    res.headers.Upgrade = "test"
    local sock = assert(res:upgrade())
    local t0 = gsock.now()
    local ok, e = pcall(gsock.wait_read, sock, 1)
    local waited = gsock.now() - t0
    t0 = gsock.now()
    local r = socket.select({ sock }, nil, 1)
    local selected = gsock.now() - t0
    sock:settimeout(1)
    t0 = gsock.now()
    local data = read(sock)
    result:put({ ok = ok, e = tostring(e), waited = waited, selected = selected, n = #r, data = data,
                 read_took = gsock.now() - t0 })
  end
end

describe("HTTP upgrade: bytes the host already read", function()
  it("gsock.wait_read(sock) and socket.select return at once for what came with the upgrade head (buffered, not on the descriptor)", function()
    local result = gsock.queue()
    local srv = gsock.http.server("127.0.0.1:0", upgrade_and_time(result, function(sock) return sock:receive("*l") end))
      :start()
    local c = connect(srv)
    assert(c:send("GET /up HTTP/1.1\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\nearly\n"))
    local r = result:get(4)
    assert.equals("early", r.data)
    assert.is_true(r.ok, r.e)
    assert.is_true(r.waited < 0.5, ("wait_read waited %.2f s for bytes already buffered"):format(r.waited))
    assert.equals(1, r.n)
    assert.is_true(r.selected < 0.5, ("select waited %.2f s for bytes already buffered"):format(r.selected))
    c:close()
    srv:stop()
  end)
end)

describe("HTTP upgrade: sends on the handed-over socket", function()
  --- use(sock) for upgraded(): sends BIG (with timeout `t`) and puts what it gave.
  local function big_sender(result, t, before)
    return function(sock)
      if before then before(sock) end
      sock:settimeout(t)
      local t0 = gsock.now()
      local r = table.pack(sock:send(BIG))
      r.waited = gsock.now() - t0
      result:put(r)
    end
  end

  it("a send the client does not read times out: nil, 'timeout', the partial index (LuaSocket's shape)", function()
    local result = gsock.queue()
    local srv, c = upgraded(big_sender(result, 0.2))
    local r = result:get(3)
    assert.is_nil(r[1])
    assert.equals("timeout", r[2])
    assert.equals("number", math.type(r[3]) and "number" or type(r[3]))
    assert.is_true(r[3] > 0 and r[3] < #BIG, tostring(r[3]))
    assert.is_true(r.waited >= 0.15 and r.waited < 1.5, tostring(r.waited))
    c:close()
    assert.equals(0, no_connections(srv))
    srv:stop()
  end)

  it("a waiting send ends when another fiber closes the socket: nil, 'closed', the partial index, at once", function()
    local result = gsock.queue()
    local srv, c = upgraded(big_sender(result, 5, function(sock)
      gsock.spawn(function()
        gsock.sleep(0.2)
        sock:close()
      end)
    end))
    local r = result:get(3)
    assert.is_nil(r[1])
    assert.equals("closed", r[2])
    assert.equals("number", type(r[3]))
    assert.is_true(r.waited >= 0.15 and r.waited < 1.5, tostring(r.waited))
    local _, err = drain(c, 3)
    assert.equals("closed", err)
    c:close()
    assert.equals(0, no_connections(srv))
    srv:stop()
  end)

  it("a waiting send ends with nil, 'closed' at once when the client resets", function()
    local result = gsock.queue()
    local srv, c = upgraded(big_sender(result, 5))
    gsock.sleep(0.2)
    reset(c)
    local r = result:get(3)
    assert.is_nil(r[1])
    assert.equals("closed", r[2])
    assert.is_true(r.waited < 1.5, tostring(r.waited))
    assert.equals(0, no_connections(srv))
    srv:stop()
  end)

  it("killing the handler while its send waits closes the connection; the server serves the next", function()
    local waiting = gsock.queue()
    local srv, c = upgraded(function(sock)
      waiting:put(gsock.current())
      sock:send(BIG)
      sock:send("never")
    end)
    local f = waiting:get(2)
    gsock.sleep(0.2)
    assert.is_false(f:dead(), "the send did not wait")
    f:kill()
    local text, err = drain(c, 5)
    assert.equals("closed", err)
    assert.is_true(#text < #BIG)
    assert.is_nil(text:find("never", 1, true))
    c:close()
    serves_next(srv)
    assert.equals(0, no_connections(srv))
    srv:stop()
  end)

  it("after a reset, 100 receives and 100 sends on the handed-over socket return nil, 'closed' at once", function()
    local result = gsock.queue()
    local srv, c = upgraded(function(sock)
      sock:settimeout(3)
      local first = { sock:receive("*l") }
      local t0, bad = gsock.now(), nil
      for i = 1, 100 do
        local d, e = sock:receive("*l")
        local n, se = sock:send("x")
        if d ~= nil or e ~= "closed" or n ~= nil or se ~= "closed" then bad = { i, d, e, n, se } break end
      end
      result:put({ first[1], first[2], bad = bad, seconds = gsock.now() - t0 })
    end)
    gsock.sleep(0.05)
    reset(c)
    local r = result:get(3)
    assert.is_nil(r[1])
    assert.equals("closed", r[2])
    assert.is_nil(r.bad, r.bad and ("retry %d: %s %s %s %s"):format(r.bad[1], tostring(r.bad[2]), tostring(r.bad[3]),
      tostring(r.bad[4]), tostring(r.bad[5])))
    assert.is_true(r.seconds < 0.2, tostring(r.seconds))
    assert.equals(0, no_connections(srv))
    srv:stop()
  end)

  it("after a timeout, each retried receive really waits its timeout (5 × 0.05 s ≥ 0.2 s) and then gets the data", function()
    local result = gsock.queue()
    local srv, c = upgraded(function(sock)
      sock:settimeout(0.05)
      local t0, errs = gsock.now(), {}
      for _ = 1, 5 do
        local d, e = sock:receive("*l")
        errs[#errs + 1] = tostring(d) .. "/" .. tostring(e)
      end
      local took = gsock.now() - t0
      sock:settimeout(2)
      local line = sock:receive("*l")
      result:put({ errs = table.concat(errs, " "), took = took, line = line })
    end)
    gsock.sleep(0.4)
    assert(c:send("late\n"))
    local r = result:get(3)
    assert.equals(("nil/timeout "):rep(4) .. "nil/timeout", r.errs)
    assert.is_true(r.took >= 0.2, tostring(r.took))
    assert.equals("late", r.line)
    c:close()
    srv:stop()
  end)
end)

-- HTTPS: the same waits through OpenSSL ------------------------------------------------

-- Errors that others raise at a wait of the HTTP layer go on up to the handler, as at
-- any wait (SPEC §2): only the wait's own deadline and a close become return values.
describe("HTTP waits: an error raised at the wait", function()
  for _, access_log in ipairs({ false, true }) do
    it(("kill('custom reason') of a request fiber waiting in req:body() raises it there (SPEC §2): the handler goes "
      .. "no further, sends nothing and is not logged as failed (access_log = %s)"):format(tostring(access_log)), function()
      local waiting, ran_on = gsock.queue(), nil
      local srv = gsock.http.server("127.0.0.1:0", function(req)
        waiting:put(gsock.current())
        local body, err = req:body()
        ran_on = { body, err }
        return 200, "ran on"
      end, { access_log = access_log }):start()
      local errors = gsock.stats().errors
      local c = connect(srv)
      assert(c:send("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n"))
      local f = waiting:get(2)
      gsock.sleep(0.05)
      f:kill("custom reason")
      local text, err = drain(c)
      assert.is_true(f:dead())
      assert.is_nil(ran_on, ran_on and ("req:body() returned %s, %s to the killed fiber"):format(tostring(ran_on[1]), tostring(ran_on[2])))
      assert.equals("custom reason", f.error)
      assert.same({ "", "closed" }, { text, err })
      assert.equals(errors, gsock.stats().errors)
      c:close()
      srv:stop()
    end)

    it(("a handler that raises after res:upgrade() is logged once, and its socket closed (access_log = %s)")
      :format(tostring(access_log)), function()
      local srv = gsock.http.server("127.0.0.1:0", function(req, res)
        res.status = 101
        res.headers.Upgrade = "test"
        res.headers.Connection = "Upgrade"
        assert(res:upgrade())
        error("after the upgrade")
      end, { access_log = access_log }):start()
      local errors = gsock.stats().errors
      local c = connect(srv)
      assert(c:send("GET /up HTTP/1.1\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\n"))
      local text, err = drain(c)
      assert.truthy(text:find("^HTTP/1.1 101 Switching Protocols\r\n"), text)
      assert.equals("closed", err)
      assert.equals(errors + 1, gsock.stats().errors)
      assert.equals(0, no_connections(srv))
      c:close()
      srv:stop()
    end)
  end

  it("kill('custom reason') of a request fiber waiting in res:write raises it there (SPEC §2): the handler goes no further", function()
    local waiting, ran_on = gsock.queue(), nil
    local srv = gsock.http.server("127.0.0.1:0", function(req, res)
      waiting:put(gsock.current())
      local ok, err = res:write(BIG)
      ran_on = { ok, err }
    end):start()
    local c = connect(srv)
    assert(c:send("GET / HTTP/1.1\r\n\r\n"))   -- and read nothing: res:write waits
    local f = waiting:get(2)
    gsock.sleep(0.2)
    assert.is_false(f:dead(), "res:write did not wait")
    f:kill("custom reason")
    assert.is_true(f:dead())
    assert.is_nil(ran_on, ran_on and ("res:write returned %s, %s to the killed fiber"):format(tostring(ran_on[1]), tostring(ran_on[2])))
    assert.equals("custom reason", f.error)
    c:close()
    srv:stop()
  end)

  --- What `call(req, res)` gave under pcall in a handler whose client sends `head` and
  --- then nothing (so the call waits), with a body_timeout longer than the call's limit.
  local function raised(head, call)
    local result = gsock.queue()
    local srv = gsock.http.server("127.0.0.1:0", function(req, res)
      result:put(table.pack(pcall(call, req, res)))
    end, { body_timeout = 5 }):start()
    local c = connect(srv)
    assert(c:send(head))
    local r = result:get(3)
    c:close()
    srv:stop()
    return r, ("the call returned %s, %s"):format(tostring(r[2]), tostring(r[3]))
  end
  local POST = "POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n"

  it("gsock.timeout(0.2, 'deadline') around req:body() raises 'deadline' at the wait (SPEC §2), under a longer body_timeout", function()
    local r, shown = raised(POST, function(req)
      local t <close> = gsock.timeout(0.2, "deadline")
      return req:body()
    end)
    assert.is_false(r[1], shown)
    assert.equals("deadline", r[2])
  end)

  it("gsock.with_timeout(0.2, req.body, req) raises the timeout error (SPEC §2: 'returns its results or raises the timeout error')", function()
    local r, shown = raised(POST, function(req) return gsock.with_timeout(0.2, req.body, req) end)
    assert.is_false(r[1], shown)
    assert.is_true(gsock.is_timeout(r[2]), tostring(r[2]))
  end)

  it("gsock.timeout(0.2, 'deadline') around a waiting res:write raises 'deadline' (SPEC §2)", function()
    local r, shown = raised("GET / HTTP/1.1\r\n\r\n", function(_, res)
      local t <close> = gsock.timeout(0.2, "deadline")
      return res:write(BIG)
    end)
    assert.is_false(r[1], shown)
    assert.equals("deadline", r[2])
  end)

  -- SPEC §11 does not say what two fibers reading one request's body at once get; §4 says a
  -- second fiber receiving on a socket while one already does gets nil, "busy" at once.
  it("a second fiber reading the body while the handler's read waits gets nil, 'busy' at once (as §4's second receive), and the first gets the body", function()
    local result = gsock.queue()
    local srv = gsock.http.server("127.0.0.1:0", function(req)
      local first
      local f = gsock.spawn(function() first = { req:body() } end)
      gsock.sleep(0.05)
      local t0 = gsock.now()
      local second = { pcall(req.body, req) }
      second.took = gsock.now() - t0
      f:join(3)
      result:put({ first = first, second = second })
      return 200, "x"
    end, { body_timeout = 2 }):start()
    local c = connect(srv)
    assert(c:send("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n"))
    gsock.sleep(0.2)
    assert(c:send("hello"))
    local r = result:get(4)
    local shown = ("first: %s; second: pcall %s, %s, %s after %.2f s"):format(
      r.first and ("%s, %s"):format(tostring(r.first[1]), tostring(r.first[2])) or "none",
      tostring(r.second[1]), tostring(r.second[2]), tostring(r.second[3]), r.second.took)
    assert.is_true(r.second.took < 0.1, "the second read waited: " .. shown)
    assert.same({ true, nil, "busy" }, { r.second[1], r.second[2], r.second[3] }, shown)
    assert.same({ "hello" }, r.first, shown)
    c:close()
    srv:stop()
  end)

end)

--- Runs support/tls_http_client.py in the background; returns a handle whose wait(limit)
--- gives its stdout once it exited (the loop turns meanwhile).
local function python_client(port, mode, data, seconds)
  local dir = proc.tmpdir()
  local cmd = ("python3 %s %d %s %s %s >%s/out 2>%s/err; echo $? >%s/rc.tmp; mv %s/rc.tmp %s/rc"):format(
    proc.quote(here .. "support/tls_http_client.py"), port, mode, proc.quote(data), tostring(seconds),
    dir, dir, dir, dir, dir)
  assert(os.execute("(" .. cmd .. ") </dev/null >/dev/null 2>&1 &"))
  return {
    wait = function(limit)
      local deadline = gsock.now() + (limit or 10)
      while gsock.now() < deadline do
        if proc.slurp(dir .. "/rc") then return proc.slurp(dir .. "/out"), proc.slurp(dir .. "/err") end
        gsock.sleep(0.02)
      end
      return nil, "the python client did not end"
    end,
  }
end

describe("HTTPS waits (an HTTP service with tls)", function()
  setup(tls.setup)
  teardown(tls.teardown)
  after_each(tls.cleanup)
  before_each(tls.ready)

  local function https(handler, opts)
    opts = opts or {}
    opts.tls = { cert = tls.certs.localhost.cert, key = tls.certs.localhost.key }
    local srv = gsock.http.server("127.0.0.1:0", handler, opts):start()
    local _, port = srv.listeners[1]:getsockname()
    srv.port = tonumber(port)
    return srv
  end

  --- A handshaken gsockd TLS client of `srv` (timeout 3 s).
  local function tls_connect(srv)
    local conn = tls.track(assert(ssl.wrap(tls.tcp(srv.port), tls.client_params())))
    conn:settimeout(3)
    conn:sni("localhost")
    assert(conn:dohandshake())
    return conn
  end

  it("a body sent as a second TLS record right behind the head's is read at once, not at body_timeout", function()
    local result = gsock.queue()
    local srv = https(function(req)
      local t0 = gsock.now()
      local body, err = req:body()
      result:put({ body, err, waited = gsock.now() - t0 })
      return 200, "got " .. tostring(body)
    end, { body_timeout = 2 })
    local conn = tls_connect(srv)
    -- two sends without a yield between them: two records in the server's socket buffer
    assert(conn:send("POST / HTTP/1.1\r\nContent-Length: 5\r\nConnection: close\r\n\r\n"))
    assert(conn:send("hello"))
    local got = result:get(3)
    assert.equals("hello", got[1], tostring(got[2]))
    assert.is_true(got.waited < 0.5, "req:body() waited " .. got.waited .. " s")
    local text = drain(conn)
    assert.truthy(text:find("got hello$"), text)
    srv:stop()
  end)

  it("pipelined requests in separate TLS records of one burst are all answered at once", function()
    local srv = https(function(req) return 200, req.path end, { keepalive_timeout = 2 })
    local conn = tls_connect(srv)
    assert(conn:send("GET /a HTTP/1.1\r\n\r\n"))
    assert(conn:send("GET /b HTTP/1.1\r\n\r\n"))
    assert(conn:send("GET /c HTTP/1.1\r\nConnection: close\r\n\r\n"))
    local t0 = gsock.now()
    local text, err = drain(conn, 3)
    assert.equals("closed", err)
    assert.is_true(gsock.now() - t0 < 1, "answered after " .. (gsock.now() - t0) .. " s")
    local _, answers = text:gsub("HTTP/1.1 200 OK", "")
    assert.equals(3, answers, text)
    assert.truthy(text:find("/c$"), text)
    srv:stop()
  end)

  it("a head: header_timeout answers a partial head with 408 over TLS, then closes", function()
    local srv = https(function() return 200, "x" end, { header_timeout = 0.3 })
    local conn = tls_connect(srv)
    assert(conn:send("GET / HTTP/1.1\r\nHost: a"))
    local t0 = gsock.now()
    local text, err = drain(conn, 3)
    local waited = gsock.now() - t0
    assert.equals("closed", err)
    assert.truthy(text:find("^HTTP/1.1 408 Request Timeout\r\n"), text)
    assert.is_true(waited > 0.2 and waited < 1.5, tostring(waited))
    assert.equals(0, no_connections(srv))
    srv:stop()
  end)

  it("a head: keepalive_timeout closes an idle TLS connection after a response", function()
    local srv = https(function() return 200, "x" end, { keepalive_timeout = 0.3 })
    local conn = tls_connect(srv)
    assert(conn:send("GET / HTTP/1.1\r\n\r\n"))
    assert.equals("HTTP/1.1 200 OK", conn:receive("*l"))
    repeat local line = assert(conn:receive("*l")) until line == ""
    assert.equals("x", conn:receive(1))
    local t0 = gsock.now()
    local rest, err = drain(conn, 3)
    assert.equals("", rest)
    assert.equals("closed", err)
    assert.is_true(gsock.now() - t0 < 1.5)
    assert.equals(0, no_connections(srv))
    srv:stop()
  end)

  it("a body: body_timeout gives the handler nil, 'timeout' over TLS; a retry returns at once; the response says Connection: close", function()
    local result = gsock.queue()
    local srv = https(function(req)
      local t0 = gsock.now()
      local got = { req:body() }
      got.waited = gsock.now() - t0
      t0 = gsock.now()
      got.again = { req:body() }
      got.again_took = gsock.now() - t0
      result:put(got)
      return 200, "late"
    end, { body_timeout = 0.2 })
    local conn = tls_connect(srv)
    assert(conn:send("POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc"))
    local got = failed_with(result, "timeout", 0.15, 1.5)
    assert.same({ nil, "timeout" }, got.again)
    assert.is_true(got.again_took < 0.05)
    local text, err = drain(conn)
    assert.equals("closed", err)
    assert.truthy(text:find("\r\nConnection: close\r\n"), text)
    assert.truthy(text:find("late$"), text)
    srv:stop()
  end)

  it("a body: a peer reset (python3, no close_notify) ends the wait with nil, 'closed' at once", function()
    local result = gsock.queue()
    local srv = https(function(req)
      local t0 = gsock.now()
      local got = { req:body() }
      got.waited = gsock.now() - t0
      result:put(got)
    end, { body_timeout = 5 })
    local client = python_client(srv.port, "reset", "POST / HTTP/1.1\\r\\nContent-Length: 100\\r\\n\\r\\nhello", 0.3)
    local got = failed_with(result, "closed", 0.1, 2)
    assert.equals("reset\n", (client.wait(5)))
    assert.equals(0, no_connections(srv))
    srv:stop()
  end)

  it("a body: killing the request's fiber while it waits closes the TLS connection; the server serves the next", function()
    local handler, waiting = body_waiter()
    local srv = https(handler)
    local conn = tls_connect(srv)
    assert(conn:send("POST /wait HTTP/1.1\r\nContent-Length: 5\r\n\r\n"))
    local f = waiting:get(2)
    gsock.sleep(0.05)
    kill_closes(srv, f, conn, tls_connect(srv))
  end)

  it("100-continue over TLS: the 100 comes when the handler reads; the body that follows is read", function()
    local srv = https(function(req)
      local body, err = req:body()
      return 200, "got " .. tostring(body or err)
    end, { body_timeout = 2 })
    local conn = tls_connect(srv)
    assert(conn:send("POST / HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"))
    assert.equals("HTTP/1.1 100 Continue", conn:receive("*l"))
    assert.equals("", conn:receive("*l"))
    assert(conn:send("hello"))
    local text, err = drain(conn)
    assert.equals("closed", err)
    assert.truthy(text:find("^HTTP/1.1 200 OK\r\n"), text)
    assert.truthy(text:find("got hello$"), text)
    srv:stop()
  end)

  it("a write: res:write waiting on a TLS client that does not read gives nil, 'timeout' at body_timeout; the next write the same at once", function()
    local result = gsock.queue()
    local srv = https(function(req, res)
      local t0 = gsock.now()
      local got = { res:write(BIG) }
      got.waited = gsock.now() - t0
      got.again = { res:write("more") }
      result:put(got)
    end, { body_timeout = 0.3 })
    local conn = tls_connect(srv)
    assert(conn:send("GET / HTTP/1.1\r\n\r\n"))
    local got = failed_with(result, "timeout", 0.25, 2)
    assert.same({ nil, "timeout" }, got.again)
    local text, err = drain(conn, 5)
    assert.equals("closed", err)
    assert.is_true(#text < #BIG)
    assert.equals(0, no_connections(srv))
    srv:stop()
  end)

  it("a write: res:write waiting on a TLS client that reads late completes and the client gets the whole body", function()
    local result = gsock.queue()
    local big = ("t"):rep(4 * 1024 * 1024)
    local srv = https(function(req, res)
      res.headers["Content-Length"] = #big
      local t0 = gsock.now()
      local ok, err = res:write(big)
      result:put({ ok, err, waited = gsock.now() - t0 })
    end, { body_timeout = 3 })
    local conn = tls_connect(srv)
    assert(conn:send("GET / HTTP/1.1\r\nConnection: close\r\n\r\n"))
    gsock.sleep(0.3)
    local text, err = drain(conn, 5)
    assert.equals("closed", err)
    local got = result:get(2)
    assert.is_true(got[1], tostring(got[2]))
    local body = text:match("\r\n\r\n(.*)$") or ""
    assert.equals(#big, #body)
    srv:stop()
  end)

  it("upgrade over TLS: the handed-over socket is the TLS connection: a receive waits for the line, then echoes it", function()
    local result = gsock.queue()
    local srv = https(function(req, res)
      res.status = 101
      res.headers.Upgrade = "test"
      res.headers.Connection = "Upgrade"
      local sock = assert(res:upgrade())
      sock:settimeout(2)
      local t0 = gsock.now()
      local line, err = sock:receive("*l")
      result:put({ line, err, waited = gsock.now() - t0 })
      if line then sock:send("echo " .. line .. "\n") end
    end)
    local conn = tls_connect(srv)
    assert(conn:send("GET /up HTTP/1.1\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\n"))
    assert.equals("HTTP/1.1 101 Switching Protocols", conn:receive("*l"))
    repeat local line = assert(conn:receive("*l")) until line == ""
    gsock.sleep(0.2)
    assert(conn:send("ping\n"))
    local got = result:get(3)
    assert.equals("ping", got[1], tostring(got[2]))
    assert.is_true(got.waited >= 0.15)
    assert.equals("echo ping", conn:receive("*l"))
    srv:stop()
  end)

  it("upgrade over TLS: gsock.wait_read(sock), select and receiveany return at once for what came with the head (SPEC §10: data already decrypted)", function()
    local result = gsock.queue()
    local srv = https(upgrade_and_time(result, function(sock) return sock:receiveany(100) end))
    local conn = tls_connect(srv)
    assert(conn:send("GET /up HTTP/1.1\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\nearly\n"))
    local got = result:get(5)
    assert.equals("early\n", got.data)
    assert.is_true(got.ok, got.e)
    assert.is_true(got.waited < 0.5, ("wait_read waited %.2f s for decrypted bytes"):format(got.waited))
    assert.equals(1, got.n)
    assert.is_true(got.selected < 0.5, ("select waited %.2f s for decrypted bytes"):format(got.selected))
    assert.is_true(got.read_took < 0.5)
    srv:stop()
  end)

  it("a handshake: a client stalled after part of its ClientHello is closed at handshake_timeout (0.3 s), not header_timeout (5 s)", function()
    local srv = https(function() return 200, "x" end, { header_timeout = 5 })
    srv:stop()
    local opts = { header_timeout = 5,
                   tls = { cert = tls.certs.localhost.cert, key = tls.certs.localhost.key, handshake_timeout = 0.3 } }
    srv = gsock.http.server("127.0.0.1:0", function() return 200, "x" end, opts):start()
    local _, port = srv.listeners[1]:getsockname()
    local s = tls.tcp(tonumber(port))
    assert(s:send(tls.client_hello(20)))
    local t0 = gsock.now()
    s:settimeout(3)
    local _, err = s:receive("*a")
    local took = gsock.now() - t0
    assert.truthy(err == nil or err == "closed", tostring(err))
    assert.is_true(took > 0.2 and took < 1.5, ("closed after %.2f s"):format(took))
    assert.equals(0, no_connections(srv))
    srv:stop()
  end)

  it("a handshake: a client that resets mid-handshake is freed at once; the server serves the next", function()
    local srv = https(function() return 200, "next" end, { header_timeout = 5 })
    local s = tls.tcp(srv.port)
    assert(s:send(tls.client_hello(20)))
    gsock.sleep(0.1)
    reset(s)
    assert.equals(0, no_connections(srv, 1))
    local d = tls_connect(srv)
    assert(d:send("GET / HTTP/1.1\r\nConnection: close\r\n\r\n"))
    assert.truthy((drain(d)):find("next$"))
    srv:stop()
  end)

  it("a head: an idle keep-alive TLS connection whose client resets (python3, no close_notify) is freed at once", function()
    local srv = https(function() return 200, "x" end, { keepalive_timeout = 10 })
    local client = python_client(srv.port, "reset", "GET / HTTP/1.1\\r\\n\\r\\n", 0.3)
    local out, err = client.wait(5)
    assert.equals("reset\n", out, tostring(err))
    assert.equals(0, no_connections(srv, 1), "the reset keep-alive connection is still held")
    srv:stop()
  end)

  it("a write: after a reset under a waiting res:write over TLS, 100 more writes give the same error at once", function()
    local result = gsock.queue()
    local srv = https(function(req, res)
      local got = { res:write(BIG) }
      local t0, cpu0 = gsock.now(), tls.cpu()
      for i = 1, 100 do
        local ok, err = res:write("more")
        if ok ~= nil or err ~= got[2] then got.bad = { i, ok, err } break end
      end
      got.seconds, got.cpu = gsock.now() - t0, tls.cpu() - cpu0
      result:put(got)
    end, { body_timeout = 5 })
    local client = python_client(srv.port, "reset", "GET / HTTP/1.1\\r\\n\\r\\n", 0.3)
    local got = result:get(4)
    assert.is_nil(got[1])
    assert.equals("closed", got[2])
    assert.is_nil(got.bad)
    assert.is_true(got.seconds < 0.1)
    client.wait(5)
    assert.equals(0, no_connections(srv))
    srv:stop()
  end)

  it("upgrade over TLS: a close from another fiber wakes the waiting receive with nil, 'closed'", function()
    local result = gsock.queue()
    local srv = https(function(req, res)
      res.status = 101
      res.headers.Upgrade = "test"
      local sock = assert(res:upgrade())
      sock:settimeout(3)
      gsock.spawn(function() gsock.sleep(0.1) sock:close() end)
      local t0 = gsock.now()
      local line, err = sock:receive("*l")
      result:put({ line, err, waited = gsock.now() - t0 })
    end)
    local conn = tls_connect(srv)
    assert(conn:send("GET /up HTTP/1.1\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\n"))
    failed_with(result, "closed", 0.05, 1.5)
    local _, err = drain(conn)
    assert.equals("closed", err)
    assert.equals(0, no_connections(srv))
    srv:stop()
  end)
end)
