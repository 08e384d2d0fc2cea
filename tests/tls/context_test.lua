-- ssl.newcontext and ssl.wrap argument errors (SPEC §10): they return nil and a
-- message naming what is wrong.
--
-- Oracle (LuaSec 1.2.0): a missing mode or protocol raises "bad argument #2 to
-- 'setmode'"; an unknown protocol gives nil, "invalid protocol (tlsv9)", an unknown
-- option nil, "invalid option (no_such_option)"; unloadable files give messages
-- without the file's name ("error loading CA locations ((null))", "error loading
-- certificate (no start line)", "error loading private key (PEM lib)"); LuaSec
-- accepts mode = "sideways". SPEC, not LuaSec: the mode is checked, "protocol"
-- defaults to "any" (the SPEC lists it as optional), and file errors name the file.
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/tls/"
local tls = dofile(here .. "support/tls.lua")
local ssl = tls.load_ssl()


setup(tls.setup)
teardown(tls.teardown)
after_each(tls.cleanup)

--- ssl.newcontext(params) under pcall: returns ctx, err (err = the raised message if it raised).
local function newcontext(params)
  local r = table.pack(pcall(ssl.newcontext, params))
  if not r[1] then return nil, tostring(r[2]), true end
  return r[2], r[3], false
end

local function assert_fails_naming(params, ...)
  local ctx, err = newcontext(params)
  assert.is_nil(ctx, "a context was made")
  assert.equals("string", type(err))
  for i = 1, select("#", ...) do
    local word = select(i, ...)
    assert.truthy(err:find(word, 1, true), ("the message %q does not name %q"):format(err, word))
  end
  return err
end

