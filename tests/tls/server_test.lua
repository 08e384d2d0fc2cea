-- TLS servers with `ssl.wrap(accepted, {mode = "server", ...})`, both ends in gsockd
-- (SPEC §10): one fiber accepts, wraps and handshakes, another is the client.
local gsock = require "gsock"
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/tls/"
local tls = dofile(here .. "support/tls.lua")
local ssl = tls.load_ssl()


setup(tls.setup)
teardown(tls.teardown)
after_each(tls.cleanup)

--- A listener whose accept fiber wraps each connection with `server_params`, runs
--- dohandshake and then `handle(conn)` (if the handshake succeeded). Returns the port
--- and a table of results: { ok =, err =, conn = } per connection, in order.
local function serve(server_params, handle)
  local srv, port = tls.listen()
  local results = {}
  tls.spawn(function()
    while true do
      local a = srv:accept()
      if not a then return end
      tls.track(a)
      local r = {}
      results[#results + 1] = r
      tls.spawn(function()
        local conn, err = ssl.wrap(a, server_params)
        if not conn then r.ok, r.err = false, "wrap: " .. tostring(err) return end
        tls.track(conn)
        conn:settimeout(5)
        r.conn = conn
        r.ok, r.err = conn:dohandshake()
        if r.ok and handle then handle(conn, r) end
        r.done = true
      end)
    end
  end)
  return port, results
end

local function connect(port, params)
  local conn = tls.track(assert(ssl.wrap(tls.tcp(port), tls.client_params(params))))
  conn:settimeout(5)
  conn:sni("localhost")
  return conn
end

local function wait_for(fn, limit)
  local deadline = tls.now() + (limit or 3)
  while not fn() do
    if tls.now() > deadline then return false end
    gsock.sleep(0.01)
  end
  return true
end

describe("a TLS server in gsockd", function()
  before_each(tls.ready)

  it("handshakes with a gsockd client and echoes lines", function()
    local port, results = serve(tls.server_params(), function(conn)
      while true do
        local line = conn:receive("*l")
        if not line then return end
        conn:send(line .. "\n")
      end
    end)
    local conn = connect(port)
    local ok, err = conn:dohandshake()
    assert.is_true(ok, tostring(err))
    assert.is_true(conn:getpeerverification())
    for i = 1, 5 do
      assert.equals(#("line" .. i) + 1, conn:send("line" .. i .. "\n"))
      assert.equals("line" .. i, conn:receive("*l"))
    end
    assert.is_true(wait_for(function() return results[1] and results[1].ok ~= nil end))
    assert.is_true(results[1].ok, tostring(results[1].err))
    assert.matches("^SSL connection: 0x%x+", tostring(results[1].conn))
  end)

  it("both ends see the same protocol and cipher in info()", function()
    local port, results = serve(tls.server_params())
    local conn = connect(port)
    assert.is_true(conn:dohandshake())
    assert.is_true(wait_for(function() return results[1] and results[1].ok ~= nil end))
    local s = results[1].conn
    assert.equals("TLSv1.3", conn:info("protocol"))
    assert.equals(conn:info("protocol"), s:info("protocol"))
    assert.equals(conn:info("cipher"), s:info("cipher"))
  end)

  it("a server with alpn = {'h2', 'http/1.1'} gives the client's choice to both ends", function()
    local port, results = serve(tls.server_params({ alpn = { "h2", "http/1.1" } }))
    local conn = connect(port, { alpn = { "http/1.1" } })
    assert.is_true(conn:dohandshake())
    assert.equals("http/1.1", conn:getalpn())
    assert.is_true(wait_for(function() return results[1] and results[1].ok ~= nil end))
    assert.equals("http/1.1", results[1].conn:getalpn())
  end)

  it("the client's SNI name is the server's getsniname()", function()
    local port, results = serve(tls.server_params())
    local conn = connect(port)
    assert.is_true(conn:dohandshake())
    assert.is_true(wait_for(function() return results[1] and results[1].ok ~= nil end))
    assert.equals("localhost", results[1].conn:getsniname())
  end)

  it("a client that does not trust the server's certificate fails; the server's handshake fails too", function()
    local port, results = serve(tls.server_params({ certificate = tls.certs.self_signed.cert,
      key = tls.certs.self_signed.key }))
    local conn = connect(port)
    local ok, err = conn:dohandshake()
    assert.is_false(ok)
    assert.matches("^certificate verify failed", err)
    assert.is_true(wait_for(function() return results[1] and results[1].ok ~= nil end))
    assert.is_false(results[1].ok)
    assert.equals("string", type(results[1].err))
  end)

  it("mTLS: verify = {'peer', 'fail_if_no_peer_cert'} with cafile accepts the client certificate and sees its subject", function()
    local c = tls.certs
    local params = tls.server_params({ cafile = c.ca.cert, verify = { "peer", "fail_if_no_peer_cert" } })
    local port, results = serve(params)
    local conn = connect(port, { certificate = c.client.cert, key = c.client.key })
    assert.is_true(conn:dohandshake())
    assert.is_true(wait_for(function() return results[1] and results[1].ok ~= nil end))
    assert.is_true(results[1].ok, tostring(results[1].err))
    local s = results[1].conn
    assert.is_true(s:getpeerverification())
    local cert = assert(s:getpeercertificate())
    local cn
    for _, entry in ipairs(cert:subject()) do
      if entry.name == "commonName" or entry.oid == "2.5.4.3" then cn = entry.value end
    end
    assert.equals("gsockd-test-client", cn)
  end)

  it("mTLS: a client without a certificate is refused", function()
    local c = tls.certs
    local params = tls.server_params({ cafile = c.ca.cert, verify = { "peer", "fail_if_no_peer_cert" } })
    local port, results = serve(params)
    local conn = connect(port)
    local ok = conn:dohandshake()
    if ok then
      -- TLS 1.3: the client's handshake ends before the server checks; the alert comes next
      conn:send("x\n")
      local data, err = conn:receive("*l")
      assert.is_nil(data)
      assert.equals("string", type(err))
    end
    assert.is_true(wait_for(function() return results[1] and results[1].ok ~= nil end))
    assert.is_false(results[1].ok)
  end)

  it("a stalled client does not hold up other clients: the server handshakes them meanwhile", function()
    local port, results = serve(tls.server_params())
    local stalled = tls.tcp(port)                 -- TCP only, never a ClientHello
    gsock.sleep(0.05)
    local conn = connect(port)
    local t0 = tls.now()
    assert.is_true(conn:dohandshake())
    assert.is_true(tls.now() - t0 < 1)
    stalled:close()
    assert.equals(2, #results)
  end)

  it("a server handshake with settimeout(0.2) against a silent client ends with false, 'wantread' (oracle), "
    .. "then the client sees the connection closed (SPEC, not LuaSec)", function()
    local srv, port = tls.listen()
    local c = tls.tcp(port)
    srv:settimeout(2)
    local a = tls.track(assert(srv:accept()))
    local conn = tls.track(assert(ssl.wrap(a, tls.server_params())))
    conn:settimeout(0.2)
    local t0 = tls.now()
    local ok, err = conn:dohandshake()
    assert.is_false(ok)
    assert.equals("wantread", err)
    assert.is_true(tls.now() - t0 < 0.6)
    c:settimeout(1)
    t0 = tls.now()
    local data, rerr = c:receive("*a")           -- the server closed the connection (SPEC)
    -- LuaSocket: "*a" with no data before EOF is nil, "closed"
    assert.is_nil(data)
    assert.equals("closed", rerr)
    assert.is_true(tls.now() - t0 < 0.5)
  end)
end)
