-- DANE (LuaSec's `dane` context key, conn:setdane and conn:settlsa; RFC 6698/7671), as
-- Prosody's s2s DANE module uses them: the TLSA records come from DNS; here they are made
-- from the test certificates with the openssl CLI. Oracle: Debian's LuaSec has setdane
-- and settlsa, each returning a boolean.
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/tls/"
local tls = dofile(here .. "support/tls.lua")
local ssl = tls.load_ssl()

setup(tls.setup)
teardown(tls.teardown)
after_each(tls.cleanup)

--- SHA-256 of a certificate's public key (selector 1) or of the whole certificate (0).
local function sha256(cert, selector)
  local sh, q = tls.proc.sh, tls.proc.quote
  local out = selector == 1
    and sh("openssl x509 -in " .. q(cert) .. " -noout -pubkey | openssl pkey -pubin -outform DER | openssl dgst -sha256 -binary")
    or sh("openssl x509 -in " .. q(cert) .. " -outform DER | openssl dgst -sha256 -binary")
  assert(#out == 32, "openssl gave no digest for " .. cert)
  return out
end

--- A client to the peer of `kind` whose context has `dane` (nil: true) and no cafile: the
--- system store, which lacks the test CA, so only DANE can verify it. Not yet handshaken.
local function dane_client(kind, dane)
  return tls.wrap_client(kind, { cafile = false, dane = dane == nil and true or dane })
end

describe("DANE", function()
  before_each(tls.ready)

  it("a DANE-EE record (3 1 1) of the server's key verifies a certificate the CA store does not: the handshake "
    .. "succeeds, getpeerverification() is true and the connection carries data", function()
    local conn = dane_client("echo")
    assert.is_true(conn:setdane("localhost"))
    assert.is_true(conn:settlsa(3, 1, 1, sha256(tls.certs.localhost.cert, 1)))
    assert.same({ true }, { conn:dohandshake() })
    assert.is_true(conn:getpeerverification())
    conn:send("dane\n")
    assert.equals("dane", conn:receive("*l"))
  end)

  it("without a TLSA record the same client fails as any client that cannot verify (the CA store lacks the CA)",
    function()
    local conn = dane_client("echo")
    assert.is_true(conn:setdane("localhost"))
    local ok, err = conn:dohandshake()
    assert.is_false(ok)
    assert.truthy(err:find("unable to get local issuer certificate", 1, true), err)
  end)

  it("a record that matches nothing fails the handshake with OpenSSL's reason and closes the connection", function()
    local conn = dane_client("echo")
    assert.is_true(conn:setdane("localhost"))
    assert.is_true(conn:settlsa(3, 1, 1, ("\0"):rep(32)))
    local ok, err = conn:dohandshake()
    assert.is_false(ok)
    assert.equals("certificate verify failed: no matching DANE TLSA records", err)
    local data, rerr = conn:receive()
    assert.is_nil(data)
    assert.equals("closed", rerr)
  end)

  it("a DANE-TA record (2 0 1) of the intermediate verifies the chain the server sends, with the base domain "
    .. "as the name to check", function()
    local conn = dane_client("chain")
    assert.is_true(conn:setdane("localhost"))
    assert.is_true(conn:settlsa(2, 0, 1, sha256(tls.certs.inter.cert, 0)))
    assert.same({ true }, { conn:dohandshake() })
    conn:send("ta\n")
    assert.equals("ta", conn:receive("*l"))
  end)

  it("DANE-TA with a base domain the certificate is not for fails with 'host name mismatch'", function()
    local conn = dane_client("chain")
    assert.is_true(conn:setdane("other.example"))
    assert.is_true(conn:settlsa(2, 0, 1, sha256(tls.certs.inter.cert, 0)))
    local ok, err = conn:dohandshake()
    assert.is_false(ok)
    assert.equals("host name mismatch: certificate is for 'localhost, 127.0.0.1', not 'other.example'", err)
  end)

  it("DANE-EE checks the certificate's names unless dane = { 'no_ee_namechecks' } (RFC 7671 §5.1)", function()
    local digest = sha256(tls.certs.wrong.cert, 1)   -- the peer's certificate is for wrong.example
    local conn = dane_client("wrong")
    assert.is_true(conn:setdane("localhost"))
    assert.is_true(conn:settlsa(3, 1, 1, digest))
    local ok, err = conn:dohandshake()
    assert.is_false(ok)
    assert.equals("host name mismatch: certificate is for 'wrong.example', not 'localhost'", err)

    local relaxed = dane_client("wrong", { "no_ee_namechecks" })
    assert.is_true(relaxed:setdane("localhost"))
    assert.is_true(relaxed:settlsa(3, 1, 1, digest))
    assert.same({ true }, { relaxed:dohandshake() })
  end)

  it("setdane and settlsa return false where they cannot apply: a context without dane, settlsa before "
    .. "setdane, a matching type OpenSSL does not know, after the handshake (oracle: LuaSec's booleans)", function()
    local plain = tls.wrap_client("echo", {})
    assert.is_false(plain:setdane("localhost"))
    assert.is_false(plain:settlsa(3, 1, 1, sha256(tls.certs.localhost.cert, 1)))

    local conn = dane_client("echo")
    assert.is_false(conn:settlsa(3, 1, 1, sha256(tls.certs.localhost.cert, 1)))   -- before setdane
    assert.is_true(conn:setdane("localhost"))
    assert.is_false(conn:setdane("localhost"))                                     -- once only
    assert.is_false(conn:settlsa(3, 1, 1, "short"))                                -- not a SHA-256
    assert.is_true(conn:settlsa(3, 1, 1, sha256(tls.certs.localhost.cert, 1)))
    assert.is_true(conn:dohandshake())
    assert.is_false(conn:settlsa(3, 1, 1, sha256(tls.certs.localhost.cert, 1)))   -- too late
  end)

  it("argument errors raise as luaL_check* would; dane = { 'bogus' } returns nil, 'invalid dane option (bogus)'",
    function()
    local conn = dane_client("echo")
    assert.has_error(function() conn:setdane() end, "bad argument #1 to 'setdane' (string expected, got no value)")
    assert.has_error(function() conn:settlsa(3, 1, "x", "y") end,
      "bad argument #3 to 'settlsa' (number expected, got string)")
    assert.has_error(function() conn:settlsa(3, 1, 1) end, "bad argument #4 to 'settlsa' (string expected, got no value)")
    local ctx, err = ssl.newcontext(tls.client_params({ dane = { "bogus" } }))
    assert.is_nil(ctx)
    assert.equals("invalid dane option (bogus)", err)
  end)

  it("a pooled DANE connection comes back only to a connection with the same TLSA records", function()
    local record = sha256(tls.certs.localhost.cert, 1)
    local function connect(records)
      local conn = dane_client("echo")
      assert.is_true(conn:setdane("localhost"))
      for _, r in ipairs(records) do assert.is_true(conn:settlsa(3, 1, 1, r)) end
      conn:settimeout(5)
      return conn
    end
    local first = connect({ record })
    assert.is_true(first:dohandshake())
    first:send("one\n")
    assert.equals("one", first:receive("*l"))
    assert.equals(1, first:setkeepalive())

    local other = connect({ record, ("\1"):rep(32) })   -- other records: a handshake of its own
    assert.is_true(other:dohandshake())
    assert.equals(0, other:getreusedtimes())
    other:close()

    local again = connect({ record })
    assert.is_true(again:dohandshake())
    assert.equals(1, again:getreusedtimes())
    again:send("two\n")
    assert.equals("two", again:receive("*l"))
  end)
end)
