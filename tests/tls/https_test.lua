-- ssl.https (SPEC §10): socket.http with an https:// URL and ssl.https.request run on
-- gsockd's TLS, cooperatively, and verify the server by default (LuaSec does not).
local gsock = require "gsock"
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/tls/"
local certs = dofile(here .. "support/certs.lua")
local proc = dofile(here .. "../serve/support/proc.lua")

local c, peer, port
setup(function()
  if not certs.available() or os.execute("python3 -c 'import ssl' >/dev/null 2>&1") ~= true then return end
  c = certs.make()
  local portfile = c.dir .. "/https.port"
  peer = io.popen(("timeout -s KILL 60 python3 %s %s %s %s 55 >/dev/null 2>&1 & echo $!"):format(
    certs.quote(here .. "support/https_peer.py"), certs.quote(c.localhost.cert), certs.quote(c.localhost.key),
    certs.quote(portfile))):read("l")
  local deadline = gsock.now() + 10
  while not port and gsock.now() < deadline do
    local f = io.open(portfile)
    port = f and tonumber(f:read("a"))
    if f then f:close() end
    if not port then gsock.sleep(0.05) end
  end
end)
teardown(function()
  if peer then os.execute("kill " .. peer .. " 2>/dev/null") end
  if c then certs.remove(c) end
end)
after_each(proc.cleanup)

--- Runs `source` in a gsockd child with `env`; its stdout.
local function run(source, env)
  local dir = proc.tmpdir()
  local script = proc.write(dir, "client.lua", source)
  local p = proc.start({ "run", script, "--", tostring(port) }, { cwd = dir, env = env })
  local status = p:wait_exit(20)
  return status, proc.slurp(p.out) or "", p:stderr()
end

