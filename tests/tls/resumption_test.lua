-- Client TLS session resumption per pool key (SPEC §10 "client sessions are resumed per pool
-- key"; README "The pool"): a session is offered again only to a handshake of the same key
-- (address, server name, verification settings, client certificate), where the context's
-- identity digests its settings and the files it loaded. Each client makes a new context of
-- the same parameters, as pgmoon does, so only the key can bring a session back.
--
-- The server is `openssl s_server -www`, another process: its status page says "New," or
-- "Reused," for the handshake it served, and it resumes any session it issued, whatever
-- server name the client sends and on any port a relay brings it from. So a "New" page
-- means the client offered nothing, not that the server refused. The client's side
-- (gsock.stats().tls_resumptions: no gsockd server runs in this process) must agree.
-- Where the security of skipping verification is at stake, the proof is stronger still: a
-- context whose full handshake must fail verification fails it, where a resumed session
-- would have been let through (OpenSSL does not verify a resumed peer again).
local gsock = require "gsock"
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/tls/"
local tls = dofile(here .. "support/tls.lua")
local ssl = tls.load_ssl()
local certs, peers, proc = tls.certs_lib, tls.peers, tls.proc

setup(tls.setup)
teardown(tls.teardown)
after_each(tls.cleanup)

local servers = {}
after_each(function()
  for _, p in ipairs(servers) do peers.stop(p) end
  servers = {}
end)

local VERIFY_FAILED = "certificate verify failed"

--- Runs an openssl command in `dir` (quietly); errors with its output when it fails.
local function openssl(dir, args)
  local out = proc.sh(("cd %s && openssl %s 2>&1; echo RC=$?"):format(certs.quote(dir), args))
  assert(out:match("RC=0%s*$"), "openssl " .. args .. ":\n" .. out)
end

--- A leaf for localhost, other.example and 127.0.0.1, signed by the test CA: one
--- certificate that verifies under both server names. Returns { cert =, key = }.
local function two_name_leaf(dir)
  local c = tls.certs
  proc.write(dir, "names.cnf", "subjectAltName = DNS:localhost, DNS:other.example, IP:127.0.0.1\n"
    .. "extendedKeyUsage = serverAuth\n")
  openssl(dir, "req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout names.key "
    .. "-subj /CN=localhost -out names.csr")
  openssl(dir, ("x509 -req -in names.csr -CA %s -CAkey %s -CAcreateserial -days 2 -sha256 -extfile names.cnf "
    .. "-out names.pem"):format(certs.quote(c.ca.cert), certs.quote(c.ca.key)))
  return { cert = dir .. "/names.pem", key = dir .. "/names.key" }
end

--- A CA of its own (a self-signed root) that did not issue the test leaves: a cafile
--- holding only it makes a full handshake to the test servers fail verification.
local function stranger_ca(dir)
  openssl(dir, "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout stranger.key "
    .. "-subj '/CN=gsockd stranger CA' -days 2 -addext basicConstraints=critical,CA:TRUE -out stranger.pem")
  return dir .. "/stranger.pem"
end

--- `openssl s_server -www` with `leaf` (default the localhost leaf) on a free port; its port.
local function s_server(leaf)
  leaf = leaf or tls.certs.localhost
  local p = peers.start({ command = "s_server", cert = leaf.cert, key = leaf.key, port = proc.free_port(),
                         lifetime = 30 })
  servers[#servers + 1] = p
  return p.port
end

--- A TCP relay on a free port of 127.0.0.1 to 127.0.0.1:`to`, in this process: the same
--- server (its ticket keys) behind another address. Returns its port.
local function relay(to)
  local listener, port = tls.listen()
  local function pump(from, into)
    while true do
      local data = from:receiveany(65536)
      if not data or not into:send(data) then break end
    end
    into:shutdown("send")
  end
  tls.spawn(function()
    while true do
      local client = listener:accept()
      if not client then return end
      tls.track(client)
      local server = tls.tcp(to)
      client:settimeout(5)
      tls.spawn(function()
        local back = tls.spawn(pump, server, client)
        pump(client, server)
        back:join(5)
        client:close()
        server:close()
      end)
    end
  end)
  return port
end

--- One GET to s_server on a handshaken connection: whether the server says it resumed.
local function served_resumed(conn)
  assert(conn:send("GET / HTTP/1.0\r\n\r\n"))
  local page, err, partial = conn:receive("*a")
  page = page or partial or ""
  local word = page:match("\n(%a+), TLSv1%.%d")
  assert(word == "New" or word == "Reused", "no session line in s_server's page (" .. tostring(err) .. "): "
    .. page:sub(1, 200))
  return word == "Reused"
end

--- The two views of one handshake must agree; returns them as one boolean.
local function agreed(client_resumed, server_resumed)
  assert.equals(server_resumed, client_resumed, "the client and s_server disagree on resumption")
  return server_resumed
end

--- A new client context of `params` (mode client added), as pgmoon makes one per connection.
local function client_context(params)
  local p = { mode = "client" }
  for k, v in pairs(params) do p[k] = v end
  return assert(ssl.newcontext(p))
end

--- Runs `handshake()` on `sock` (a connection to s_server), then one GET: whether it
--- resumed, or nil and the handshake's error. The connection is closed either way.
local function observed(sock, handshake)
  local before = gsock.stats().tls_resumptions
  local ok, err = handshake()
  if not ok then
    sock:close()
    return nil, err
  end
  local client = gsock.stats().tls_resumptions - before == 1
  local resumed = agreed(client, served_resumed(sock))
  sock:close()
  return resumed
end

--- A LuaSec-style connection (wrap + dohandshake) to 127.0.0.1:`port` with a new context
--- of `params`, server name `name` (nil: none set, the address is checked).
local function wrap_resumed(port, params, name)
  local conn = tls.track(assert(ssl.wrap(tls.tcp(port), client_context(params))))
  conn:settimeout(5)
  if name then conn:sni(name) end
  return observed(conn, function() return conn:dohandshake() end)
end

--- An OpenResty-style connection (`sslhandshake(nil, name, verify)`, no session handed in).
local function cosocket_resumed(port, name, verify)
  local s = tls.tcp(port)
  return observed(s, function() return s:sslhandshake(nil, name, verify) end)
end

--- Asserts that a handshake gave `want` (true: resumed, false: full); `what` says which.
local function expect(want, what, resumed, err)
  assert(resumed ~= nil, what .. ": the handshake failed: " .. tostring(err))
  assert.equals(want, resumed, what .. (want and ": not resumed" or ": resumed (a session of another key was offered)"))
end

--- Two pool keys kept apart: `a`'s first handshake is full and its next resumes (the
--- control), then `b`'s first is full (`a`'s session was not offered) and its next resumes,
--- and `a` still resumes its own. Each is a label and a function making one connection.
local function expect_apart(a_what, a, b_what, b)
  expect(false, a_what .. ", first", a())
  expect(true, a_what .. ", again (the control)", a())
  expect(false, b_what .. " after " .. a_what .. "'s sessions", b())
  expect(true, b_what .. ", again (the control)", b())
  expect(true, a_what .. " kept its own session", a())
