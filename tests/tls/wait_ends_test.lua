-- The TLS cells of "every wait, every way it can end" that wait_matrix_test.lua,
-- send_waits_test.lua, server_handshake_test.lua and sslhandshake_test.lua leave out
-- (SPEC §3, §10): gsock.wait_read on a TLS conn (SPEC §10 names it), a server-side
-- dohandshake ended by a close from another fiber, a kill or a reset, what a conn is
-- after its handshake's fiber was killed, and retry loops after a reset, a close and a
-- timed-out handshake (each must give its error again at once: no spin, no hang).
local gsock = require "gsock"
local socket = require "socket"
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/tls/"
local tls = dofile(here .. "support/tls.lua")
local ssl = tls.load_ssl()

local T = 3
local SHORT = 0.2

setup(tls.setup)
teardown(tls.teardown)
after_each(tls.cleanup)

local function kind_of(e) return type(e) == "table" and e.kind or nil end

-- A handshaken client of the python echo peer, after one round trip (the TLS 1.3 tickets
-- are read: the descriptor is not readable without application data).
local function echo_client()
  local conn, tcp = tls.client("echo")
  tls.track(tcp)
  assert.equals(5, conn:send("sync\n"))
  assert.equals("sync", conn:receive("*l"))
  return conn
end

--- Runs wait(limit) in a fiber; after 0.05 s (it must still wait) runs end_it(fiber);
--- returns pcall's packed results and the seconds from end_it to the fiber's end.
local function ended(wait, limit, end_it)
  local result
  local f = tls.spawn(function() result = table.pack(pcall(wait, limit)) end)
  gsock.sleep(0.05)
  assert.is_nil(result, "the wait ended before its ending: " .. tostring(result and result[2]))
  local t0 = tls.now()
  end_it(f)
  assert.is_true(f:join(T), "the wait did not end " .. T .. " s after its ending")
  local took = gsock.now() - t0
  assert.is_not_nil(result, "the waiter ended without a result: " .. tostring(f.error))
  return result, took
end

