-- OpenResty's sock:sslhandshake on plain `socket.tcp()` objects (SPEC §10): after it
-- the same object speaks TLS, so cosocket-style libraries run unchanged.
local socket = require "socket"
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/tls/"
local tls = dofile(here .. "support/tls.lua")

setup(tls.setup)
teardown(tls.teardown)
after_each(tls.cleanup)

describe("sock:sslhandshake", function()
  before_each(tls.ready)

  it("(nil, 'localhost', false) returns a session object; send and receive on the same object then speak TLS", function()
    local sock = tls.tcp(tls.peer("echo").port)
    local session, err = sock:sslhandshake(nil, "localhost", false)
    assert.is_not_nil(session, tostring(err))
    assert.are_not.equal(true, session)
    assert.are_not.equal(false, session)
    assert.equals(6, sock:send("hello\n"))
    assert.equals("hello", sock:receive("*l"))
    sock:send("VERSION\n")
    assert.matches("^TLSv1%.[23]$", sock:receive("*l"))     -- the peer answered over TLS
    sock:send("BURST\n")
    assert.equals("one", sock:receive("*l"))
    assert.equals("two", sock:receive("*l"))
    assert.equals("three", sock:receive("*l"))
  end)

  it("(false, ...) returns true (OpenResty: no session wanted)", function()
    local sock = tls.tcp(tls.peer("echo").port)
    local r, err = sock:sslhandshake(false, "localhost", false)
    assert.is_true(r, tostring(err))
    sock:send("x\n")
    assert.equals("x", sock:receive("*l"))
  end)

  it("a session from one handshake can be passed to the next", function()
    local first = tls.tcp(tls.peer("echo").port)
    local session = assert(first:sslhandshake(nil, "localhost", false))
    first:send("a\n")
    assert.equals("a", first:receive("*l"))      -- TLS 1.3 tickets arrive with the first data
    local second = tls.tcp(tls.peer("echo").port)
    local again, err = second:sslhandshake(session, "localhost", false)
    assert.is_not_nil(again, tostring(err))
    second:send("b\n")
    assert.equals("b", second:receive("*l"))
  end)

  it("with ssl_verify = true against the system store (which lacks the test CA) returns nil and the reason", function()
    -- (SSL_CERT_FILE may name the system bundle here: it lacks the fresh test CA too)
    local sock = tls.tcp(tls.peer("echo").port)
    local r, err = sock:sslhandshake(nil, "localhost", true)
    assert.is_nil(r)
    assert.equals("string", type(err))
    assert.truthy(err:find("unable to get local issuer certificate", 1, true), err)
    local data, rerr = sock:receive()
    assert.is_nil(data)
    assert.equals("closed", rerr)                 -- SPEC: closed after a failed handshake
  end)

  it("(nil, 'localhost', true) with SSL_CERT_FILE = the test CA verifies, then send/receive on the same object "
    .. "(a gsockd subprocess); a wrong server_name fails with 'host name mismatch'", function()
    local r = tls.run([[
local socket = require "socket"
local port, name = ...
local sock = assert(socket.tcp())
sock:settimeout(3)
assert(sock:connect("127.0.0.1", tonumber(port)))
local session, err = sock:sslhandshake(nil, name, true)
print("handshake", type(session), err)
if session then
  print("send", sock:send("over tls\n"))
  print("receive", sock:receive("*l"))
end
]], { SSL_CERT_FILE = tls.certs.ca.cert }, { tostring(tls.peer("echo").port), "localhost" })
    assert.equals(0, r.status, r.output)
    assert.matches("handshake\t%a+\tnil\n", r.stdout, r.output)
    assert.is_nil(r.stdout:find("handshake\tnil", 1, true), r.output)
    assert.matches("\nsend\t9[.0]*\t", r.stdout, r.output)          -- oracle: LuaSec's send gives 9.0, nil, nil
    assert.matches("\nreceive\tover tls\t", r.stdout, r.output)

    local bad = tls.run([[
local socket = require "socket"
local port = ...
local sock = assert(socket.tcp())
sock:settimeout(3)
assert(sock:connect("127.0.0.1", tonumber(port)))
print("handshake", sock:sslhandshake(nil, "wrong.example", true))
]], { SSL_CERT_FILE = tls.certs.ca.cert }, { tostring(tls.peer("echo").port) })
    assert.equals(0, bad.status, bad.output)
    assert.matches("^handshake\tnil\t", bad.stdout)
    assert.truthy(bad.stdout:find("host name mismatch", 1, true), bad.output)
    assert.truthy(bad.stdout:find("'wrong.example'", 1, true), bad.output)
  end)

  it("send_status_req (the 4th argument) asks the server for a stapled OCSP response; without it none is asked "
    .. "(openssl s_server -status_verbose tells)", function()
    local peer = tls.peer("s_server_status")
    local function stdout()   -- (s_server says it on its stderr)
      return peer.stderr()
    end
    -- (A server name of its own each: a session resumed from an earlier handshake to the
    -- same name would have the server send no certificate, and so no status.)
    local function handshake(name, ...)
      local sock = tls.tcp(peer.port)
      local session, err = sock:sslhandshake(nil, name, false, ...)
      assert.is_not_nil(session, tostring(err))
      sock:send("GET / HTTP/1.0\r\n\r\n")
      assert.equals("HTTP/1.0 200 ok", sock:receive("*l"))   -- the peer is past this handshake
      sock:close()
    end
    local function requests() return select(2, stdout():gsub("cert_status: callback called", "")) end
    handshake("none.test")
    handshake("false.test", false)
    assert.equals(0, requests(), stdout())
    handshake("true.test", true)
    assert.equals(1, requests(), stdout())
  end)

  it("a socket that is not connected gives an error (returned, or raised as LuaSocket does for a method "
    .. "of another class), not a crash", function()
    local sock = tls.track(socket.tcp())
    local ok, r, err = pcall(sock.sslhandshake, sock, nil, "localhost", false)
    if ok then
      assert.is_nil(r)
      assert.equals("string", type(err))
    else
      assert.equals("string", type(tostring(r)))
    end
    assert.matches("^tcp{master}", tostring(sock))                  -- still a usable object
  end)

  it("retried after a failure (a peer that closes during the handshake): 100 more calls return nil, an error "
    .. "at once, no spin and no hang", function()
    local sock, peer = tls.raw_pair()
    local f = tls.spawn(function()
      peer:receive(5)                 -- the start of the ClientHello
      peer:close()
    end)
    sock:settimeout(3)
    local t0 = tls.now()
    local r, err = sock:sslhandshake(false, "localhost", false)
    assert.is_nil(r)
    assert.equals("string", type(err))
    assert.is_true(tls.now() - t0 < 1, "the failed handshake took " .. (tls.now() - t0) .. " s")
    assert.is_true(f:join(1))
    t0 = tls.now()
    local cpu0 = tls.cpu()
    for i = 1, 100 do
      local again, aerr = sock:sslhandshake(false, "localhost", false)
      assert.is_nil(again, "retry " .. i .. " succeeded")
      assert.equals("string", type(aerr))
    end
    assert.is_true(tls.now() - t0 < 0.5, "100 retries took " .. (tls.now() - t0) .. " s")
    assert.is_true(tls.cpu() - cpu0 < 0.3)
    local data, rerr = sock:receive()
    assert.is_nil(data)
    assert.equals("closed", rerr)
  end)
end)