describe("ssl.https", function()
  it("socket.http.request with an https:// URL verifies against SSL_CERT_FILE and gets the page", function()
    if not port then pending("openssl or python3's ssl is missing") end
    local status, out, err = run([[
local http = require "socket.http"
local body, code = http.request("https://localhost:" .. arg[1] .. "/")
print(body, code)
local posted, pcode = require("ssl.https").request("https://localhost:" .. arg[1] .. "/", "a=1&b=2")
print(posted, pcode)
]], { SSL_CERT_FILE = c.ca.cert })
    assert.equals(0, status, err)
    assert.equals("secure hello\n\t200\na=1&b=2\t200\n", out)
  end)

  it("refuses a server it cannot verify (the system store lacks the test CA), with the reason", function()
    if not port then pending("openssl or python3's ssl is missing") end
    local status, out, err = run([[
local body, e = require("socket.http").request("https://localhost:" .. arg[1] .. "/")
print(body, e)
]], { SSL_CERT_FILE = c.self_signed.cert })
    assert.equals(0, status, err)
    assert.matches("^nil\tcertificate verify failed: ", out)
  end)

  it("runs cooperatively: a request lets other fibers run", function()
    if not port then pending("openssl or python3's ssl is missing") end
    local status, out, err = run([[
local gsock = require "gsock"
local ticks = 0
local ticker = gsock.spawn(function() while true do ticks = ticks + 1; gsock.sleep(0.001) end end)
local bodies = {}
local fibers = {}
for i = 1, 5 do
  fibers[i] = gsock.spawn(function() bodies[i] = require("socket.http").request("https://localhost:" .. arg[1] .. "/") end)
end
gsock.joinall(fibers)
ticker:kill()
print(#bodies, bodies[5], ticks > 0)
]], { SSL_CERT_FILE = c.ca.cert })
    assert.equals(0, status, err)
    assert.equals("5\tsecure hello\n\ttrue\n", out)
  end)
end)

describe("ssl.https and socket.http against a gsockd HTTPS server (gsock.http.server with tls)", function()
  local ltn12 = require "ltn12"

  --- A gsockd HTTPS server in this process answering "<method> <path> <body>\n"; its URL.
  local function https_server()
    local srv = gsock.http.server("127.0.0.1:0", function(req)
      local body = req:body() or ""
      return 200, ("%s %s %s\n"):format(req.method, req.path, body), { ["Content-Type"] = "text/plain" }
    end, { tls = { cert = c.localhost.cert, key = c.localhost.key } })
    srv:start()
    local _, p = srv.listeners[1]:getsockname()
    return srv, ("https://localhost:%d"):format(tonumber(p))
  end

  --- `module`.request(table) for `path` with cafile = the test CA and an ltn12 sink: the
  --- results and the body.
  local function get_with_cafile(module, path)
    if not c then pending("openssl is missing") end
    local srv, base = https_server()
    local parts = {}
    local r = table.pack(require(module).request({ url = base .. path, sink = ltn12.sink.table(parts),
                                                   cafile = c.ca.cert }))
    srv:stop()
    return r, table.concat(parts)
  end

  it("ssl.https.request(table) with cafile = the test CA and an ltn12 sink gets the page", function()
    local r, body = get_with_cafile("ssl.https", "/table")
    assert.equals(1, r[1], tostring(r[2]))
    assert.equals(200, r[2])
    assert.equals("text/plain", r[3]["content-type"])
    assert.equals("GET /table \n", body)
  end)

  it("socket.http.request(table) with an https:// URL, cafile and an ltn12 sink gets the page", function()
    local r, body = get_with_cafile("socket.http", "/via-http")
    assert.equals(1, r[1], tostring(r[2]))
    assert.equals(200, r[2])
    assert.equals("GET /via-http \n", body)
  end)

  it("verify = \"none\" in the request table (README's way) turns verification off; without it and without "
    .. "cafile the request fails: nil and the reason", function()
    if not c then pending("openssl is missing") end
    local srv, base = https_server()
    local https = require "ssl.https"
    local parts = {}
    local one, code = https.request({ url = base .. "/none", sink = ltn12.sink.table(parts), verify = "none" })
    local body, err = https.request(base .. "/default")
    local hbody, herr = require("socket.http").request(base .. "/default")
    srv:stop()
    assert.equals(1, one, tostring(code))
    assert.equals("GET /none \n", table.concat(parts))
    assert.is_nil(body)
    assert.matches("^certificate verify failed", tostring(err))
    assert.is_nil(hbody)
    assert.matches("^certificate verify failed", tostring(herr))
  end)

  it("the string forms with SSL_CERT_FILE = the test CA (a gsockd subprocess): GET and POST", function()
    if not c then pending("openssl is missing") end
    local srv, base = https_server()
    local dir = proc.tmpdir()
    local script = proc.write(dir, "client.lua", ([[
local body, code = require("socket.http").request(%q)
print(body, code)
local posted, pcode = require("ssl.https").request(%q, "a=1")
print(posted, pcode)
]]):format(base .. "/string", base .. "/post"))
    local p = proc.start({ "run", script }, { cwd = dir, env = { SSL_CERT_FILE = c.ca.cert } })
    local status = p:wait_exit(20)        -- this fiber waits: the server in this process serves
    srv:stop()
    assert.equals(0, status, p:stderr())
    assert.equals("GET /string \n\t200\nPOST /post a=1\n\t200\n", proc.slurp(p.out))
  end)

  -- For a child: get() handshakes with the server on arg[1] on a new default context (the
  -- system store) each time, as pgmoon makes them (ssl.https keeps its own).
  local HANDSHAKE_EACH_TIME = [[
local ssl, socket = require "ssl", require "socket"
local function get()
  local ctx = assert(ssl.newcontext({ mode = "client", protocol = "any" }))
  local conn = assert(ssl.wrap(assert(socket.connect("127.0.0.1", tonumber(arg[1]))), ctx))
  conn:sni("localhost")
  local ok, e = conn:dohandshake()
  conn:close()
  return ok and "verified" or tostring(e)
end
]]
  it("the system store is loaded once for every context, and again when SSL_CERT_FILE's file changes: "
    .. "a context made after the bundle lost the CA fails verification (no session of the old one resumes)", function()
    if not port then pending("openssl or python3's ssl is missing") end
    local dir = proc.tmpdir()
    local bundle = dir .. "/bundle.pem"
    os.execute("mkdir -p " .. certs.quote(dir .. "/empty"))
    proc.write(dir, "bundle.pem", certs.slurp(c.ca.cert))
    local status, out, err = run(HANDSHAKE_EACH_TIME .. ([[
local function bundle(file)
  local from = assert(io.open(file)):read("a")
  local f = assert(io.open(%q, "w"))
  f:write(from)
  f:close()
end
print(get(), get())   -- the second resumes the first's session
bundle(%q)            -- only a CA that did not issue the server's certificate
print(get())
bundle(%q)
print(get())
]]):format(bundle, c.self_signed.cert, c.ca.cert), { SSL_CERT_FILE = bundle, SSL_CERT_DIR = dir .. "/empty" })
    assert.equals(0, status, err)
    local lines = proc.lines(out)
    assert.equals("verified\tverified", lines[1])
    assert.matches("^certificate verify failed: ", lines[2])
    assert.equals("verified", lines[3])
  end)

  it("the shared system store is loaded again when SSL_CERT_DIR changes: a CA taken out of it is not trusted "
    .. "at the next context", function()
    if not port then pending("openssl or python3's ssl is missing") end
    local dir = proc.tmpdir()
    local store = dir .. "/certs"
    assert(os.execute(("mkdir -p %s && cp %s %s/ca.pem && openssl rehash %s >/dev/null 2>&1"):format(
      certs.quote(store), certs.quote(c.ca.cert), certs.quote(store), certs.quote(store))))
    local status, out, err = run(HANDSHAKE_EACH_TIME .. ([[
print(get())
os.execute("rm -f %s/*.0")   -- the hash links: the CA is no longer found
print(get())
]]):format(store), { SSL_CERT_FILE = dir .. "/none.pem", SSL_CERT_DIR = store })
    assert.equals(0, status, err)
    local lines = proc.lines(out)
    assert.equals("verified", lines[1])
    assert.matches("^certificate verify failed: ", lines[2])
  end)
end)