describe("gsock.wait_read(conn) on a TLS connection, every ending (SPEC §3 on a §10 conn)", function()
  before_each(tls.ready)

  it("data: returns (true) when a record arrives; the receive then has the line", function()
    local conn = echo_client()
    local r, took = ended(function(t) return gsock.wait_read(conn, t) end, T, function()
      conn:send("line\n")
    end)
    assert.is_true(r[1], tostring(r[2]))
    assert.is_true(took < 1, tostring(took))
    conn:settimeout(1)
    assert.equals("line", conn:receive("*l"))
  end)

  it("timeout: raises the timeout error after about the timeout", function()
    local conn = echo_client()
    local r, took = ended(function(t) return gsock.wait_read(conn, t) end, SHORT, function() end)
    assert.is_false(r[1], "wait_read returned")
    assert.is_true(gsock.is_timeout(r[2]), tostring(r[2]))
    assert.is_true(took >= SHORT - 0.1 and took < 1, tostring(took))
  end)

  it("close from another fiber: raises kind 'closed', EBADF, 'File descriptor was closed in another fiber'", function()
    local conn = echo_client()
    local r, took = ended(function(t) return gsock.wait_read(conn, t) end, T, function() conn:close() end)
    assert.is_false(r[1], "wait_read returned after its conn was closed")
    assert.equals("closed", kind_of(r[2]), tostring(r[2]))
    assert.equals(9, r[2].errno)
    assert.equals("File descriptor was closed in another fiber", r[2].message)
    assert.is_true(took < 1)
  end)

  it("kill: raises 'killed' in the waiting fiber; the conn still works after", function()
    local conn = echo_client()
    local r, took = ended(function(t) return gsock.wait_read(conn, t) end, T, function(f) f:kill() end)
    assert.is_false(r[1])
    assert.equals("killed", kind_of(r[2]), tostring(r[2]))
    assert.is_true(took < 1)
    conn:settimeout(2)
    assert.equals(6, conn:send("after\n"))
    assert.equals("after", conn:receive("*l"))
  end)

  it("reset: returns (readable); the receive then says nil, 'closed'", function()
    local conn = echo_client()
    local r, took = ended(function(t) return gsock.wait_read(conn, t) end, T, function() conn:send("RESET\n") end)
    assert.is_true(r[1], tostring(r[2]))
    assert.is_true(took < 1)
    conn:settimeout(1)
    local data, err = conn:receive("*l")
    assert.is_nil(data)
    assert.equals("closed", err)
  end)

  it("a retry loop after the peer's reset ends: wait_read returns at once, receive says 'closed', 100 times in well under a second", function()
    local conn = echo_client()
    conn:send("RESET\n")
    conn:settimeout(2)
    local d0, e0 = conn:receive("*l")
    assert.is_nil(d0)
    assert.equals("closed", e0)
    local t0, cpu0 = tls.now(), tls.cpu()
    for i = 1, 100 do
      local ok, e = pcall(gsock.wait_read, conn, 1)
      if not ok then
        -- after the reset closed nothing on our side: a readable EOF, or an error, never a timeout
        assert.is_false(gsock.is_timeout(e), "retry " .. i .. " waited for its timeout")
      end
      local data, err = conn:receive("*l")
      assert.is_nil(data)
      assert.equals("closed", err)
    end
    assert.is_true(tls.now() - t0 < 0.5, "100 retries took " .. (tls.now() - t0) .. " s")
    assert.is_true(tls.cpu() - cpu0 < 0.3)
  end)

  it("on a conn closed by close(): wait_read raises at once (no hang), 100 times", function()
    local conn = echo_client()
    conn:close()
    local t0 = tls.now()
    for i = 1, 100 do
      local ok, e = pcall(gsock.wait_read, conn, 1)
      assert.is_false(ok, "retry " .. i .. ": wait_read returned on a closed conn")
      assert.is_false(gsock.is_timeout(e), "retry " .. i .. " hung until its timeout")
    end
    assert.is_true(tls.now() - t0 < 0.5)
  end)
end)

describe("gsock.wait_write(conn) on a TLS connection whose peer does not read, every ending", function()
  before_each(tls.ready)

  local BIG = ("w"):rep(32 * 1024 * 1024)

  --- A pair whose client end's send buffers are full (a send timed out part way).
  local function full_pair()
    local conn, server = tls.pair()
    conn:settimeout(0.2)
    local n, err, last = conn:send(BIG)
    assert.is_nil(n)
    assert.equals("wantwrite", err)
    assert.is_true(last > 0)
    return conn, server
  end

  it("data: returns when the peer starts reading", function()
    local conn, server = full_pair()
    local r, took = ended(function(t) return gsock.wait_write(conn, t) end, T, function()
      tls.spawn(function()
        server:settimeout(1)
        while server:receive(65536) do end
      end)
    end)
    assert.is_true(r[1], tostring(r[2]))
    assert.is_true(took < 1)
  end)

  it("timeout: raises the timeout error", function()
    local conn = full_pair()
    local r, took = ended(function(t) return gsock.wait_write(conn, t) end, SHORT, function() end)
    assert.is_false(r[1], "wait_write returned on a full socket")
    assert.is_true(gsock.is_timeout(r[2]), tostring(r[2]))
    assert.is_true(took >= SHORT - 0.1 and took < 1)
  end)

  it("close from another fiber: raises kind 'closed', EBADF", function()
    local conn = full_pair()
    local r, took = ended(function(t) return gsock.wait_write(conn, t) end, T, function() conn:close() end)
    assert.is_false(r[1])
    assert.equals("closed", kind_of(r[2]), tostring(r[2]))
    assert.equals(9, r[2].errno)
    assert.is_true(took < 1)
  end)

  it("kill: raises 'killed' in the waiting fiber", function()
    local conn = full_pair()
    local r, took = ended(function(t) return gsock.wait_write(conn, t) end, T, function(f) f:kill() end)
    assert.is_false(r[1])
    assert.equals("killed", kind_of(r[2]), tostring(r[2]))
    assert.is_true(took < 1)
  end)

  it("reset: returns (the descriptor is writable: the send then fails)", function()
    local conn, server = full_pair()
    local r, took = ended(function(t) return gsock.wait_write(conn, t) end, T, function()
      server:setoption("linger", { on = true, timeout = 0 })
      server:close()
    end)
    assert.is_true(r[1], tostring(r[2]))
    assert.is_true(took < 1)
    local n, err = conn:send("x")
    assert.is_nil(n)
    assert.equals("string", type(err))
  end)
end)

