-- TLS services (SPEC §10 "Servers"): `tls = {...}` in handler tables, gsock.server opts
-- and config services. The handshake finishes before the handler runs, bounded by
-- handshake_timeout; a client that fails it is logged and closed while the server serves
-- everyone else; peer.tls describes the connection; mTLS with client_ca + verify_client;
-- bad tls tables and config keys are errors naming the key and file.
local gsock = require "gsock"
local socket = require "socket"
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/tls/"
local certs = dofile(here .. "support/certs.lua")
local proc = dofile(here .. "../serve/support/proc.lua")
local tls_support = dofile(here .. "support/tls.lua")

local c
setup(function()
  if not certs.available() then return end
  c = certs.make()
end)
teardown(function() if c then certs.remove(c) end end)
after_each(proc.cleanup)

local function need_certs()
  if not c then pending("the openssl command is not installed") end
end

--- A TLS server on 127.0.0.1:0 whose handler answers one line with `answer(line, peer)`.
local function tls_server(tls, answer)
  local srv = gsock.server("127.0.0.1:0", function(sock, peer)
    local line = sock:receive("*l")
    if line then sock:send(answer(line, peer) .. "\n") end
  end, { tls = tls })
  srv:start()
  local _, port = srv.listeners[1]:getsockname()
  return srv, tonumber(port)
end

--- A TLS client round trip: the answer, or nil and why.
local function ask(port, params, line)
  local ssl = require "ssl"
  local s = socket.tcp()
  assert(s:connect("localhost", port))
  local conn = assert(ssl.wrap(s, params))
  conn:settimeout(5)
  local ok, err = conn:dohandshake()
  if not ok then
    conn:close()
    return nil, err
  end
  assert(conn:send((line or "hi") .. "\n"))
  local answer, e = conn:receive("*l")
  conn:close()
  return answer, e
end

