-- LuaSec's channel-binding and chain methods (SPEC §10's LuaSec surface): getfinished and
-- getpeerfinished (tls-unique), exportkeyingmaterial (tls-exporter, RFC 5705 / RFC 8446
-- §7.5) and getlocalchain. Oracle: Debian's LuaSec under plain lua5.4, as the client of a
-- gsockd server, must derive the same bytes.
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/tls/"
local tls = dofile(here .. "support/tls.lua")
local proc = tls.proc

setup(tls.setup)
teardown(tls.teardown)
after_each(tls.cleanup)

local LABEL = "EXPERIMENTAL-gsockd-test"

local function hex(s)
  if s == nil then return "nil" end
  return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

describe("channel binding", function()
  before_each(tls.ready)

  it("each end's getfinished() is the other's getpeerfinished(), for TLS 1.3 and TLS 1.2", function()
    for _, protocol in ipairs({ "tlsv1_3", "tlsv1_2" }) do
      local client, server = tls.pair({ protocol = protocol }, { protocol = protocol })
      local mine, theirs = client:getfinished(), client:getpeerfinished()
      assert.equals("string", type(mine))
      assert.is_true(#mine >= 12, protocol .. ": " .. #mine .. " bytes")
      assert.are_not.equal(mine, theirs)
      assert.equals(mine, server:getpeerfinished())
      assert.equals(theirs, server:getfinished())
    end
  end)

  it("exportkeyingmaterial gives both ends the same bytes; another label, length or context gives others", function()
    local client, server = tls.pair()
    local a = client:exportkeyingmaterial(LABEL, 32)
    assert.equals(32, #a)
    assert.equals(a, server:exportkeyingmaterial(LABEL, 32))
    assert.equals(16, #client:exportkeyingmaterial(LABEL, 16))
    assert.are_not.equal(a, client:exportkeyingmaterial(LABEL .. "-2", 32))
    local with = client:exportkeyingmaterial(LABEL, 32, "context")
    assert.are_not.equal(a, with)
    assert.equals(with, server:exportkeyingmaterial(LABEL, 32, "context"))
    assert.equals(client:exportkeyingmaterial(LABEL, 32, ""), server:exportkeyingmaterial(LABEL, 32, ""))
  end)

  it("Debian's LuaSec as the client of a gsockd server derives the same keying material and Finished messages",
    function()
    local missing = tls.missing_tool()
    if missing then return pending(missing) end
    local probe = proc.sh("lua5.4 -e 'require \"ssl\"; print(package.searchpath(\"ssl\", package.path))'")
    if not probe:match("/ssl%.lua\n$") then return pending("lua5.4 with Debian's lua-sec is not installed") end
    local dir = proc.tmpdir()
    local script = proc.write(dir, "client.lua", ([[
local socket, ssl = require "socket", require "ssl"
local function hex(s) return s and (s:gsub(".", function(c) return ("%%02x"):format(c:byte()) end)) or "nil" end
local t = assert(socket.tcp())
t:settimeout(5)
assert(t:connect("127.0.0.1", tonumber(arg[1])))
local c = assert(ssl.wrap(t, { mode = "client", protocol = "any", verify = "none" }))
c:settimeout(5)
assert(c:dohandshake())
print(hex(c:exportkeyingmaterial(%q, 32)), hex(c:exportkeyingmaterial(%q, 16, "ctx")),
      hex(c:getfinished()), hex(c:getpeerfinished()))
c:close()
]]):format(LABEL, LABEL))
    local srv, port = tls.listen()
    local out = dir .. "/out"
    assert(os.execute(("setsid timeout -s KILL 20 lua5.4 %s %d </dev/null >%s 2>&1 &"):format(
      proc.quote(script), port, proc.quote(out))))
    srv:settimeout(5)
    local a = tls.track(assert(srv:accept()))
    local conn = tls.track(assert(tls.ssl().wrap(a, tls.server_params())))
    conn:settimeout(5)
    assert.is_true(conn:dohandshake())
    local expected = table.concat({ hex(conn:exportkeyingmaterial(LABEL, 32)),
      hex(conn:exportkeyingmaterial(LABEL, 16, "ctx")), hex(conn:getpeerfinished()), hex(conn:getfinished()) }, "\t")
    local deadline = tls.now() + 10
    local text = ""
    repeat
      gsock.sleep(0.02)
      text = proc.slurp(out) or ""
    until text:find("\n") or tls.now() > deadline
    assert.equals(expected .. "\n", text)
  end)

  it("before the handshake: getfinished() gives nil, 'closed', getpeerfinished() and exportkeyingmaterial() "
    .. "nothing (LuaSec's values, to the count)", function()
    local conn = tls.wrap_client("echo")
    assert.same({ n = 2, nil, "closed" }, table.pack(conn:getfinished()))
    assert.equals(0, select("#", conn:getpeerfinished()))
    assert.equals(0, select("#", conn:exportkeyingmaterial(LABEL, 32)))
  end)

  it("exportkeyingmaterial's arguments are checked as luaL_check* would", function()
    local client = tls.pair()
    assert.has_error(function() client:exportkeyingmaterial() end,
      "bad argument #1 to 'exportkeyingmaterial' (string expected, got no value)")
    assert.has_error(function() client:exportkeyingmaterial(LABEL, "x") end,
      "bad argument #2 to 'exportkeyingmaterial' (number expected, got string)")
    assert.has_error(function() client:exportkeyingmaterial(LABEL, -1) end,
      "bad argument #2 to 'exportkeyingmaterial' (value out of range)")
    assert.has_error(function() client:exportkeyingmaterial(LABEL, 32, 5) end,
      "bad argument #3 to 'exportkeyingmaterial' (string expected, got number)")
  end)
end)

describe("getlocalchain", function()
  before_each(tls.ready)

  it("a server's is its certificate, then the chain certificates it sent; a client without a certificate has "
    .. "none; the client's getpeerchain() names the same certificates", function()
    local c = tls.certs
    local client, server = tls.pair({}, { certificate = c.chained.chain, key = c.chained.key })
    local chain = server:getlocalchain()
    assert.equals(2, #chain)
    assert.equals(chain[1]:pem(), client:getpeercertificate():pem())
    assert.equals(chain[2]:pem(), client:getpeerchain()[2]:pem())
    assert.equals("gsockd test intermediate", chain[2]:subject()[1].value)
    assert.same({}, client:getlocalchain())
  end)

  it("getlocalcertificate(n) is the n-th of what the server sent (LuaSec 1.3's); nil past the end; nil, "
    .. "'invalid certificate index' below 1 (as getpeercertificate)", function()
    local c = tls.certs
    local client, server = tls.pair({}, { certificate = c.chained.chain, key = c.chained.key })
    local chain = server:getlocalchain()
    assert.equals(chain[1]:pem(), server:getlocalcertificate():pem())
    assert.equals(chain[1]:pem(), server:getlocalcertificate(1):pem())
    assert.equals(chain[2]:pem(), server:getlocalcertificate(2):pem())
    assert.same({ n = 1 }, table.pack(server:getlocalcertificate(3)))
    assert.same({ n = 2, nil, "invalid certificate index" }, table.pack(server:getlocalcertificate(0)))
    assert.same({ n = 2, nil, "invalid certificate index" }, table.pack(client:getpeercertificate(0)))
    assert.same({ n = 1 }, table.pack(client:getlocalcertificate()))   -- a client without a certificate
  end)

  it("before the handshake getlocalchain() and getlocalcertificate() give nil, 'closed'", function()
    local conn = tls.wrap_client("echo")
    assert.same({ n = 2, nil, "closed" }, table.pack(conn:getlocalchain()))
    assert.same({ n = 2, nil, "closed" }, table.pack(conn:getlocalcertificate()))
  end)
end)