describe("a server-side dohandshake, ended every way (ssl.wrap in mode 'server')", function()
  before_each(tls.ready)

  --- The client end (a raw TCP socket) and the server's TLS conn, not handshaken.
  local function server_conn()
    local client, peer = tls.raw_pair()
    local s = tls.track(assert(ssl.wrap(peer, tls.server_params())))
    return client, s
  end

  local function handshake(s) return function(t) s:settimeout(t) return s:dohandshake() end end

  it("data: a gsockd client handshakes: true", function()
    local client, s = server_conn()
    local r = ended(handshake(s), T, function()
      tls.spawn(function()
        local c = tls.track(assert(ssl.wrap(client, tls.client_params())))
        c:settimeout(T)
        c:sni("localhost")
        c:dohandshake()
      end)
    end)
    assert.is_true(r[1], tostring(r[2]))
    assert.is_true(r[2], tostring(r[3]))
  end)

  it("close from another fiber: false, 'closed', at once", function()
    local _, s = server_conn()
    local r, took = ended(handshake(s), T, function() s:close() end)
    assert.is_true(r[1], "dohandshake raised: " .. tostring(r[2]))
    assert.is_false(r[2])
    assert.equals("closed", r[3])
    assert.is_true(took < 1)
  end)

  it("kill: 'killed' in the fiber; a receive on the half-shaken conn then gets no data", function()
    local client, s = server_conn()
    local r, took = ended(handshake(s), T, function(f) f:kill() end)
    assert.is_false(r[1])
    assert.equals("killed", kind_of(r[2]), tostring(r[2]))
    assert.is_true(took < 1)
    -- no code runs on the half-done handshake: a receive on the server conn gets no data
    s:settimeout(SHORT)
    local data, err = s:receive("*l")
    assert.is_nil(data)
    assert.equals("string", type(err))
  end)

  it("reset by the client mid-handshake (after its ClientHello's first bytes): false and a reason, at once", function()
    local client, s = server_conn()
    local hello_start = "\22\3\1\0\200" .. ("\0"):rep(20)   -- a handshake record's header and some of it
    local r, took = ended(handshake(s), T, function()
      client:send(hello_start)
      gsock.sleep(0.05)
      client:setoption("linger", { on = true, timeout = 0 })
      client:close()
    end)
    assert.is_true(r[1], "dohandshake raised: " .. tostring(r[2]))
    assert.is_false(r[2])
    assert.equals("string", type(r[3]))
    assert.is_true(took < 1, tostring(took))
  end)

  it("a retry loop after close(): 100 dohandshakes give false, 'closed' at once", function()
    local _, s = server_conn()
    s:close()
    local t0 = tls.now()
    for i = 1, 100 do
      local ok, err = s:dohandshake()
      assert.is_false(ok, "retry " .. i)
      assert.equals("closed", err)
    end
    assert.is_true(tls.now() - t0 < 0.5)
  end)
end)

