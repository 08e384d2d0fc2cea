-- TLS clients with `require "ssl"` (SPEC §10): the LuaSec API against a python3 ssl
-- peer (support/tls_peer.py), its return shapes, receive patterns, timeouts, close
-- without close_notify, the SSL_pending trap and cooperation with other fibers.
--
-- Expected values come from support/luasec_oracle.lua: Debian's LuaSec 1.2.0 under
-- plain lua5.4 against the same peers ("oracle" below). Where SPEC §10 deliberately
-- differs from LuaSec the test says "SPEC, not LuaSec".
local gsock = require "gsock"
local socket = require "socket"
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/tls/"
local tls = dofile(here .. "support/tls.lua")
local ssl = tls.load_ssl()


setup(tls.setup)
teardown(tls.teardown)
after_each(tls.cleanup)

describe("a TLS client", function()
  before_each(tls.ready)

  it("wraps a connected socket: tostring is 'SSL connection: 0x...', the tcp object gives up its fd (oracle)", function()
    local conn, tcp = tls.wrap_client("echo")
    assert.matches("^SSL connection: 0x%x+", tostring(conn))
    assert.equals(-1, tcp:getfd())
    assert.equals("number", type(conn:getfd()))
    assert.is_true(conn:getfd() >= 0)
    assert.equals("nothing", conn:want())
  end)

  it("handshakes with cafile = the test CA: dohandshake() is true, again true; verification true (oracle)", function()
    local conn = tls.wrap_client("echo")
    conn:sni("localhost")
    local ok, err = conn:dohandshake()
    assert.is_true(ok, tostring(err))
    assert.is_nil(err)
    assert.is_true(conn:dohandshake())
    assert.is_true(conn:getpeerverification())
    assert.equals("nothing", conn:want())
  end)

  it("echoes a line: send returns the byte count, receive('*l') the line without its newline (oracle)", function()
    local conn = tls.client()
    local n, err, last = conn:send("hello\n")
    assert.equals(6, n)
    assert.is_nil(err)
    assert.is_nil(last)
    local line, rerr, partial = conn:receive("*l")
    assert.equals("hello", line)
    assert.is_nil(rerr)
    assert.is_nil(partial)
  end)

  it("send(data, i, j) sends that range and returns j; receive(n) and a prefix work as LuaSocket's (oracle)", function()
    local conn = tls.client()
    assert.equals(5, conn:send("abcdefgh\n", 3, 5))
    assert.equals(1, conn:send("\n"))
    assert.equals("cde", conn:receive("*l"))
    assert.equals(6, conn:send("12345\n"))
    assert.equals("123", conn:receive(3))
    assert.equals("pre-45", conn:receive("*l", "pre-"))
    assert.equals(4, conn:send("x-y\n"))
    assert.equals("x-y", conn:receive("l"))               -- gsockd: Lua 5.4's "l" as in §4 (LuaSec rejects it)
  end)

  it("receiveany and receiveuntil (gsockd's extensions) work on a TLS connection", function()
    local conn = tls.client()
    conn:send("part1--part2--\n")
    local reader = conn:receiveuntil("--")
    assert.equals("part1", reader())
    assert.equals("part2", reader())
    assert.equals("\n", conn:receive(1))
    conn:send("any\n")
    local got = ""
    while #got < 4 do
      local data, err = conn:receiveany(100)
      assert.is_not_nil(data, err)
      assert.is_true(#data >= 1 and #data <= 100)
      got = got .. data
    end
    assert.equals("any\n", got)
  end)

  -- Bug (found by send_waits_test): on a TLS connection receiveuntil's time grows with the
  -- square of the data before the delimiter (debug build: 512 KiB 0.3 s, 1 MiB 1.3 s, 4 MiB
  -- over 10 s), while plain TCP takes 0.13 s for 1 MiB. SPEC §10: receiveuntil works on TLS
  -- "exactly as on plain TCP".
  it("receiveuntil returns 4 MiB before its delimiter in a few seconds, as on plain TCP (not quadratic)", function()
    local conn, server = tls.pair()
    local size = 4 * 1024 * 1024
    tls.spawn(function() conn:send(("u"):rep(size) .. "END\n") end)
    server:settimeout(4, "t")                 -- in total: the test ends by itself either way
    local t0 = tls.now()
    local data, err = server:receiveuntil("END\n")()
    local took = tls.now() - t0
    assert.equals(size, data and #data, "receiveuntil failed after " .. took .. " s: " .. tostring(err))
    assert.is_true(took < 4, ("4 MiB took %.1f s"):format(took))   -- linear: well under a second or two
  end)

  it("sends and receives 1 MiB back intact (a sender fiber and a receiver fiber on one conn)", function()
    local conn = tls.client()
    local data = tls.lines_of(1024 * 1024)
    local sent, serr
    local sender = tls.spawn(function() sent, serr = conn:send(data) end)
    local parts, have = {}, 0
    conn:settimeout(10)
    while have < #data do
      local chunk, err, partial = conn:receive(math.min(65536, #data - have))
      chunk = chunk or partial
      assert.truthy(chunk and #chunk > 0, "receive failed after " .. have .. " bytes: " .. tostring(err))
      parts[#parts + 1] = chunk
      have = have + #chunk
    end
    assert.is_true(sender:join(5))
    assert.equals(#data, sent, tostring(serr))
    local back = table.concat(parts)
    assert.equals(#data, #back)
    assert.is_true(back == data, "the echoed MiB differs")
  end)

  it("talks HTTP to `openssl s_server -www` (another TLS server than the python peer)", function()
    local conn = tls.client("s_server")
    conn:send("GET / HTTP/1.0\r\n\r\n")
    local page, err, partial = conn:receive("*a")
    page = page or partial
    assert.matches("^HTTP/1%.0 200 ok\r\n", page, tostring(err))
    assert.truthy(page:find("Ciphers supported in s_server binary", 1, true), page:sub(1, 300))
  end)

  it("info() gives protocol, cipher and bits; info('protocol') one field (oracle: TLSv1.3 here)", function()
    local conn = tls.client()
    local info = conn:info()
    assert.equals("table", type(info))
    assert.equals("TLSv1.3", info.protocol)
    assert.equals("string", type(info.cipher))
    assert.equals("number", type(info.bits))
    assert.is_true(info.bits >= 128)
    assert.equals("TLSv1.3", conn:info("protocol"))
    conn:send("VERSION\n")
    assert.equals("TLSv1.3", conn:receive("*l"))           -- what the server saw
  end)

  it("protocol = 'tlsv1_2' negotiates TLS 1.2", function()
    local conn = tls.client("echo", { protocol = "tlsv1_2" })
    assert.equals("TLSv1.2", conn:info("protocol"))
    conn:send("VERSION\n")
    assert.equals("TLSv1.2", conn:receive("*l"))
  end)

  it("protocol = 'any' is TLS 1.2 or newer: a TLS 1.2 server gets TLS 1.2; 'tlsv1_3' refuses it (oracle)", function()
    local conn = tls.client("tls12")
    assert.equals("TLSv1.2", conn:info("protocol"))
    conn:send("VERSION\n")
    assert.equals("TLSv1.2", conn:receive("*l"))
    local strict = tls.wrap_client("tls12", { protocol = "tlsv1_3" })
    strict:sni("localhost")
    local ok, err = strict:dohandshake()
    assert.is_false(ok)
    assert.truthy(tostring(err):find("protocol version", 1, true), tostring(err))   -- OpenSSL's reason
  end)

  it("getalpn() returns the protocol the server chose, nil without alpn (oracle)", function()
    local conn = tls.client("alpn", { alpn = { "http/1.1" } })
    assert.equals("http/1.1", conn:getalpn())
    conn:send("ALPN\n")
    assert.equals("http/1.1", conn:receive("*l"))
    local conn2 = tls.client("alpn", { alpn = "h2" })
    assert.equals("h2", conn2:getalpn())
    local conn3 = tls.client("alpn")
    assert.is_nil(conn3:getalpn())
  end)

  it("a server that requires a client certificate gets the one in certificate/key", function()
    local c = tls.certs
    local conn = tls.client("mtls", { certificate = c.client.cert, key = c.client.key })
    conn:send("WHO\n")
    assert.equals("gsockd-test-client", conn:receive("*l"))
    local plain = tls.client("echo")
    plain:send("WHO\n")
    assert.equals("none", plain:receive("*l"))
  end)

  it("verifies a chain the server sends (leaf + intermediate) against the root CA; getpeerchain has both (oracle)", function()
    local conn = tls.client("chain")
    assert.is_true(conn:getpeerverification())
    local chain = conn:getpeerchain()
    assert.equals(2, #chain)
    local cert = conn:getpeercertificate()
    assert.is_not_nil(cert)
    assert.matches("^%-%-%-%-%-BEGIN CERTIFICATE%-%-%-%-%-", cert:pem())
  end)

  it("close(): later calls give 'closed' with LuaSec's shapes; close again is harmless (oracle)", function()
    local conn = tls.client()
    conn:close()
    local data, err, partial = conn:receive()
    assert.is_nil(data)
    assert.equals("closed", err)
    assert.equals("", partial)
    local n, serr, last = conn:send("x")
    assert.is_nil(n)
    assert.equals("closed", serr)
    assert.equals(0, last)
    conn:close()
    assert.matches("^SSL connection: 0x%x+", tostring(conn))
  end)
end)

describe("the peer's certificate (x509 objects)", function()
  before_each(tls.ready)

  --- The certificate's SHA-256 fingerprint by the openssl command, lowercase hex.
  local function fingerprint(path)
    local p = assert(io.popen("openssl x509 -in " .. tls.certs_lib.quote(path) .. " -noout -fingerprint -sha256"))
    local out = p:read("a")
    p:close()
    return (out:match("=(%S+)") or ""):gsub(":", ""):lower()
  end

  it("getpeercertificate() gives an x509 object with LuaSec's methods and values (oracle)", function()
    local conn = tls.client()
    local cert = assert(conn:getpeercertificate())
    assert.matches("^X509 certificate: 0x%x+", tostring(cert))
    assert.matches("^%-%-%-%-%-BEGIN CERTIFICATE%-%-%-%-%-\n", cert:pem())
    assert.matches("^%x+$", cert:digest())
    assert.equals(40, #cert:digest())                       -- SHA-1 by default, as LuaSec
    assert.equals(fingerprint(tls.certs.localhost.cert), cert:digest("sha256"):lower())
    assert.same({ { name = "commonName", oid = "2.5.4.3", value = "localhost" } }, cert:subject())
    assert.same({ { name = "commonName", oid = "2.5.4.3", value = "gsockd test CA" } }, cert:issuer())
    assert.equals("string", type(cert:notbefore()))
    assert.equals("string", type(cert:notafter()))
    assert.equals("string", type(cert:serial()))
    assert.equals("ecdsa-with-SHA256", cert:getsignaturename())
    assert.is_true(cert:validat(os.time()))
    assert.is_false(cert:validat(os.time() + 365 * 24 * 3600))   -- valid 30 days
  end)

  it("getsniname() on a client is the name given to sni() (oracle)", function()
    local conn = tls.client()
    assert.equals("localhost", conn:getsniname())
  end)
end)

describe("TLS timeouts", function()
  before_each(tls.ready)

  it("a server that never answers the handshake: settimeout(0.2) ends dohandshake in about 0.2 s with "
    .. "false, 'wantread' (oracle); the connection is then closed (SPEC, not LuaSec)", function()
    local conn = tls.wrap_client("stall")
    conn:sni("localhost")
    conn:settimeout(0.2)
    local t0 = tls.now()
    local ok, err = conn:dohandshake()
    local took = tls.now() - t0
    assert.is_false(ok)
    assert.equals("wantread", err)
    assert.is_true(took >= 0.15 and took < 0.6, "took " .. took .. " s")
    -- LuaSec lets dohandshake be retried (it says "wantread" again); SPEC §10: "when it
    -- fails or times out the connection is closed"
    local ok2, err2 = conn:dohandshake()
    assert.is_false(ok2)
    assert.equals("closed", err2)
    local n, serr = conn:send("x")
    assert.is_nil(n)
    assert.equals("closed", serr)
  end)

  it("the handshake timeout is a total: a server trickling a byte every 0.05 s does not extend it (oracle)", function()
    local conn = tls.wrap_client("trickle")
    conn:settimeout(0.3)
    local t0 = tls.now()
    local ok, err = conn:dohandshake()
    local took = tls.now() - t0
    assert.is_false(ok)
    assert.equals("wantread", err)
    assert.is_true(took >= 0.25 and took < 0.8, "took " .. took .. " s")
  end)

  it("settimeouts' connect timeout bounds the handshake (SPEC)", function()
    local conn = tls.wrap_client("stall")
    conn:settimeouts(0.2, 5, 5)
    local t0 = tls.now()
    local ok, err = conn:dohandshake()
    local took = tls.now() - t0
    assert.is_false(ok)
    assert.equals("wantread", err)
    assert.is_true(took >= 0.15 and took < 0.6, "took " .. took .. " s")
  end)

  it("after a send timed out part way, a send of other data works and the peer gets exactly the `last` bytes "
    .. "reported sent, then the new data (SPEC: as on plain TCP; LuaSec fails it with 'bad length')", function()
    local conn = tls.client()
    conn:send("COUNT\n")                       -- the peer stops reading for 1 s, then counts
    conn:settimeout(0.2)
    local n, err, last = conn:send(("a"):rep(32 * 1024 * 1024))
    assert.is_nil(n)
    assert.equals("wantwrite", err)
    assert.is_true(last > 0, "nothing was sent")
    conn:settimeout(10)
    assert.equals(1000, conn:send(("b"):rep(1000)))
    assert.equals(5, conn:send("\nEND\n"))
    assert.equals(("a=%d b=1000 order=ok"):format(last), conn:receive("*l"))
  end)

  -- Bug: SPEC §10 "when it fails or times out the connection is closed", and it is (getfd()
  -- is -1, receive says "closed"), yet `gsockd test` (SPEC §7: "sockets it leaves behind are
  -- reported") reports the connection as left open: "SSL connection: 0x... was left open:
  -- closed" (and "tcp{client}: ... was left open" after sslhandshake).
  it("a connection closed by its failed handshake is not reported left open by gsockd test (a subprocess)",
    function()
      local dir = tls.proc.tmpdir()
      local file = tls.proc.write(dir, "failed_handshake_test.lua", [[
local socket, ssl = require "socket", require "ssl"
--- A client connected to a peer that closes at once.
local function closing_peer()
  local srv = assert(socket.bind("127.0.0.1", 0))
  local _, port = srv:getsockname()
  local tcp = assert(socket.connect("127.0.0.1", tonumber(port)))
  assert(srv:accept()):close()
  srv:close()
  tcp:settimeout(2)
  return tcp
end
describe("a failed handshake", function()
  it("dohandshake closes its connection", function()
    local conn = assert(ssl.wrap(closing_peer(), { mode = "client", verify = "none" }))
    assert.is_false((conn:dohandshake()))
    assert.equals(-1, conn:getfd())
  end)
  it("sslhandshake closes its connection", function()
    local sock = closing_peer()
    assert.is_nil((sock:sslhandshake(false, "localhost", false)))
    assert.equals(-1, sock:getfd())
  end)
end)
]])
      local p = tls.proc.start({ "test", file }, { cwd = dir })
      assert.equals(0, p:wait_exit(8), p:describe())
      local out = p:stdout() .. p:stderr()
      assert.matches("2 passed, 0 failed", out)
      assert.is_nil(out:find("left open", 1, true), out)
    end)

  it("settimeout returns 1 (oracle)", function()
    local conn = tls.wrap_client("echo")
    assert.equals(1, conn:settimeout(5))
  end)

  it("the stalled server sees the connection closed after the handshake timed out (SPEC)", function()
    local srv, port = tls.listen()
    local conn = assert(ssl.wrap(tls.tcp(port), tls.client_params()))
    tls.track(conn)
    srv:settimeout(2)
    local peer = tls.track(assert(srv:accept()))
    conn:settimeout(0.2)
    assert.is_false((conn:dohandshake()))
    peer:settimeout(1)
    local t0 = tls.now()
    local hello, err, partial = peer:receive("*a")    -- the ClientHello, then EOF
    hello = hello or partial
    assert.is_true(tls.now() - t0 < 0.5, "the client kept the connection open: " .. tostring(err))
    assert.is_true(#hello > 0, "no ClientHello arrived")
    assert.equals(22, hello:byte(1))                  -- a TLS handshake record
  end)

  it("receive times out with nil, 'wantread', '' after about the timeout; want() is 'read' (oracle)", function()
    local conn = tls.client()
    conn:settimeout(0.2)
    local t0 = tls.now()
    local data, err, partial = conn:receive("*l")
    local took = tls.now() - t0
    assert.is_nil(data)
    assert.equals("wantread", err)
    assert.equals("", partial)
    assert.is_true(took >= 0.15 and took < 0.6, "took " .. took .. " s")
    assert.equals("read", conn:want())
    conn:settimeout(0)
    assert.same({ nil, "wantread", "" }, { conn:receive("*l") })
  end)

  it("a timed-out receive returns the partial data for '*l', a count and '*a' (oracle)", function()
    local conn = tls.client()
    conn:settimeout(0.2)
    conn:send("PART abc\n")
    assert.same({ nil, "wantread", "abc" }, { conn:receive("*l") })
    conn:send("PART xyz\n")
    assert.same({ nil, "wantread", "xyz" }, { conn:receive(10) })
    conn:send("PART 123\n")
    assert.same({ nil, "wantread", "123" }, { conn:receive("*a") })
    conn:send("PART 4\n")
    assert.same({ nil, "wantread", "pre4" }, { conn:receive("*l", "pre") })
    -- the data is not lost: a later receive continues after it
    conn:settimeout(2)
    conn:send("more\n")
    assert.equals("more", conn:receive("*l"))
  end)

  it("a send the peer does not read ends with nil, 'wantwrite', the bytes sent (both ends in gsockd)", function()
    local conn, server = tls.pair()
    conn:settimeout(0.3)
    local big = ("z"):rep(16 * 1024 * 1024)
    local t0 = tls.now()
    local n, err, last = conn:send(big)
    local took = tls.now() - t0
    assert.is_nil(n)
    assert.equals("wantwrite", err)
    assert.equals("number", type(last))
    assert.is_true(last > 0 and last < #big, "sent " .. tostring(last))
    assert.is_true(took < 2, "took " .. took .. " s")
    server:close()
  end)
end)

describe("a peer that closes", function()
  before_each(tls.ready)

  it("without close_notify: receive('*l') gives nil, 'closed' and the partial line "
    .. "(SPEC, not LuaSec: LuaSec says 'unexpected eof while reading')", function()
    local conn = tls.client()
    conn:send("ABRUPT tail-no-newline\n")
    local data, err, partial = conn:receive("*l")
    assert.is_nil(data)
    assert.equals("closed", err)
    assert.equals("tail-no-newline", partial)
  end)

  it("without close_notify: receive('*a') returns the data (SPEC, not LuaSec)", function()
    local conn = tls.client()
    conn:send("ABRUPT all-data\n")
    local data, err = conn:receive("*a")
    assert.equals("all-data", data, tostring(err))
  end)

  it("without close_notify: receiving again gives 'closed' at once, every time (LuaSec 1.2.0 spins "
    .. "at 100% CPU here; run in a bounded subprocess)", function()
    local peer = tls.peer("echo")
    local r = tls.run([[
local ssl = require "ssl"
local socket = require "socket"
local port, ca = ...
port = tonumber(port)
local tcp = assert(socket.tcp())
tcp:settimeout(3)
assert(tcp:connect("127.0.0.1", port))
local conn = assert(ssl.wrap(tcp, { mode = "client", protocol = "any", cafile = ca }))
conn:settimeout(3)
conn:sni("localhost")
assert(conn:dohandshake())
conn:send("ABRUPT x\n")
print("first", conn:receive("*l"))
local t0, c0 = socket.gettime(), os.clock()
local results = {}
for i = 1, 1000 do
  local data, err = conn:receive("*l")
  results[err or "data"] = (results[err or "data"] or 0) + 1
end
print("closed", results.closed, "seconds", socket.gettime() - t0 < 0.5, "cpu", os.clock() - c0 < 0.5)
]], nil, { tostring(peer.port), tls.certs.ca.cert }, 5)
    assert.equals(0, r.status, r.output)
    assert.matches("first\tnil\tclosed\tx", r.stdout)
    assert.matches("closed\t1000\tseconds\ttrue\tcpu\ttrue", r.stdout)
  end)

  it("with close_notify: receive('*a') returns the data, then receive gives 'closed' (oracle)", function()
    local conn = tls.client()
    conn:send("NOTIFY notified-data\n")
    assert.equals("notified-data", conn:receive("*a"))
    assert.same({ nil, "closed", "" }, { conn:receive("*l") })
    local conn2 = tls.client()
    conn2:send("NOTIFY line\n")
    assert.same({ nil, "closed", "line" }, { conn2:receive("*l") })
  end)

  it("with a reset: send and close afterwards return, the process lives on (no SIGPIPE; a bounded subprocess)", function()
    local r = tls.run([[
local ssl = require "ssl"
local socket = require "socket"
local port, ca = ...
local tcp = assert(socket.tcp())
tcp:settimeout(3)
assert(tcp:connect("127.0.0.1", tonumber(port)))
local conn = assert(ssl.wrap(tcp, { mode = "client", protocol = "any", cafile = ca }))
conn:settimeout(3)
conn:sni("localhost")
assert(conn:dohandshake())
conn:send("RESET\n")
print("receive", conn:receive("*l"))
socket.sleep(0.1)
for i = 1, 3 do print("send", conn:send(("x"):rep(100000))) end
conn:close()
print("alive")
]], nil, { tostring(tls.peer("echo").port), tls.certs.ca.cert }, 5)
    assert.equals(0, r.status, "exit status " .. tostring(r.status) .. " (141: killed by SIGPIPE)\n" .. r.output)
    assert.matches("receive\tnil\tclosed\t\n", r.stdout, r.output)
    assert.matches("send\tnil\t%S", r.stdout, r.output)
    assert.matches("alive\n", r.stdout, r.output)
  end)

  it("with a reset: receive gives nil, 'closed', '' (oracle)", function()
    local conn = tls.client()
    conn:send("RESET\n")
    assert.same({ nil, "closed", "" }, { conn:receive("*l") })
  end)
end)

describe("the SSL_pending trap", function()
  before_each(tls.ready)

  -- The peer sends "one\ntwo\nthree\n" in one TLS record: after the first receive the
  -- rest is decrypted already (in OpenSSL or in the socket's buffer) and the descriptor
  -- is not readable. A receive or select that parks on the descriptor would wait.
  local function burst()
    local conn = tls.client()
    conn:send("BURST\n")
    gsock.sleep(0.2)                       -- the whole record has arrived
    assert.equals("one", conn:receive("*l"))
    return conn
  end

  it("receive('*l') three times returns the three lines without waiting (oracle)", function()
    local conn = burst()
    conn:settimeout(0)
    assert.same({ "two" }, { conn:receive("*l") })
    assert.same({ "three" }, { conn:receive("*l") })
    assert.same({ nil, "wantread", "" }, { conn:receive("*l") })
  end)

  it("dirty() is true while decrypted data is pending and false after it was read (oracle)", function()
    local conn = burst()
    assert.is_true(conn:dirty())
    conn:settimeout(0)
    conn:receive("*l")
    conn:receive("*l")
    assert.is_false(conn:dirty())
  end)

  it("socket.select({conn}, nil, 0) returns the conn at once while data is pending (oracle)", function()
    local conn = burst()
    local r = socket.select({ conn }, nil, 0)
    assert.equals(1, #r)
    assert.is_true(r[1] == conn)
    local t0 = tls.now()
    r = socket.select({ conn }, nil, 1)
    assert.is_true(r[1] == conn)
    assert.is_true(tls.now() - t0 < 0.1)
  end)

  it("small reads leave the rest pending: receive(2), receiveany(2), then select and receive return at once", function()
    local conn = tls.client()
    conn:send("BURST\n")
    gsock.sleep(0.2)
    assert.equals("on", conn:receive(2))
    conn:settimeout(0)
    assert.equals("e\n", conn:receiveany(2))
    assert.is_true(conn:dirty())
    local r = socket.select({ conn }, nil, 0)
    assert.is_true(r[1] == conn, "select did not see the pending data")
    assert.equals("two", conn:receive("*l"))
    assert.equals("three", conn:receive("*l"))
  end)

  it("receiveany and gsock.wait_read(conn) return at once while data is pending (SPEC)", function()
    local conn = burst()
    local t0 = tls.now()
    assert.is_true(pcall(gsock.wait_read, conn, 1))
    assert.is_true(tls.now() - t0 < 0.1, "wait_read parked on the descriptor")
    conn:settimeout(0)
    assert.equals("two\nthree\n", conn:receiveany(100))
  end)
end)

describe("TLS and other fibers", function()
  before_each(tls.ready)

  it("a handshake against a stalled server lets another fiber run (a counter advances)", function()
    local conn = tls.wrap_client("stall")
    conn:settimeout(0.5)
    local count = 0
    local ticker = tls.spawn(function()
      while true do count = count + 1 gsock.sleep(0.01) end
    end)
    gsock.sleep(0)
    local before = count
    local ok, err = conn:dohandshake()
    assert.is_false(ok)
    assert.equals("wantread", err)
    assert.is_true(count - before >= 10, "the counter advanced by " .. (count - before) .. " during a 0.5 s handshake")
    ticker:kill()
  end)

  it("a receive waiting for data lets another fiber send on the same conn (full duplex)", function()
    local conn = tls.client()
    local got
    local receiver = tls.spawn(function() got = table.pack(conn:receive("*l")) end)
    gsock.sleep(0.05)
    assert.is_nil(got, "the receive returned before any data")
    local t0 = tls.now()
    assert.equals(5, conn:send("ping\n"))
    assert.is_true(tls.now() - t0 < 0.2, "send waited for the receiver")
    assert.is_true(receiver:join(2))
    assert.equals("ping", got[1], tostring(got[2]))
  end)

  it("a second fiber receiving while one already does gets nil, 'busy' at once (§4 on TLS)", function()
    local conn = tls.client()
    tls.spawn(function() conn:receive("*l") end)
    gsock.sleep(0.05)
    local t0 = tls.now()
    local data, err = conn:receive("*l")
    assert.is_nil(data)
    assert.equals("busy", err)
    assert.is_true(tls.now() - t0 < 0.1)
  end)

  it("many clients handshake and echo concurrently", function()
    local fibers, results = {}, {}
    for i = 1, 10 do
      fibers[i] = tls.spawn(function()
        local conn = tls.client()
        conn:send("n" .. i .. "\n")
        results[i] = conn:receive("*l")
        conn:close()
      end)
    end
    gsock.joinall(fibers, 8)
    for i = 1, 10 do
      assert.is_true(fibers[i]:successful(), "client " .. i .. ": " .. tostring(fibers[i].error))
      assert.equals("n" .. i, results[i])
    end
  end)
end)

describe("require \"ssl\"", function()
  it("is gsockd's module even with Debian's lua-sec installed (its ssl.lua is not what loaded)", function()
    local luasec = package.searchpath("ssl", package.path)
    if not luasec then pending("lua-sec is not installed: nothing to take precedence over") end
    local source = debug.getinfo(ssl.wrap, "S").source
    assert.are_not.equal("@" .. luasec, source)
    assert.is_true(package.loaded.ssl == ssl)
  end)

  it("\"ssl.https\" and \"ssl.x509\" are gsockd's modules too, not Debian's lua-sec ones", function()
    local https = require "ssl.https"
    local luasec_https = package.searchpath("ssl.https", package.path)
    if luasec_https then
      assert.are_not.equal("@" .. luasec_https, debug.getinfo(https.request, "S").source)
    end
    assert.matches("gsockd", https._COPYRIGHT)
    assert.equals("function", type(https.request))
    assert.equals("function", type(https.tcp))
    local x509 = require "ssl.x509"
    assert.is_true(x509 == ssl.x509, "require \"ssl.x509\" is not ssl.x509")
    assert.is_nil(package.loaded["ssl.core"], "LuaSec's C module was loaded")
    tls.ready()
    local cert = assert(x509.load(tls.certs_lib.slurp(tls.certs.localhost.cert)))
    assert.matches("^X509 certificate: 0x%x+", tostring(cert))
    assert.same({ { name = "commonName", oid = "2.5.4.3", value = "localhost" } }, cert:subject())
  end)

  it("gives connections whose tostring is LuaSec's and whose handshake does not freeze the loop", function()
    tls.ready()
    local conn = tls.wrap_client("stall")
    assert.matches("^SSL connection: 0x", tostring(conn))
    conn:settimeout(0.3)
    local ran = false
    tls.spawn(function() ran = true end)
    conn:dohandshake()
    assert.is_true(ran, "another fiber did not run during a 0.3 s handshake: the blocking LuaSec was loaded")
  end)

  it("an SSL:Connection has no bind, listen, accept, connect, setsockname or setpeername (as LuaSec's: it is "
    .. "connected already), and keeps the socket methods it shares", function()
    local conn = tls.client("echo")
    for _, m in ipairs({ "bind", "listen", "accept", "connect", "setsockname", "setpeername" }) do
      assert.is_nil(conn[m], m)
    end
    for _, m in ipairs({ "receive", "send", "close", "getpeername", "getsockname", "settimeout", "setkeepalive" }) do
      assert.equals("function", type(conn[m]), m)
    end
  end)
end)