describe("a TLS service", function()
  it("finishes the handshake before the handler runs and gives it peer.tls", function()
    need_certs()
    local srv, port = tls_server({ cert = c.localhost.cert, key = c.localhost.key, alpn = { "h2", "http/1.1" } },
      function(line, peer)
        local t = peer.tls
        return table.concat({ line, t.version, t.cipher and "cipher" or "-", tostring(t.sni), tostring(t.alpn),
                              tostring(t.verified) }, " ")
      end)
    local answer = assert(ask(port, { mode = "client", cafile = c.ca.cert, alpn = "http/1.1" }))
    srv:stop()
    local line, version, cipher, sni, alpn, verified = answer:match("^(%S+) (%S+) (%S+) (%S+) (%S+) (%S+)$")
    assert.equals("hi", line)
    assert.truthy(version == "TLSv1.3" or version == "TLSv1.2", version)
    assert.equals("cipher", cipher)
    assert.equals("localhost", sni)       -- the client's SNI: the host it connected to
    assert.equals("http/1.1", alpn)
    assert.equals("false", verified)      -- no client certificate was asked for
  end)

  -- OpenSSL completes a certificate loaded without its chain from the context's store
  -- (here client_ca's file); gsockd builds that chain once, when the context is made.
  it("sends the intermediate that a leaf-only certificate file lacks when client_ca's store has it", function()
    need_certs()
    local dir = proc.tmpdir()
    local store = proc.write(dir, "store.pem", io.open(c.inter.cert):read("a") .. io.open(c.ca.cert):read("a"))
    local srv, port = tls_server({ cert = c.chained.cert, key = c.chained.key, client_ca = store },
      function(line) return "ok " .. line end)
    -- the client trusts the root only: the handshake needs the intermediate from the server
    for _ = 1, 2 do assert.equals("ok hi", (ask(port, { mode = "client", cafile = c.ca.cert }))) end
    srv:stop()
    -- without it in the store, the same client cannot verify the leaf
    srv, port = tls_server({ cert = c.chained.cert, key = c.chained.key }, function(line) return "ok " .. line end)
    local answer, err = ask(port, { mode = "client", cafile = c.ca.cert })
    srv:stop()
    assert.is_nil(answer)
    assert.matches("certificate verify failed", err)
  end)

  -- A server reads ahead during its handshake (one recv per flight): a line that came
  -- with the client's Finished is then in OpenSSL's buffer, not the socket's. dirty(),
  -- socket.select and gsock.wait_read(conn) must see it (SPEC §10), not wait on the socket.
  it("sees a line that came with the client's Finished at once: dirty, select, wait_read", function()
    need_certs()
    local dir = proc.tmpdir()
    local h = proc.write(dir, "h.lua", ([[
local gsock, socket = require "gsock", require "socket"
return { tls = { cert = %q, key = %q }, handle = function(sock)
  local dirty = sock:dirty()
  local t0 = gsock.now()
  local r = socket.select({ sock }, nil, 3)
  local selected = #r == 1 and gsock.now() - t0 < 1
  t0 = gsock.now()
  local waited = pcall(gsock.wait_read, sock, 3) and gsock.now() - t0 < 1
  local line = sock:receive("*l")
  sock:send(("%%s %%s %%s %%s\n"):format(tostring(dirty), tostring(selected), tostring(waited), tostring(line)))
end }
]]):format(c.localhost.cert, c.localhost.key))
    local p = proc.start({ "run", h, "--listen", "127.0.0.1:0" }, { cwd = dir })
    local port = p:listening()[1].port
    for _ = 1, 3 do
      local out = proc.sh(("python3 %s %d hi 2>&1"):format(proc.quote(here .. "support/coalesced_client.py"), port))
      assert.equals("true true true hi", (out:gsub("%s+$", "")), p:stderr())
    end
  end)

  it("closes a client that fails the handshake, logs why, and serves the next one", function()
    need_certs()
    local dir = proc.tmpdir()
    local h = proc.write(dir, "h.lua", ([[
return { tls = { cert = %q, key = %q }, handle = function(sock)
  local l = sock:receive("*l"); if l then sock:send("tls " .. l .. "\n") end end }
]]):format(c.localhost.cert, c.localhost.key))
    local p = proc.start({ "run", h, "--listen", "127.0.0.1:0" }, { cwd = dir })
    local port = p:listening()[1].port
    -- a plain HTTP client: its bytes are no TLS record; the handler never sees them
    local plain = proc.track(assert(socket.connect("127.0.0.1", port)))
    plain:settimeout(5)
    local _, plain_port = plain:getsockname()
    plain:send("GET / HTTP/1.0\r\n\r\n")
    local data, err, partial = plain:receive("*a")
    assert.falsy(((data or "") .. (partial or "")):find("tls", 1, true))
    assert.is_true(data ~= nil or err == "closed")  -- the server closed it (an alert, or nothing)
    assert.truthy(p:wait_stderr("TLS handshake failed", 5), p:stderr())
    -- the line names the client (its address came with the accept, read after it closed)
    assert.truthy(p:stderr():find("127.0.0.1:" .. plain_port, 1, true), p:stderr())
    assert.equals("tls hi", (ask(port, { mode = "client", cafile = c.ca.cert })))
  end)

  it("ends a connection with close_notify when the client sent one, without one when the client "
     .. "is gone (a ragged EOF, a reset after the handshake), and serves the next client", function()
    need_certs()
    local dir = proc.tmpdir()
    local h = proc.write(dir, "h.lua", ([[
return { tls = { cert = %q, key = %q }, handle = function(sock)
  local l = sock:receive("*l"); if l then sock:send("tls " .. l .. "\n") end
  sock:receive("*l") end }
]]):format(c.localhost.cert, c.localhost.key))
    local p = proc.start({ "run", h, "--listen", "127.0.0.1:0" }, { cwd = dir })
    local port = p:listening()[1].port
    local client = proc.quote(here .. "support/close_client.py")
    local function run(mode) return (proc.sh(("python3 %s %d %s 2>&1"):format(client, port, mode)):gsub("%s+$", "")) end
    for round = 1, 2 do
      assert.equals("reset", run("reset"))
      assert.equals("tls hi close_notify", run("notify"), ("round %d: %s"):format(round, p:stderr()))
      assert.equals("tls hi ragged", run("ragged"), ("round %d: %s"):format(round, p:stderr()))
    end
    assert.falsy(p:stderr():find("error", 1, true), p:stderr())
  end)

  it("cuts a handshake that stalls at handshake_timeout while other clients are served", function()
    need_certs()
    local srv, port = tls_server({ cert = c.localhost.cert, key = c.localhost.key, handshake_timeout = 0.3 },
      function(line) return "ok " .. line end)
    local stalled = proc.track(assert(socket.connect("127.0.0.1", port)))   -- never says a word
    stalled:settimeout(3)
    local t0 = gsock.now()
    local served
    local f = gsock.spawn(function()
      served = ask(port, { mode = "client", cafile = c.ca.cert }, "other")
    end)
    local data, err = stalled:receive("*a")
    local took = gsock.now() - t0
    f:join(5)
    srv:stop()
    assert.is_nil(data)
    assert.equals("closed", err)            -- closed by the server, not by our 3 s timeout
    assert.truthy(took >= 0.25 and took < 2, ("closed after %.2f s"):format(took))
    assert.equals("ok other", served)
  end)

  it("bounds the handshake by handshake_timeout, not idle_timeout, which starts after it", function()
    need_certs()
    local srv = gsock.server("127.0.0.1:0", function(sock)
      local t0 = gsock.now()
      local line, err = sock:receive("*l")
      sock:send(("%s %s %.1f\n"):format(tostring(line), tostring(err), gsock.now() - t0))
    end, { tls = { cert = c.localhost.cert, key = c.localhost.key, handshake_timeout = 5 }, idle_timeout = 0.3 })
    srv:start()
    local _, port = srv.listeners[1]:getsockname()
    local ssl = require "ssl"
    local s = socket.tcp()
    assert(s:connect("localhost", tonumber(port)))
    gsock.sleep(0.7)                 -- silent for longer than idle_timeout before the ClientHello
    local conn = assert(ssl.wrap(s, { mode = "client", cafile = c.ca.cert }))
    conn:settimeout(5)
    assert.is_true(conn:dohandshake())
    local answer = conn:receive("*l") -- says nothing: the handler's receive meets idle_timeout
    conn:close()
    srv:stop()
    local line, err, took = (answer or ""):match("^(%S+) (%S+) ([%d.]+)$")
    assert.equals("nil", line, answer)
    assert.equals("timeout", err, answer)
    assert.truthy(tonumber(took) >= 0.2 and tonumber(took) < 2, answer)
  end)

  it("frees a closed connection's TLS at once, not when Lua collects the socket", function()
    need_certs()
    local srv, port = tls_server({ cert = c.localhost.cert, key = c.localhost.key }, function(line) return line end)
    collectgarbage()
    collectgarbage()
    collectgarbage("stop")
    finally(function() collectgarbage("restart") end)
    local before = gsock.stats().tls_connections
    for i = 1, 20 do assert.equals("n" .. i, (ask(port, { mode = "client", cafile = c.ca.cert }, "n" .. i))) end
    local deadline = gsock.now() + 5
    while srv.count > 0 and gsock.now() < deadline do gsock.sleep(0.01) end
    -- the 20 client SSL:Connections wait for the collector; the server's 20 are gone
    assert.equals(20, gsock.stats().tls_connections - before)
    srv:stop()
  end)

  it("with verify_client = \"require\" refuses a client without a certificate and names the one that has one",
    function()
      need_certs()
      local srv, port = tls_server({ cert = c.localhost.cert, key = c.localhost.key, client_ca = c.ca.cert,
                                     verify_client = "require" },
        function(line, peer) return ("%s %s %s"):format(line, tostring(peer.tls.verified), peer.tls.subject) end)
      local with = assert(ask(port, { mode = "client", cafile = c.ca.cert, certificate = c.client.cert,
                                      key = c.client.key }))
      local without, err = ask(port, { mode = "client", cafile = c.ca.cert })
      srv:stop()
      assert.truthy(with:find("^hi true .*gsockd%-test%-client"), with)
      -- TLS 1.3: the client learns of the refusal at its first read, not in its handshake
      assert.is_nil(without)
      assert.is_string(err)
    end)

  it("with verify_client = \"optional\" serves a client without a certificate (peer.tls: not verified, no "
    .. "subject), verifies one that has one, and refuses one whose certificate it cannot verify", function()
    need_certs()
    local srv, port = tls_server({ cert = c.localhost.cert, key = c.localhost.key, client_ca = c.ca.cert,
                                   verify_client = "optional" },
      function(line, peer) return ("%s %s %s"):format(line, tostring(peer.tls.verified), tostring(peer.tls.subject)) end)
    local without = ask(port, { mode = "client", cafile = c.ca.cert })
    local with = ask(port, { mode = "client", cafile = c.ca.cert, certificate = c.client.cert, key = c.client.key })
    local untrusted, err = ask(port, { mode = "client", cafile = c.ca.cert, certificate = c.self_signed.cert,
                                       key = c.self_signed.key })
    srv:stop()
    assert.equals("hi false nil", without)
    assert.truthy(with and with:find("^hi true .*gsockd%-test%-client"), with)
    assert.is_nil(untrusted, "a client with an untrusted certificate was served: " .. tostring(untrusted))
    assert.is_string(err)
  end)

  it("with ciphers (TLS 1.2) or ciphersuites (TLS 1.3) negotiates only those: peer.tls.cipher says which",
    function()
      need_certs()
      local function cipher_of(tls, client)
        local srv, port = tls_server(tls, function(_, peer) return peer.tls.cipher end)
        local params = { mode = "client", cafile = c.ca.cert }
        for k, v in pairs(client or {}) do params[k] = v end
        local answer, err = ask(port, params)
        srv:stop()
        return answer, err
      end
      local leaf = { cert = c.localhost.cert, key = c.localhost.key }
      local function with(extra)
        local t = { cert = leaf.cert, key = leaf.key }
        for k, v in pairs(extra) do t[k] = v end
        return t
      end
      -- OpenSSL's own choices without them are AES-256-GCM: CHACHA20 is the restriction's doing
      assert.equals("ECDHE-ECDSA-AES256-GCM-SHA384", (cipher_of(leaf, { protocol = "tlsv1_2" })))
      assert.equals("TLS_AES_256_GCM_SHA384", (cipher_of(leaf)))
      assert.equals("ECDHE-ECDSA-CHACHA20-POLY1305",
        (cipher_of(with({ ciphers = "ECDHE-ECDSA-CHACHA20-POLY1305" }), { protocol = "tlsv1_2" })))
      assert.equals("TLS_CHACHA20_POLY1305_SHA256", (cipher_of(with({ ciphersuites = "TLS_CHACHA20_POLY1305_SHA256" }))))
      -- a client offering none of them is refused
      local answer, err = cipher_of(with({ ciphers = "ECDHE-ECDSA-CHACHA20-POLY1305" }),
        { protocol = "tlsv1_2", ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256" })
      assert.is_nil(answer)
      assert.is_string(err)
    end)

  it("with protocols = {\"tlsv1_3\"} refuses a TLS 1.2-only client (openssl s_client -tls1_2) and serves "
    .. "a TLS 1.3 one (gsockd run)", function()
    need_certs()
    local dir = proc.tmpdir()
    local h = proc.write(dir, "h.lua", ([[
return { tls = { cert = %q, key = %q, protocols = { "tlsv1_3" } }, handle = function(sock, peer)
  local l = sock:receive("*l"); if l then sock:send(l .. " " .. peer.tls.version .. "\n") end end }
]]):format(c.localhost.cert, c.localhost.key))
    local p = proc.start({ "run", h, "--listen", "127.0.0.1:0" }, { cwd = dir })
    local port = p:listening()[1].port
    local function s_client(version)
      return proc.sh(("printf 'v\\n' | timeout 5 openssl s_client -%s -connect 127.0.0.1:%d -servername localhost "
        .. "-CAfile %s -ign_eof 2>&1; echo \"rc=$?\""):format(version, port, certs.quote(c.ca.cert)))
    end
    local old = s_client("tls1_2")
    assert.is_nil(old:find("v TLSv1", 1, true), old)
    assert.matches("rc=[1-9]%d*\n$", old)
    assert.truthy(p:wait_stderr("TLS handshake failed: [^\n]*protocol", 3), p:stderr())
    local new = s_client("tls1_3")
    assert.truthy(new:find("v TLSv1.3", 1, true), new)
  end)

  it("has a handshake_timeout of 10 s by default (the server object's handshake_timeout; not waited for)",
    function()
      need_certs()
      local srv = gsock.server("127.0.0.1:0", function() end, { tls = { cert = c.localhost.cert,
                                                                       key = c.localhost.key } })
      local value = srv.handshake_timeout
      local set = gsock.server("127.0.0.1:0", function() end, { tls = { cert = c.localhost.cert,
                                                                       key = c.localhost.key, handshake_timeout = 2.5 } })
      if value == nil and set.handshake_timeout == nil then
        pending("the server object does not show its handshake_timeout: the default is not observable without waiting 10 s")
      end
      assert.equals(10, value)
      assert.equals(2.5, set.handshake_timeout)
    end)

  it("chooses its certificate by the client's SNI name from certs (exact names and *.wildcards)", function()
    need_certs()
    local srv, port = tls_server({ certs = {
      { cert = c.localhost.cert, key = c.localhost.key, names = { "localhost" } },
      { cert = c.wrong.cert, key = c.wrong.key, names = { "wrong.example", "*.wild.example" } },
    } }, function(line) return line end)
    local ssl = require "ssl"
    local function subject(name, host)
      local s = socket.tcp()
      assert(s:connect(host or "127.0.0.1", port))
      local conn = assert(ssl.wrap(s, { mode = "client", verify = "none" }))
      conn:settimeout(5)
      if name then conn:sni(name) end
      assert(conn:dohandshake())
      local cn = conn:getpeercertificate():subject()[1].value
      conn:send("x\n")
      conn:receive("*l")
      conn:close()
      return cn
    end
    local wrong_cn = "wrong.example"
    assert.equals(wrong_cn, subject("wrong.example"))
    assert.equals(wrong_cn, subject("a.wild.example"))
    assert.equals("localhost", subject("localhost"))
    assert.equals("localhost", subject("b.a.wild.example"))  -- a wildcard covers one label only
    assert.equals("localhost", subject(nil))                  -- no SNI (an IP address): the first
    srv:stop()
  end)

  it("refuses bad tls tables with an error naming the key or the file", function()
    need_certs()
    local function problem(tls)
      local ok, err = pcall(gsock.server, "127.0.0.1:0", function() end, { tls = tls })
      assert.is_false(ok)
      return err
    end
    assert.equals("bad argument #3 to 'server' (unknown key 'tls.kee'; did you mean 'tls.key'?)",
      problem({ cert = c.localhost.cert, kee = c.localhost.key }):match("bad argument.*"))
    assert.equals("bad argument #3 to 'server' (unknown key 'tls.colour')",
      problem({ cert = c.localhost.cert, key = c.localhost.key, colour = "red" }):match("bad argument.*"))
    assert.matches("'tls.handshake_timeout' must be a positive number", problem({
      cert = c.localhost.cert, key = c.localhost.key, handshake_timeout = -1 }))
    assert.matches("cannot read certificate '" .. proc.lit(c.missing) .. "'", problem({
      cert = c.missing, key = c.localhost.key }))
    assert.matches("private key does not match public key", problem({ cert = c.localhost.cert, key = c.wrong.key }))
    assert.matches("'tls.verify_client' needs 'tls.client_ca'", problem({
      cert = c.localhost.cert, key = c.localhost.key, verify_client = "require" }))
    assert.matches("'tls.certs' must be a list of", problem({ certs = { { cert = c.localhost.cert } } }))
  end)
end)

describe("a handler table's tls table", function()
  it("with an unknown key or a wrong type: gsockd run exits 2 naming the file, line and key", function()
    need_certs()
    local dir = proc.tmpdir()
    for _, case in ipairs({
      { ("{ cert = %q, kee = %q }"):format(c.localhost.cert, c.localhost.key),
        "h.lua:3: handler table: unknown key 'tls.kee'; did you mean 'tls.key'?" },
      { ("{ cert = %q, key = %q, handshake_timeout = \"soon\" }"):format(c.localhost.cert, c.localhost.key),
        "h.lua:3: handler table: 'tls.handshake_timeout' must be a positive number of seconds, got string" },
    }) do
      proc.write(dir, "h.lua", "return {\n  handle = function() end,\n  tls = " .. case[1] .. ",\n}\n")
      local p = proc.start({ "run", "h.lua", "--listen", "127.0.0.1:0" }, { cwd = dir })
      assert.equals(2, p:wait_exit(10), p:describe())
      assert.truthy(p:stderr():find(case[2], 1, true), p:describe())
    end
  end)

  it("with an unknown key in a config service's handler file: gsockd check exits 2 naming it", function()
    need_certs()
    local dir = proc.tmpdir()
    proc.write(dir, "h.lua", ("return {\n  handle = function() end,\n  tls = { cert = %q, kee = %q },\n}\n")
      :format(c.localhost.cert, c.localhost.key))
    proc.write(dir, "s.toml", ('[services.typo]\nlisten = "127.0.0.1:%d"\nhandler = "h.lua"\n'):format(proc.free_port()))
    local check = proc.start({ "check", "s.toml" }, { cwd = dir })
    assert.equals(2, check:wait_exit(10), check:describe())
    assert.truthy(check:stderr():find("h.lua:3: handler table: unknown key 'tls.kee'; did you mean 'tls.key'?", 1, true),
      check:describe())
  end)
end)

describe("a TLS config service", function()
  it("is served by gsockd serve, and gsockd check names each bad tls key with file and line", function()
    need_certs()
    local dir = proc.tmpdir()
    proc.write(dir, "h.lua", [[return function(sock, peer)
  local l = sock:receive("*l"); sock:send(l .. " " .. peer.tls.version .. "\n") end]])
    local port = proc.free_port()
    proc.write(dir, "good.toml", ([[
[services.secure]
listen = "127.0.0.1:%d"
handler = "h.lua"
tls = { cert = %q, key = %q }
]]):format(port, c.localhost.cert, c.localhost.key))
    proc.write(dir, "bad.toml", ([[
[services.secure]
listen = "127.0.0.1:%d"
handler = "h.lua"
tls = { cert = %q, key = %q }

[services.typo]
listen = "127.0.0.1:%d"
handler = "h.lua"
tls = { cert = %q, kee = %q, verify_client = "always" }

[services.gone]
listen = "127.0.0.1:%d"
handler = "h.lua"
tls = { cert = "missing.pem", key = %q }

[services.ciphers]
listen = "127.0.0.1:%d"
handler = "h.lua"
tls = { cert = %q, key = %q, ciphers = "NO-SUCH-CIPHER" }
]]):format(port + 1, c.localhost.cert, c.wrong.key, port + 2, c.localhost.cert, c.localhost.key, port + 3,
            c.localhost.key, port + 4, c.localhost.cert, c.localhost.key))
    local check = proc.start({ "check", "bad.toml" }, { cwd = dir })
    assert.equals(2, check:wait_exit(10))
    local err = check:stderr()
    assert.matches("bad.toml:4: services.secure.tls.key: private key '[^']*' does not match the certificate", err)
    assert.matches("bad.toml:9: services.typo.tls.kee: unknown key; did you mean 'key'%?", err)
    assert.matches("bad.toml:9: services.typo.tls.verify_client: expected one of \"require\", \"optional\"", err)
    assert.matches("bad.toml:14: services.gone.tls.cert: cannot read certificate 'missing.pem'", err)
    assert.matches("bad.toml:19: services.ciphers.tls.ciphers: invalid ciphers 'NO%-SUCH%-CIPHER'", err)

    local p = proc.start({ "serve", "good.toml" }, { cwd = dir })
    p:listening()
    local answer = assert(ask(port, { mode = "client", cafile = c.ca.cert }))
    assert.truthy(answer:find("^hi TLSv1%.[23]$"), answer)
  end)

  it("reloads its certificate on SIGHUP; a broken certificate file keeps the running one", function()
    need_certs()
    local dir = proc.tmpdir()
    proc.write(dir, "h.lua", [[return function(sock) local l = sock:receive("*l"); sock:send(l .. "\n") end]])
    local function copy(from, to) proc.write(dir, to, certs.slurp(from)) end
    copy(c.localhost.cert, "cert.pem")
    copy(c.localhost.key, "key.pem")
    local port = proc.free_port()
    proc.write(dir, "s.toml", ([[
[services.secure]
listen = "127.0.0.1:%d"
handler = "h.lua"
tls = { cert = "cert.pem", key = "key.pem" }
]]):format(port))
    local function serial()
      local ssl = require "ssl"
      local s = socket.tcp()
      assert(s:connect("localhost", port))
      local conn = assert(ssl.wrap(s, { mode = "client", cafile = c.ca.cert }))
      conn:settimeout(5)
      assert(conn:dohandshake())
      local n = conn:getpeercertificate():serial()
      conn:send("bye\n")
      conn:receive("*l")
      conn:close()
      return n
    end
    local p = proc.start({ "serve", "s.toml" }, { cwd = dir })
    p:listening()
    local first = serial()
    -- another certificate and its key (the chained leaf has another serial)
    copy(c.chained.chain, "cert.pem")
    copy(c.chained.key, "key.pem")
    p:signal("HUP")
    assert.truthy(p:wait_stderr("reloaded 1 service", 5), p:stderr())
    local second = serial()
    assert.are_not.equal(first, second)
    proc.write(dir, "cert.pem", "not a certificate\n")
    p:signal("HUP")
    assert.truthy(p:wait_stderr("reload failed, the running code keeps serving", 5), p:stderr())
    assert.equals(second, serial())
  end)

  it("with workers, a session resumes on any worker (the supervisor shares the ticket keys): resumed "
    .. "connections were served by both workers", function()
    need_certs()
    -- the handler answers a line with its worker's pid
    local p, port = tls_support.serve_config(proc.tmpdir(), [[return function(sock)
  local l = sock:receive("*l"); sock:send(tostring(io.open("/proc/self/stat"):read("n")) .. "\n") end]],
      c.localhost, "workers = 2")
    local function connect(session)
      local s = socket.tcp()
      s:settimeout(5)
      assert(s:connect("localhost", port))
      local sess = assert(s:sslhandshake(session, "localhost", false))
      assert(s:send("x\n"))
      local pid = assert(s:receive("*l"))      -- a TLS 1.3 ticket comes with the first read
      local resumed = s:_tlsinfo().resumed
      s:close()
      return sess, resumed, pid
    end
    local session = connect(nil)
    local resumed, by_pid, pids = 0, {}, 0
    local tries = 0
    -- SO_REUSEPORT spreads connections by their ports: at least 12, until both workers resumed some
    while tries < 12 or (pids < 2 and tries < 60) do
      tries = tries + 1
      local sess, r, pid = connect(session)
      session = sess
      if r then
        resumed = resumed + 1
        if not by_pid[pid] then pids = pids + 1 end
        by_pid[pid] = (by_pid[pid] or 0) + 1
      end
    end
    assert.equals(tries, resumed, "not every connection resumed")
    assert.equals(2, pids, ("%d resumed connections were all served by one worker: %s"):format(resumed,
      next(by_pid) or "none"))
    assert.is_true(p:alive())
  end)
end)

describe("gsockd check and TLS certificates", function()
  it("finds a broken chain: a certificate file whose second certificate did not issue the first", function()
    need_certs()
    local dir = proc.tmpdir()
    proc.write(dir, "h.lua", "return function() end\n")
    proc.write(dir, "broken.pem", certs.slurp(c.localhost.cert) .. certs.slurp(c.wrong.cert))
    proc.write(dir, "good.pem", certs.slurp(c.chained.chain))
    local function check(cert, key)
      proc.write(dir, "s.toml", ([[
[services.secure]
listen = "127.0.0.1:%d"
handler = "h.lua"
tls = { cert = %q, key = %q }
]]):format(proc.free_port(), cert, key))
      local p = proc.start({ "check", "s.toml" }, { cwd = dir })
      return p:wait_exit(10), p:stderr()
    end
    local status, err = check("broken.pem", c.localhost.key)
    assert.equals(2, status)
    assert.matches("s.toml:4: services.secure.tls.cert: the chain in 'broken.pem' is broken: certificate 2 did not "
      .. "issue certificate 1", err)
    assert.equals(0, (check("good.pem", c.chained.key)))
  end)

  it("names the key of an encrypted key file with a wrong or missing password, and accepts the right one", function()
    need_certs()
    local dir = proc.tmpdir()
    proc.write(dir, "h.lua", "return function() end\n")
    local function check(password)
      proc.write(dir, "s.toml", ([[
[services.secure]
listen = "127.0.0.1:%d"
handler = "h.lua"
tls = { cert = %q, key = %q%s }
]]):format(proc.free_port(), c.client.cert, c.client.encrypted_key,
        password and (", password = %q"):format(password) or ""))
      local p = proc.start({ "check", "s.toml" }, { cwd = dir })
      return p:wait_exit(10), p:stderr()
    end
    for _, password in ipairs({ "wrong", false }) do
      local status, err = check(password or nil)
      assert.equals(2, status, err)
      assert.matches("s.toml:4: services.secure.tls.key: ", err)
      assert.truthy(err:find(c.client.encrypted_key, 1, true), err)
    end
    local status, err = check("secret")
    assert.equals(0, status, err)
  end)

  it("warns about a certificate that expires within 14 days", function()
    need_certs()
    local dir = proc.tmpdir()
    proc.write(dir, "h.lua", "return function() end\n")
    assert(os.execute(("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout %s "
      .. "-out %s -days 5 -subj /CN=localhost >/dev/null 2>&1"):format(certs.quote(dir .. "/soon.key"),
      certs.quote(dir .. "/soon.pem"))))
    proc.write(dir, "s.toml", ([[
[services.secure]
listen = "127.0.0.1:%d"
handler = "h.lua"
tls = { cert = "soon.pem", key = "soon.key" }
]]):format(proc.free_port()))
    local check = proc.start({ "check", "s.toml" }, { cwd = dir })
    assert.equals(0, check:wait_exit(10))
    assert.matches("warning: s.toml:4: services.secure.tls.cert: certificate 'soon.pem' expires in [45] days",
      check:stderr())
  end)
end)

describe("SSLKEYLOGFILE", function()
  it("gets the key material of a client's handshake (NSS key log lines)", function()
    need_certs()
    local srv, port = tls_server({ cert = c.localhost.cert, key = c.localhost.key }, function(line) return line end)
    local dir = proc.tmpdir()
    local script = proc.write(dir, "client.lua", ([[
local socket, ssl = require "socket", require "ssl"
local s = assert(socket.connect("localhost", %d))
local conn = assert(ssl.wrap(s, { mode = "client", cafile = %q }))
conn:settimeout(5)
assert(conn:dohandshake())
conn:send("hi\n")
print(conn:receive("*l"))
conn:close()
]]):format(port, c.ca.cert))
    local log = dir .. "/keys.log"
    local p = proc.start({ "run", script }, { cwd = dir, env = { SSLKEYLOGFILE = log } })
    local status = p:wait_exit(10)   -- waits in this fiber: the server goes on serving
    srv:stop()
    assert.equals(0, status, p:stderr())
    local text = certs.slurp(log) or ""
    assert.truthy(text:find("CLIENT_HANDSHAKE_TRAFFIC_SECRET %x+ %x+") or text:find("CLIENT_RANDOM %x+ %x+"), text)
  end)
end)
