-- How libraries drive `require "ssl"` (SPEC §10 "LuaSec-compatible API (where libraries
-- look)"): copas's non-blocking handshake loop (settimeout(0), dohandshake until true,
-- socket.select on "wantread"/"wantwrite"), and pgmoon's upgrade of a plain connection
-- (a plain-text exchange first, then ssl.wrap + sni + dohandshake on the same socket),
-- here against a plain gsock.server whose handler upgrades the accepted socket with the
-- server side of ssl.wrap.
local socket = require "socket"
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/tls/"
local tls = dofile(here .. "support/tls.lua")
local ssl = tls.load_ssl()
local gsock = require "gsock"

setup(tls.setup)
teardown(tls.teardown)
after_each(tls.cleanup)

describe("copas-style: a non-blocking handshake", function()
  before_each(tls.ready)

  it("settimeout(0), dohandshake() until true, socket.select on wantread/wantwrite: it completes, and the "
    .. "connection then echoes", function()
    local conn = tls.wrap_client("echo")
    conn:sni("localhost")
    conn:settimeout(0)
    local calls, waits = 0, { wantread = 0, wantwrite = 0 }
    local deadline = tls.now() + 5
    while true do
      calls = calls + 1
      local ok, err = conn:dohandshake()
      if ok then break end
      assert.truthy(err == "wantread" or err == "wantwrite", "dohandshake failed: " .. tostring(err))
      waits[err] = waits[err] + 1
      if err == "wantread" then socket.select({ conn }, nil, 1) else socket.select(nil, { conn }, 1) end
      assert.is_true(tls.now() < deadline and calls < 200, calls .. " calls in 5 s: the loop spins or hangs")
    end
    -- the server's flight comes after a round trip: at least one call said "wantread"
    assert.is_true(waits.wantread >= 1, "no call said wantread: the handshake blocked (" .. calls .. " calls)")
    assert.is_true(calls <= 20, calls .. " calls for one handshake")
    assert.is_true(conn:getpeerverification())
    conn:settimeout(5)
    assert.equals(8, conn:send("copas!\n\n"))
    assert.equals("copas!", conn:receive("*l"))
  end)
end)

describe("pgmoon-style: a plain connection upgraded to TLS", function()
  before_each(tls.ready)

  it("a plain line and 'S' first; then ssl.wrap, sni, dohandshake, settimeout, receive; the peer's "
    .. "certificate's pem(); the server upgraded its accepted socket with ssl.wrap(sock, server params)", function()
    local upgraded
    local srv = gsock.server("127.0.0.1:0", function(sock)
      sock:settimeout(5)
      local request = sock:receive("*l")             -- plain text: "SSL please"
      if request ~= "SSL please" then return end
      sock:send("S")
      local conn = assert(ssl.wrap(sock, tls.server_params()))
      conn:settimeout(5)
      upgraded = table.pack(conn:dohandshake())
      if upgraded[1] then
        local line = conn:receive("*l")
        conn:send("secure " .. tostring(line) .. "\n")
      end
      conn:close()
    end)
    srv:start()
    local _, port = srv.listeners[1]:getsockname()
    local sock = tls.tcp(tonumber(port))
    assert.equals(11, sock:send("SSL please\n"))
    assert.equals("S", sock:receive(1))
    local conn = tls.track(assert(ssl.wrap(sock, tls.client_params())))
    conn:sni("localhost")
    local ok, err = conn:dohandshake()
    assert.is_true(ok, tostring(err))
    assert.equals(1, conn:settimeout(5))
    conn:send("hello\n")
    assert.equals("secure hello", conn:receive("*l"))
    local pem = conn:getpeercertificate():pem()
    assert.equals("string", type(pem))
    assert.matches("^%-%-%-%-%-BEGIN CERTIFICATE%-%-%-%-%-", pem)
    assert.equals(tls.certs_lib.slurp(tls.certs.localhost.cert), pem)
    srv:stop()
    assert.is_true(upgraded[1], tostring(upgraded[2]))
  end)
end)