end

--- Asserts that a handshake failed verification: a full one, where a resumed session would
--- have passed unverified.
local function expect_verify_failure(what, resumed, err)
  assert(resumed == nil, what .. ": the handshake succeeded" .. (resumed and " by resuming a session"
    or " (a full handshake that should have failed verification)"))
  assert.matches(VERIFY_FAILED, err)
end

describe("client TLS sessions per pool key", function()
  before_each(tls.ready)

  it("a session for one server name is not offered to another name on the same address (wrap and "
    .. "sslhandshake, TLS 1.3 and 1.2)", function()
    local dir = proc.tmpdir()
    local port = s_server(two_name_leaf(dir))
    for _, protocol in ipairs({ "tlsv1_3", "tlsv1_2" }) do
      local params = { cafile = tls.certs.ca.cert, protocol = protocol }
      local function run(name) return wrap_resumed(port, params, name) end
      expect_apart(protocol .. " localhost", function() return run("localhost") end,
                   protocol .. " other.example", function() return run("other.example") end)
      expect(false, protocol .. " no server name (127.0.0.1 checked, no SNI sent)", run(nil))
    end
    expect_apart("sslhandshake localhost", function() return cosocket_resumed(port, "localhost", false) end,
                 "sslhandshake other.example", function() return cosocket_resumed(port, "other.example", false) end)
  end)

  it("a session got with one verification setting is not resumed with another: verify = \"none\", "
    .. "another cafile, sslhandshake's ssl_verify", function()
    local dir = proc.tmpdir()
    local stranger = stranger_ca(dir)
    local both = proc.write(dir, "both.pem", certs.slurp(tls.certs.ca.cert) .. certs.slurp(stranger))
    local port = s_server()
    local ca = tls.certs.ca.cert
    local peer = { verify = "peer", cafile = ca }
    local function run(params) return wrap_resumed(port, params, "localhost") end
    expect_apart("verify peer with the test CA", function() return run(peer) end,
                 "verify none, the same cafile", function() return run({ verify = "none", cafile = ca }) end)
    -- the newest session to this address and name is an unverified one: a verifying
    -- context that does not trust the server must still fail
    expect(true, "verify none, once more", run({ verify = "none", cafile = ca }))
    expect_verify_failure("verify peer with a CA that did not issue the server's certificate",
      run({ verify = "peer", cafile = stranger }))
    expect(false, "verify peer with another cafile that trusts the server too", run({ verify = "peer", cafile = both }))
    expect(true, "verify peer with that cafile, again (the control)", run({ verify = "peer", cafile = both }))
    expect(true, "verify peer with the test CA kept its own session", run(peer))
    -- OpenResty's verbs: the default context verifies against the system store, which does
    -- not hold the test CA
    expect(false, "sslhandshake ssl_verify = false, first", cosocket_resumed(port, "localhost", false))
    expect(true, "sslhandshake ssl_verify = false, again (the control)", cosocket_resumed(port, "localhost", false))
    expect_verify_failure("sslhandshake ssl_verify = true", cosocket_resumed(port, "localhost", true))
  end)

  it("a session is not resumed towards another port, even of the same server", function()
    local port = s_server()
    local other = relay(port)   -- s_server again, at another address
    local params = { cafile = tls.certs.ca.cert }
    local function run(p) return wrap_resumed(p, params, "localhost") end
    expect_apart("the server's port", function() return run(port) end,
                 "the relay's port", function() return run(other) end)   -- the relay lets sessions resume
    expect_apart("sslhandshake to the server's port", function() return cosocket_resumed(port, "localhost", false) end,
                 "sslhandshake to the relay's port", function() return cosocket_resumed(other, "localhost", false) end)
  end)

  it("a cafile rewritten on disk (same path, other CAs) makes a new context identity: the old session is "
    .. "not offered", function()
    local dir = proc.tmpdir()
    local stranger = certs.slurp(stranger_ca(dir))
    local ca = certs.slurp(tls.certs.ca.cert)
    local cafile = dir .. "/cafile.pem"
    local port = s_server()
    local params = { cafile = cafile }
    local function run() return wrap_resumed(port, params, "localhost") end
    proc.write(dir, "cafile.pem", ca)
    expect(false, "the test CA, first", run())
    expect(true, "the test CA, again (the control)", run())
    proc.write(dir, "cafile.pem", ca)
    expect(true, "the same bytes written again (the control: the identity is the content)", run())
    proc.write(dir, "cafile.pem", stranger)
    expect_verify_failure("the cafile now holds a CA that did not issue the server's certificate", run())
    proc.write(dir, "cafile.pem", ca .. stranger)
    expect(false, "the cafile now holds the test CA and another", run())
    expect(true, "that cafile, again (the control)", run())
  end)

  it("a session made with a client certificate is not resumed without it (a server that requires one)",
    function()
      local c = tls.certs
      local port = tls.peer("mtls").port
      local with = { cafile = c.ca.cert, certificate = c.client.cert, key = c.client.key }
      --- The CN the server saw, or nil and why not; whether the client resumed.
      local function who(params)
        local conn = tls.track(assert(ssl.wrap(tls.tcp(port), client_context(params))))
        conn:settimeout(5)
        conn:sni("localhost")
        local before = gsock.stats().tls_resumptions
        local ok, err = conn:dohandshake()
        local resumed = gsock.stats().tls_resumptions - before == 1
        if not ok then return nil, err, resumed end
        -- TLS 1.3: the server checks the client's certificate after the client's handshake
        local line, rerr = nil, nil
        if conn:send("WHO\n") then line, rerr = conn:receive("*l") end
        conn:close()
        return line, rerr, resumed
      end
      local cn, err, resumed = who(with)
      assert.equals("gsockd-test-client", cn, tostring(err))
      assert.is_false(resumed)
      cn, err, resumed = who(with)
      assert.equals("gsockd-test-client", cn, tostring(err))
      assert.is_true(resumed, "the same key (the control): not resumed")
      cn, err, resumed = who({ cafile = c.ca.cert })
      assert.is_false(resumed, "resumed a session of the client certificate's key without the certificate")
      assert.is_nil(cn, "the server took the connection without a client certificate")
    end)

  -- OpenSSL reads a capath lazily, at verification: the context identity counts its
  -- entries by name and stat (TLSContext.digest), so replaced CAs make a new pool key.
  it("a capath whose CAs were replaced on disk makes a new context identity: the old session is not "
    .. "offered", function()
    local dir = proc.tmpdir()
    local stranger = stranger_ca(dir)
    local capath = dir .. "/capath"
    --- Makes `capath` hold `file` alone, under its hash name.
    local function fill(file)
      os.execute("rm -rf " .. certs.quote(capath))
      proc.write(dir, "capath/ca.pem", certs.slurp(file))
      openssl(capath, "rehash .")
    end
    local port = s_server()
    local params = { capath = capath }
    local function run() return wrap_resumed(port, params, "localhost") end
    fill(tls.certs.ca.cert)
    expect(false, "a capath with the test CA, first", run())
    expect(true, "that capath, again (the control)", run())
    fill(stranger)
    -- the control: a context of another key (verify named) fails with this capath
    expect_verify_failure("the new capath, another key", wrap_resumed(port, { capath = capath, verify = "peer" },
      "localhost"))
    expect_verify_failure("the capath now holds a CA that did not issue the server's certificate", run())
  end)
end)