describe("a client conn whose handshake's fiber was killed", function()
  before_each(tls.ready)

  it("dohandshake again against the stalled peer ends by its timeout or at once, never true, never a spin; receive and send never succeed", function()
    local conn = tls.wrap_client("stall")
    conn:sni("localhost")
    local f = tls.spawn(function()
      conn:settimeout(T)
      conn:dohandshake()
    end)
    gsock.sleep(0.1)
    f:kill()
    assert.is_true(f:dead())
    conn:settimeout(SHORT)
    local cpu0 = tls.cpu()
    for i = 1, 3 do
      local t0 = tls.now()
      local ok, err = conn:dohandshake()
      local took = tls.now() - t0
      assert.is_false(ok, "retry " .. i .. " finished a handshake with a stalled peer")
      assert.equals("string", type(err))
      assert.is_true(took < SHORT + 0.5, ("retry %d took %.2f s"):format(i, took))
    end
    local data, rerr = conn:receive("*l")
    assert.is_nil(data)
    assert.equals("string", type(rerr))
    local n, serr = conn:send("plain?\n")
    assert.is_nil(n, "send succeeded on a conn without a handshake")
    assert.equals("string", type(serr))
    assert.is_true(tls.cpu() - cpu0 < 0.3)
  end)
end)

describe("a plain socket whose sslhandshake's fiber was killed", function()
  before_each(tls.ready)

  it("sslhandshake again against the stalled peer ends by its timeout or at once with nil and an error, never a session; no spin", function()
    local sock = tls.tcp(tls.peer("stall").port)
    local f = tls.spawn(function()
      sock:settimeout(T)
      sock:sslhandshake(false, "localhost", false)
    end)
    gsock.sleep(0.1)
    f:kill()
    assert.is_true(f:dead())
    sock:settimeout(SHORT)
    local cpu0 = tls.cpu()
    for i = 1, 3 do
      local t0 = tls.now()
      local r, err = sock:sslhandshake(false, "localhost", false)
      local took = tls.now() - t0
      assert.is_nil(r, "retry " .. i .. " finished a handshake with a stalled peer")
      assert.equals("string", type(err))
      assert.is_true(took < SHORT + 0.5, ("retry %d took %.2f s"):format(i, took))
    end
    assert.is_true(tls.cpu() - cpu0 < 0.3)
  end)
end)

describe("TLS retry loops the other files leave out", function()
  before_each(tls.ready)

  it("after the peer's reset, 100 receives return nil, 'closed' at once", function()
    local conn = echo_client()
    conn:send("RESET\n")
    conn:settimeout(2)
    local t0 = tls.now()
    local data, err = conn:receive("*l")
    assert.is_nil(data)
    assert.equals("closed", err)
    assert.is_true(tls.now() - t0 < 1)
    t0 = tls.now()
    local cpu0 = tls.cpu()
    for i = 1, 100 do
      local d, e = conn:receive("*l")
      assert.is_nil(d, "retry " .. i)
      assert.equals("closed", e)
    end
    assert.is_true(tls.now() - t0 < 0.5)
    assert.is_true(tls.cpu() - cpu0 < 0.3)
  end)

  it("after the peer's reset under a waiting send, 100 sends return nil and the same error at once", function()
    local conn, server = tls.pair()
    conn:settimeout(5)
    local big = ("r"):rep(32 * 1024 * 1024)
    local result
    local f = tls.spawn(function() result = table.pack(conn:send(big)) end)
    gsock.sleep(0.1)
    assert.is_nil(result, "the send did not wait")
    server:setoption("linger", { on = true, timeout = 0 })
    server:close()
    assert.is_true(f:join(2))
    assert.is_nil(result[1])
    local first = result[2]
    assert.equals("string", type(first))
    local t0, cpu0 = tls.now(), tls.cpu()
    for i = 1, 100 do
      local n, err = conn:send("again")
      assert.is_nil(n, "retry " .. i .. " sent")
      assert.equals(first == "closed" and "closed" or "string", first == "closed" and err or type(err))
    end
    assert.is_true(tls.now() - t0 < 0.5, "100 retries took " .. (tls.now() - t0) .. " s")
    assert.is_true(tls.cpu() - cpu0 < 0.3)
  end)

  it("sslhandshake timed out against a stalled peer: the socket is closed; 50 retries return nil and an error at once", function()
    local sock = tls.tcp(tls.peer("stall").port)
    sock:settimeout(SHORT)
    local t0 = tls.now()
    local r, err = sock:sslhandshake(false, "localhost", false)
    local took = tls.now() - t0
    assert.is_nil(r)
    assert.truthy(err == "timeout" or err == "wantread", tostring(err))
    assert.is_true(took >= SHORT - 0.1 and took < 1, tostring(took))
    t0 = tls.now()
    local cpu0 = tls.cpu()
    for i = 1, 50 do
      local again, aerr = sock:sslhandshake(false, "localhost", false)
      assert.is_nil(again, "retry " .. i .. " succeeded")
      assert.equals("closed", aerr)   -- SPEC §10: a handshake that times out closes the connection
    end
    assert.is_true(tls.now() - t0 < 0.5, "50 retries took " .. (tls.now() - t0) .. " s")
    assert.is_true(tls.cpu() - cpu0 < 0.3)
    local data, rerr = sock:receive()
    assert.is_nil(data)
    assert.equals("closed", rerr)
  end)

  it("a TLS service's handler waiting in receive is killed by stop(timeout); the client sees the connection closed", function()
    local waiting = gsock.queue()
    local srv = gsock.server("127.0.0.1:0", function(sock)
      waiting:put(gsock.current())
      sock:receive("*l")
      sock:send("never\n")
    end, { tls = { cert = tls.certs.localhost.cert, key = tls.certs.localhost.key } })
    srv:start()
    local _, port = srv.listeners[1]:getsockname()
    local conn = tls.track(assert(ssl.wrap(tls.tcp(tonumber(port)), tls.client_params())))
    conn:settimeout(3)
    conn:sni("localhost")
    assert(conn:dohandshake())
    local f = waiting:get(2)
    local t0 = tls.now()
    srv:stop(0.2)
    assert.is_true(tls.now() - t0 < 1.5)
    assert.is_true(f:dead())
    local data, err = conn:receive("*l")
    assert.is_nil(data)
    assert.equals("closed", err)
  end)
end)