describe("ssl.newcontext", function()
  before_each(tls.ready)

  it("makes client and server contexts; protocol defaults to 'any' (SPEC)", function()
    assert.is_not_nil((newcontext({ mode = "client", protocol = "any" })))
    assert.is_not_nil((newcontext({ mode = "client" })))
    assert.is_not_nil((newcontext({ mode = "client", protocol = "tlsv1_2" })))
    assert.is_not_nil((newcontext({ mode = "client", protocol = "tlsv1_3" })))
    assert.is_not_nil((newcontext(tls.server_params())))
  end)

  it("without a mode fails naming 'mode' (LuaSec raises a bad argument error)", function()
    assert_fails_naming({ protocol = "any" }, "mode")
  end)

  it("with mode = 'sideways' fails naming it (SPEC: LuaSec accepts it)", function()
    assert_fails_naming({ mode = "sideways", protocol = "any" }, "sideways")
  end)

  it("with an unknown protocol returns nil, 'invalid protocol (tlsv9)' (oracle)", function()
    local ctx, err, raised = newcontext({ mode = "client", protocol = "tlsv9" })
    assert.is_nil(ctx)
    assert.is_false(raised, "it raised: " .. tostring(err))
    assert.equals("invalid protocol (tlsv9)", err)
  end)

  it("with protocol = 'tlsv1' or 'tlsv1_1' returns nil and a message naming it (SPEC: TLS 1.2 is the "
    .. "minimum; README: \"protocol = 'tlsv1' is refused\"); ssl.wrap returns it too", function()
    for _, old in ipairs({ "tlsv1", "tlsv1_1" }) do
      local ctx, err, raised = newcontext({ mode = "client", protocol = old })
      assert.is_nil(ctx, old .. " made a context")
      assert.is_false(raised, "it raised: " .. tostring(err))
      assert.truthy(err:find(old, 1, true), err)
    end
    local tcp = tls.tcp(tls.peer("echo").port)
    local conn, err = ssl.wrap(tcp, tls.client_params({ protocol = "tlsv1" }))
    assert.is_nil(conn)
    assert.truthy(tostring(err):find("tlsv1", 1, true), tostring(err))
  end)

  it("with an unknown option returns nil, an error naming it (oracle: 'invalid option (no_such_option)')", function()
    local ctx, err, raised = newcontext({ mode = "client", protocol = "any", options = { "all", "no_such_option" } })
    assert.is_nil(ctx)
    assert.is_false(raised, "it raised: " .. tostring(err))
    assert.equals("invalid option (no_such_option)", err)
    assert.is_not_nil((newcontext({ mode = "client", protocol = "any", options = { "all", "no_sslv2", "no_sslv3" } })))
  end)

  it("with an unknown key returns nil, a message naming it, with the key it is likely a typo of (SPEC, not LuaSec)", function()
    -- LuaSec ignores an unknown key: a misspelt cafile verified against the system store.
    local ctx, err, raised = newcontext({ mode = "client", cafle = "/nope" })
    assert.is_nil(ctx)
    assert.is_false(raised, "it raised: " .. tostring(err))
    assert.equals("unknown key 'cafle' in the TLS parameters; did you mean 'cafile'?", err)
    ctx, err = newcontext({ mode = "client", colour = "red" })
    assert.is_nil(ctx)
    assert.equals("unknown key 'colour' in the TLS parameters", err)
    ctx, err = newcontext({ mode = "client", "any" })
    assert.is_nil(ctx)
    assert.equals("unknown key '1' in the TLS parameters", err)
  end)

  it("takes every key LuaSec's newcontext reads (dane unused; a dhparam function that returns nothing gives "
    .. "no DHE suites, as in LuaSec)", function()
    local c = tls.certs
    local ctx, err = newcontext({ mode = "server", protocol = "any", key = c.localhost.key,
      certificate = c.localhost.cert, cafile = c.ca.cert, capath = c.dir, verify = "none", options = "all",
      ciphers = "HIGH", ciphersuites = "TLS_AES_128_GCM_SHA256", depth = 3, password = "unused",
      curve = "prime256v1", curveslist = "prime256v1", dhparam = function() end, verifyext = "lsec_continue",
      alpn = { "http/1.1" }, dane = false })
    assert.is_not_nil(ctx, tostring(err))
    ctx, err = newcontext({ mode = "server", certificates = { { certificate = c.localhost.cert, key = c.localhost.key } } })
    assert.is_not_nil(ctx, tostring(err))
  end)

  it("with a value of the wrong type returns nil, 'invalid cafile (string expected, got number)'", function()
    local ctx, err, raised = newcontext({ mode = "client", cafile = 5 })
    assert.is_nil(ctx)
    assert.is_false(raised, "it raised: " .. tostring(err))
    assert.equals("invalid cafile (string expected, got number)", err)
    ctx, err = newcontext({ mode = "client", depth = "9" })
    assert.is_nil(ctx)
    assert.equals("invalid depth (number expected, got string)", err)
    ctx, err = newcontext({ mode = "client", verify = 1 })
    assert.is_nil(ctx)
    assert.equals("invalid verify (string or table expected, got number)", err)
  end)

  it("with an unknown verify mode returns nil, 'invalid verify option (sometimes)' (oracle)", function()
    local ctx, err = newcontext({ mode = "client", protocol = "any", verify = "sometimes" })
    assert.is_nil(ctx)
    assert.equals("invalid verify option (sometimes)", err)
  end)

  it("with a cafile that does not exist or holds no certificate fails naming the file (SPEC)", function()
    assert_fails_naming({ mode = "client", protocol = "any", cafile = tls.certs.missing }, tls.certs.missing)
    assert_fails_naming({ mode = "client", protocol = "any", cafile = tls.certs.garbage }, tls.certs.garbage)
  end)

  it("with a certificate file that does not exist or is not PEM fails naming the file (SPEC)", function()
    local c = tls.certs
    assert_fails_naming(tls.server_params({ certificate = c.missing }), c.missing)
    assert_fails_naming(tls.server_params({ certificate = c.garbage }), c.garbage)
  end)

  it("with a key file that does not exist or is not PEM fails naming the file (SPEC)", function()
    local c = tls.certs
    assert_fails_naming(tls.server_params({ key = c.missing }), c.missing)
    assert_fails_naming(tls.server_params({ key = c.garbage }), c.garbage)
  end)

  it("with a key that does not match the certificate returns LuaSec's 'private key does not match public key', then the files", function()
    local params = tls.server_params({ key = tls.certs.wrong.key })
    local ctx, err = newcontext(params)
    assert.is_nil(ctx)
    assert.equals(("private key does not match public key (key '%s', certificate '%s')"):format(params.key, params.certificate), err)
  end)

  it("an encrypted key loads with password = a string or a function, and then authenticates the client (oracle)", function()
    local c = tls.certs
    for _, password in ipairs({ "secret", function() return "secret" end }) do
      local ctx, err = newcontext(tls.client_params({ certificate = c.client.cert, key = c.client.encrypted_key,
        password = password }))
      assert.is_not_nil(ctx, tostring(err))
      local conn = tls.track(assert(ssl.wrap(tls.tcp(tls.peer("mtls").port), ctx)))
      conn:settimeout(5)
      conn:sni("localhost")
      assert.is_true(conn:dohandshake())
      conn:send("WHO\n")
      assert.equals("gsockd-test-client", conn:receive("*l"))
    end
  end)

  it("an encrypted key with a wrong password or none fails at once (oracle: 'bad decrypt')", function()
    local c = tls.certs
    local ctx, err = newcontext(tls.client_params({ certificate = c.client.cert, key = c.client.encrypted_key,
      password = "wrong" }))
    assert.is_nil(ctx)
    assert.truthy(tostring(err):find("bad decrypt", 1, true), tostring(err))
    -- without a password: in a subprocess without a terminal, because OpenSSL's default
    -- (LuaSec's and python's too) is to prompt "Enter PEM pass phrase:" on it
    local r = tls.run([[
local ssl = require "ssl"
local cert, key = ...
local t0 = os.time()
local ctx, err = ssl.newcontext({ mode = "client", protocol = "any", certificate = cert, key = key })
print("newcontext", ctx, err, os.time() - t0 <= 1)
]], nil, { c.client.cert, c.client.encrypted_key }, 5)
    assert.equals(0, r.status, r.output)
    assert.matches("^newcontext\tnil\t.+\ttrue\n$", r.stdout, r.output)
  end)

  it("a context is reusable: ssl.wrap(sock, ctx) for several connections", function()
    local ctx = assert(ssl.newcontext(tls.client_params()))
    for i = 1, 3 do
      local conn = tls.track(assert(ssl.wrap(tls.tcp(tls.peer("echo").port), ctx)))
      conn:settimeout(5)
      conn:sni("localhost")
      assert.is_true(conn:dohandshake())
      conn:send("ctx" .. i .. "\n")
      assert.equals("ctx" .. i, conn:receive("*l"))
      conn:close()
    end
  end)

  it("ssl.wrap with bad params returns nil and newcontext's message, leaving the socket usable", function()
    local tcp = tls.tcp(tls.peer("echo").port)
    local conn, err = ssl.wrap(tcp, { mode = "client", protocol = "tlsv9" })
    assert.is_nil(conn)
    assert.equals("invalid protocol (tlsv9)", err)
    assert.is_true(tcp:getfd() >= 0)
  end)

  it("ssl.wrap with a params table holding an unknown key returns nil and the message naming it", function()
    local tcp = tls.tcp(tls.peer("echo").port)
    local conn, err = ssl.wrap(tcp, tls.client_params({ verfy = "none" }))
    assert.is_nil(conn)
    assert.equals("unknown key 'verfy' in the TLS parameters; did you mean 'verify'?", err)
    assert.is_true(tcp:getfd() >= 0)
  end)

  -- DHE suites need an RSA certificate (the test certificates are ECDSA) and DH parameters:
  -- both made here, once (RFC 7919's ffdhe2048 group, which takes no time to make).
  local rsa
  local function rsa_server()
    if rsa then return rsa end
    local dir = tls.certs.dir
    rsa = { cert = dir .. "/rsa.pem", key = dir .. "/rsa.key", dh = dir .. "/dh.pem" }
    assert(os.execute(("openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=localhost -days 2 -keyout %s -out %s "
      .. "2>/dev/null && openssl genpkey -genparam -algorithm DH -pkeyopt group:ffdhe2048 -out %s 2>/dev/null")
      :format(rsa.key, rsa.cert, rsa.dh)))
    local f = assert(io.open(rsa.dh))
    rsa.pem = f:read("a")
    f:close()
    return rsa
  end
  local DHE = "DHE-RSA-AES128-GCM-SHA256"

  --- A TLS 1.2 handshake of a gsockd client that offers only DHE with a gsockd server of
  --- `server_extra`: the client's handshake result and error.
  local function dhe_handshake(server_extra)
    local r = rsa_server()
    local srv, port = tls.listen()
    local server_err
    local f = tls.spawn(function()
      srv:settimeout(5)
      local a = tls.track(assert(srv:accept()))
      local params = tls.server_params({ certificate = r.cert, key = r.key })
      for k, v in pairs(server_extra) do params[k] = v end
      local s = tls.track(assert(ssl.wrap(a, params)))
      s:settimeout(5)
      local ok, err = s:dohandshake()
      if not ok then server_err = err end
    end)
    local conn = tls.track(assert(ssl.wrap(tls.tcp(port), tls.client_params({ protocol = "tlsv1_2", ciphers = DHE,
      verify = "none", cafile = false }))))
    conn:settimeout(5)
    local ok, err = conn:dohandshake()
    assert.is_true(f:join(5))
    srv:close()
    return ok, err, conn, server_err
  end

  it("dhparam: the PEM DH parameters the function returns let a server negotiate a DHE suite; it is called "
    .. "with (false, 1024), as OpenSSL calls LuaSec's; without dhparam the same client finds no shared cipher", function()
    local r = rsa_server()
    local args
    local ok, err, conn = dhe_handshake({ dhparam = function(...) args = table.pack(...) return r.pem end })
    assert.is_true(ok, tostring(err))
    assert.equals(DHE, conn:info("cipher"))
    assert.same({ n = 2, false, 1024 }, args)
    conn:send("x")   -- (the server end is closed by now: only the cipher mattered)

    local ok2, err2, _, server_err = dhe_handshake({})
    assert.is_false(ok2)
    assert.equals("string", type(err2))
    assert.truthy(tostring(server_err):find("no shared cipher", 1, true), tostring(server_err))
  end)

  it("dhparam that is not a function returns nil, 'invalid DH parameter type' (oracle: LuaSec's message)", function()
    local ctx, err = newcontext(tls.server_params({ dhparam = "ffdhe2048" }))
    assert.is_nil(ctx)
    assert.equals("invalid DH parameter type", err)
  end)

  it("dhparam whose function returns text without DH parameters, or parameters too small for OpenSSL's "
    .. "security level, returns nil and a message naming dhparam; what the function raises goes on up "
    .. "(LuaSec would raise it inside OpenSSL's handshake)", function()
    local ctx, err, raised = newcontext(tls.server_params({ dhparam = function() error("no parameters here", 0) end }))
    assert.is_nil(ctx)
    assert.is_true(raised)
    assert.equals("no parameters here", err)
    local small = tls.certs.dir .. "/dh1536.pem"
    assert(os.execute("openssl genpkey -genparam -algorithm DH -pkeyopt group:modp_1536 -out " .. small .. " 2>/dev/null"))
    local f = assert(io.open(small))
    local pem = f:read("a")
    f:close()
    ctx, err = newcontext(tls.server_params({ dhparam = function() return pem end }))
    assert.is_nil(ctx)
    assert.equals("invalid dhparam (OpenSSL refused the DH parameters: too small for its security level)", err)
    ctx, err = newcontext(tls.server_params({ dhparam = function() return "-----BEGIN DH PARAMETERS-----\nxx\n" end }))
    assert.is_nil(ctx)
    assert.equals("invalid dhparam (the function returned no PEM DH parameters)", err)
    ctx, err = newcontext(tls.server_params({ dhparam = function() return io.open(tls.certs.localhost.key):read("a") end }))
    assert.is_nil(ctx)
    assert.equals("invalid dhparam (the function returned no PEM DH parameters)", err)
  end)
end)
