-- A live LuaSec oracle (issue 12, SPEC §10 "LuaSec-compatible API"): one probe script runs
-- under plain lua5.4 with Debian's LuaSec (lua-sec 1.2, blocking) and under `gsockd run`,
-- against the same real TLS peers on 127.0.0.1 (support/tls_peer.py: the localhost leaf,
-- a self-signed one, one that never answers), with certificates from support/certs.lua;
-- every line it prints must be the same: the number, types and values of the returns of
-- newcontext's errors, wrap, sni, dohandshake (done, non-blocking with settimeout(0), timed
-- out, a verification failure), receive patterns and their partial results, "closed",
-- want(), dirty(), info(), getpeerverification(), getpeercertificate() and the x509
-- methods, ssl.loadcertificate, close, and tostring of contexts, connections and
-- certificates. As tests/socket/exact_values_test.lua does for LuaSocket.
--
-- gsockd's defaults differ from LuaSec's by design (SPEC §10 "Secure by default"): the
-- probe passes verify = "peer" and cafile explicitly, and sni("localhost") names the
-- certificates' host, so gsockd's host name check passes as LuaSec's absence of one does.
--
-- Left out on purpose, where gsockd differs and says so (SPEC §10, README "Differences from
-- LuaSec"; the other TLS tests check gsockd's side):
--   - newcontext without mode raises "bad argument #2 to 'setmode'" in LuaSec and accepts
--     mode = "sideways"; without protocol it raises too. gsockd returns nil, "missing
--     mode" / "invalid mode 'sideways'", and protocol defaults to "any" (context_test).
--   - unloadable cafile, certificate or key: LuaSec's "error loading CA locations
--     ((null))"; gsockd's messages name the file (context_test). A key that does not match
--     the certificate: LuaSec's words, then gsockd names both files; the probe compares
--     the start.
--   - a key that is not a params key: LuaSec ignores it, gsockd refuses it (context_test).
--   - a verification failure: LuaSec says "certificate verify failed", gsockd adds the
--     reason ("...: self-signed certificate"); the probe compares the start.
--   - a failed or timed-out handshake closes the connection in gsockd, so a second
--     dohandshake() gives false, "closed" (LuaSec: true!) and tostring says "(closed)".
--   - a handshake's timeout bounds the whole handshake in gsockd, each call in LuaSec.
--   - a peer that closes without close_notify: "closed" in gsockd, LuaSec's "unexpected
--     eof while reading".
--   - getfd() is an integer in gsockd, a float in LuaSec (as for LuaSocket): the probe
--     compares the old socket's with -1.
--   - getalpn() and dohandshake() after close() crash LuaSec 1.2 (a segmentation fault),
--     so they are not probed; gsockd gives nil and false, "closed".
--   - LuaSec 1.3's getlocalcertificate() and getlocalchain() (not in 1.2), ssl.https's verification.
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/tls/"
local tls = dofile(here .. "support/tls.lua")

setup(tls.setup)
teardown(tls.teardown)
after_each(tls.cleanup)

local PROBE = [==[
local socket = require "socket"
local ssl = require "ssl"
local show_file, ca, wrong_key, leaf_cert, leaf_key, echo_port, self_port, stall_port = ...
local shown = dofile(show_file)
echo_port, self_port, stall_port = tonumber(echo_port), tonumber(self_port), tonumber(stall_port)

local function show(label, ...)
  local t = table.pack(...)
  local parts = {}
  for i = 1, t.n do parts[i] = shown(t[i]) end
  print(label .. " -> " .. t.n .. " " .. table.concat(parts, ", "))
end
--- type(v), or math.type(v) for numbers
local function kind(v) return math.type(v) or type(v) end
local function kinds(...)
  local t = table.pack(...)
  for i = 1, t.n do t[i] = kind(t[i]) end
  return table.concat(t, ",", 1, t.n)
end

local function tcp(port)
  local s = assert(socket.tcp())
  s:settimeout(5)
  assert(s:connect("127.0.0.1", port))
  return s
end
local client = { mode = "client", protocol = "any", cafile = ca, verify = "peer" }
local function params(extra)
  local p = {}
  for k, v in pairs(client) do p[k] = v end
  for k, v in pairs(extra or {}) do p[k] = v end
  return p
end

-- newcontext
local ctx = ssl.newcontext(params())
show("newcontext ok", (tostring(ctx):gsub("0x%x+", "0x...")), type(ctx))
show("newcontext protocol tlsv9", ssl.newcontext(params({ protocol = "tlsv9" })))
show("newcontext unknown option", ssl.newcontext(params({ options = { "all", "no_such_option" } })))
show("newcontext unknown verify", ssl.newcontext(params({ verify = "sometimes" })))
local mismatch = table.pack(ssl.newcontext({ mode = "server", protocol = "any", certificate = leaf_cert, key = wrong_key }))
show("newcontext key mismatch", mismatch.n, mismatch[1], type(mismatch[2]) == "string"
  and mismatch[2]:match("^private key does not match public key"))

-- wrap, sni, the handshake
local t = tcp(echo_port)
local conn = ssl.wrap(t, ctx)
show("wrap", type(conn), (tostring(conn):gsub("0x%x+", "0x...")))
show("old socket's getfd() after wrap is -1", t:getfd() == -1)
show("sni", conn:sni("localhost"))
show("want before handshake", conn:want())
show("getpeerverification before handshake", conn:getpeerverification())
show("info before handshake", conn:info())
show("getpeercertificate before handshake", conn:getpeercertificate())
show("getpeerchain before handshake", conn:getpeerchain())
show("getalpn before handshake", conn:getalpn())
show("getsniname before handshake", conn:getsniname())
show("dirty before handshake", conn:dirty())
show("settimeout(5)", conn:settimeout(5))
show("dohandshake", conn:dohandshake())
show("dohandshake again", conn:dohandshake())
show("getsniname", conn:getsniname())
show("getpeerverification", conn:getpeerverification())
show("getalpn", conn:getalpn())
local info = conn:info()
local fields = {}
for k, v in pairs(info) do fields[#fields + 1] = k .. ":" .. kind(v) end
table.sort(fields)
show("info() fields", table.concat(fields, " "))
show("info('protocol')", conn:info("protocol"))
show("info('cipher') is info().cipher", conn:info("cipher") == info.cipher)
show("info('compression')", conn:info("compression"))
show("info('bits') kind", kind(conn:info("bits")))
show("info().export", info.export)

-- the peer's certificate
local cert = conn:getpeercertificate()
show("getpeercertificate", type(cert), (tostring(cert):gsub("0x%x+", "0x...")))
show("getpeercertificate(2)", conn:getpeercertificate(2))
show("pem", type(cert:pem()), cert:pem():match("^%-%-%-%-%-BEGIN CERTIFICATE%-%-%-%-%-\n"))
show("subject", cert:subject())
show("issuer", cert:issuer())
show("serial kinds", kinds(cert:serial()))
show("serial is hex", cert:serial():match("^%x+$") ~= nil)
show("notbefore kinds", kinds(cert:notbefore()))
show("notafter kinds", kinds(cert:notafter()))
show("digest kinds and length", kinds(cert:digest()), #cert:digest())
show("digest('sha256') length", #cert:digest("sha256"))
show("digest('sha1') is digest()", cert:digest("sha1") == cert:digest())
show("pubkey kinds", kinds(cert:pubkey()))
local pk, pktype, pkbits = cert:pubkey()
show("pubkey", pk:match("^%-%-%-%-%-BEGIN PUBLIC KEY%-%-%-%-%-\n") ~= nil, pktype, pkbits)
show("extensions", cert:extensions())
show("validat(now)", cert:validat(os.time()))
show("validat(0)", cert:validat(0))
show("validat kinds", kinds(cert:validat(os.time())))
local loaded = ssl.loadcertificate(cert:pem())
show("loadcertificate", type(loaded), (tostring(loaded):gsub("0x%x+", "0x...")), loaded:digest() == cert:digest())
show("loadcertificate garbage", ssl.loadcertificate("garbage"))
show("getsignaturename", cert:getsignaturename())
show("getpeerchain kinds", kinds(conn:getpeerchain()), #conn:getpeerchain())

-- receive patterns
show("send", conn:send("hello\n"))
show("receive *l", conn:receive("*l"))
show("send i j", conn:send("abcdefgh\n", 3, 5))
show("send newline", conn:send("\n"))
show("receive after ranged send", conn:receive("*l"))
conn:send("12345\n")
show("receive 3", conn:receive(3))
show("receive *l prefix", conn:receive("*l", "pre-"))
conn:send("BURST\n")
show("BURST receive", conn:receive("*l"))
show("BURST dirty", conn:dirty())
show("BURST rest", conn:receive(10))
show("want after reads", conn:want())
show("settimeout(0)", conn:settimeout(0))
show("receive, timeout 0, nothing there", conn:receive("*l"))
show("want after a wantread", conn:want())
conn:settimeout(1)
conn:send("PART abc\n")
show("receive *l, timeout 1, 'abc' there", conn:receive("*l"))
conn:settimeout(5)
conn:send("NOTIFY tail\n")
show("receive *a up to close_notify", conn:receive("*a"))
show("receive after close_notify", conn:receive("*l"))
show("close", conn:close())
show("close again", conn:close())
show("receive after close", conn:receive())
show("send after close", conn:send("x"))
show("tostring after close", (tostring(conn):gsub("0x%x+", "0x...")))
show("getpeerverification after close", conn:getpeerverification())
show("info after close", conn:info())
show("getpeercertificate after close", conn:getpeercertificate())
show("getpeerchain after close", conn:getpeerchain())
show("want after close", conn:want())
show("settimeout after close", conn:settimeout(1))

-- settimeout(0): a non-blocking handshake. Its first step waits for a server that never
-- answers (a live one may answer before the client reads, if the client is descheduled
-- between its send and its read: then the first step finishes the handshake).
conn = ssl.wrap(tcp(stall_port), ctx)
conn:settimeout(0)
show("dohandshake, timeout 0, a server that never answers", conn:dohandshake())
show("want", conn:want())
local stalled = conn
conn = ssl.wrap(tcp(echo_port), ctx)
conn:sni("localhost")
conn:settimeout(0)
local ok, err, steps = false, nil, 0
repeat
  ok, err = conn:dohandshake()
  if not ok and err == "wantread" then socket.select({ conn }, nil, 1) end
  steps = steps + 1
until ok or err ~= "wantread" or steps > 50
show("dohandshake, timeout 0, repeated after select", ok, err)
conn:close()
conn = stalled
conn:settimeout(0.2)
show("dohandshake, timeout 0.2, a server that never answers", conn:dohandshake())
conn:close()

-- a verification failure, and a peer not verified
conn = ssl.wrap(tcp(self_port), ctx)
conn:sni("localhost")
conn:settimeout(5)
local hs = table.pack(conn:dohandshake())
-- gsockd names the reason after LuaSec's words (SPEC §10): compare their start.
show("dohandshake, self-signed peer", hs.n, hs[1], type(hs[2]) == "string" and hs[2]:match("^certificate verify failed"))
show("getpeerverification after a failed handshake", conn:getpeerverification())
show("receive after a failed handshake", conn:receive())
show("info after a failed handshake", conn:info())
show("getpeercertificate after a failed handshake", conn:getpeercertificate())
conn:close()
conn = ssl.wrap(tcp(self_port), params({ verify = "none" }))
conn:sni("localhost")
conn:settimeout(5)
show("dohandshake, self-signed peer, verify none", conn:dohandshake())
show("getpeerverification, self-signed peer, verify none", conn:getpeerverification())
conn:close()
print("end")
]==]

--- Whether plain lua5.4 loads Debian's LuaSec (its ssl.lua from package.path) and
--- LuaSocket: nil, or why not.
local function oracle_missing()
  local out = tls.script.read_all("lua5.4 -e 'require \"socket\"; require \"ssl\"; "
    .. "print(package.searchpath(\"ssl\", package.path))' 2>&1")
  if not out:match("/ssl%.lua\n$") then return "lua5.4 with Debian's lua-sec is not installed: " .. out end
end

--- The probe's arguments: the files and ports of the peers it talks to.
local function probe_args()
  local c = tls.certs
  local show_file = here .. "support/show.lua"
  if show_file:sub(1, 1) ~= "/" then show_file = tls.script.read_all("pwd"):gsub("\n$", "") .. "/" .. show_file end
  return { show_file, c.ca.cert, c.wrong.key, c.localhost.cert, c.localhost.key, tostring(tls.peer("echo").port),
           tostring(tls.peer("self_signed").port), tostring(tls.peer("stall").port) }
end

--- The probe under plain lua5.4 (bounded by coreutils timeout): { status, stdout, stderr }.
local function run_oracle(args)
  local dir = tls.certs.dir
  local path = dir .. "/luasec_probe.lua"
  local f = assert(io.open(path, "w"))
  f:write(PROBE)
  f:close()
  local q = tls.certs_lib.quote
  local quoted = {}
  for i, a in ipairs(args) do quoted[i] = q(a) end
  local out, err = path .. ".out", path .. ".err"
  local cmd = ("setsid -w timeout -k 2 30 lua5.4 %s %s </dev/null >%s 2>%s; echo EXIT=$?"):format(
    q(path), table.concat(quoted, " "), q(out), q(err))
  local r = { status = tonumber(tls.script.read_all(cmd):match("EXIT=(%d+)")) }
  r.stdout, r.stderr = tls.certs_lib.slurp(out), tls.certs_lib.slurp(err)
  return r
end

local lines = tls.proc.lines

describe("ssl against LuaSec, live", function()
  before_each(tls.ready)

  it("one probe script prints the same lines under lua5.4 with LuaSec and under gsockd run", function()
    local missing = oracle_missing()
    if missing then return pending(missing) end
    local args = probe_args()
    local oracle = run_oracle(args)
    assert.equals(0, oracle.status, "the oracle failed:\n" .. oracle.stdout .. oracle.stderr)
    local want = lines(oracle.stdout)
    assert.equals("end", want[#want], "the oracle did not finish:\n" .. oracle.stdout .. oracle.stderr)
    local r = tls.run(PROBE, nil, args, 30)
    local got = lines(r.stdout)
    local differences = {}
    for i = 1, math.max(#want, #got) do
      if want[i] ~= got[i] then
        differences[#differences + 1] = ("line %d\n  LuaSec: %s\n  gsockd: %s"):format(i, tostring(want[i]), tostring(got[i]))
      end
    end
    assert.equals(0, #differences, table.concat(differences, "\n") .. "\n" .. r.stderr)
    assert.equals(0, r.status, "gsockd run failed:\n" .. r.output)
  end)
end)
