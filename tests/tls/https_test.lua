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