describe("TLS waits ended by a kill or a gsock.timeout with an error of the caller's (SPEC §2)", function()
  before_each(tls.ready)

  it("kill('custom') of a fiber waiting in a TLS receive raises 'custom' there: the code after the receive does not run", function()
    local conn = echo_client()
    local after
    local r, took = ended(function(t) conn:settimeout(t) local d, e = conn:receive("*l") after = { d, e } end, T,
      function(f) f:kill("custom") end)
    assert.is_false(r[1], "the receive returned: " .. tostring(after and after[2]))
    assert.equals("custom", r[2])
    assert.is_nil(after)
    assert.is_true(took < 1)
  end)

  it("kill('custom') of a fiber waiting in dohandshake raises 'custom' there", function()
    local conn = tls.wrap_client("stall")
    conn:sni("localhost")
    local r, took = ended(function(t) conn:settimeout(t) return conn:dohandshake() end, T,
      function(f) f:kill("custom") end)
    assert.is_false(r[1], "dohandshake returned " .. tostring(r[2]) .. ", " .. tostring(r[3]))
    assert.equals("custom", r[2])
    assert.is_true(took < 1)
  end)

  it("gsock.timeout(0.2, 'deadline') around a TLS receive raises 'deadline' at the wait", function()
    local conn = echo_client()
    conn:settimeout(T)
    local t0 = tls.now()
    local ok, e = pcall(function()
      local t <close> = gsock.timeout(SHORT, "deadline")
      return conn:receive("*l")
    end)
    assert.is_false(ok, "the receive returned " .. tostring(e))
    assert.equals("deadline", e)
    assert.is_true(tls.now() - t0 < 1)
  end)

  it("gsock.timeout(0.2, 'deadline') around sslhandshake with a stalled peer raises 'deadline'", function()
    local sock = tls.tcp(tls.peer("stall").port)
    sock:settimeout(T)
    local ok, e = pcall(function()
      local t <close> = gsock.timeout(SHORT, "deadline")
      return sock:sslhandshake(false, "localhost", false)
    end)
    assert.is_false(ok, "sslhandshake returned " .. tostring(e))
    assert.equals("deadline", e)
  end)
end)
