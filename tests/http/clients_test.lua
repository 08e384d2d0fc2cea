-- HTTP services against real clients (issue 13): curl, python3's http.client with
-- keep-alive, wrk; a handler waiting on a cooperative call while others are served; idle
-- keep-alive connections that hold no fiber. The server is `gsockd run app.lua`.
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/http/"
local proc = dofile(here .. "../serve/support/proc.lua")
local wire = dofile(here .. "support/wire.lua")
local certs = dofile(here .. "../tls/support/certs.lua")
after_each(proc.cleanup)

local APP = [[
local socket = require "socket"
return {
  protocol = "http",
  listen = "127.0.0.1:0",
  max_body = 4 * 1024 * 1024,
  handle = function(req, res)
    if req.path == "/echo" then
      local body, err = req:body()
      if not body then return 400, err end
      return 200, body, { ["Content-Type"] = "application/octet-stream" }
    elseif req.path == "/slow" then
      gsock.sleep(0.4)              -- a cooperative wait: the others go on
      return 200, "slow"
    elseif req.path == "/fetch" then   -- socket.http on gsockd's cooperative sockets, to the URL in the query
      local body, code = require("socket.http").request(req.query)
      if not body then return 502, tostring(code) end
      return 200, body
    elseif req.path == "/tls" then
      local t = req.peer.tls
      if not t then return 200, "no tls" end
      return 200, ("version=%s cipher=%s sni=%s verified=%s host=%s"):format(t.version, tostring(t.cipher),
        tostring(t.sni), tostring(t.verified), req.peer.host)
    elseif req.path == "/stats" then
      local s = gsock.stats()
      return 200, ("fibers=%d connections=%d requests=%d"):format(s.fibers, s.http_connections, s.http_requests)
    end
    return 200, "hello " .. req.version .. "\n", { ["Content-Type"] = "text/plain" }
  end,
}
]]

--- Serves APP with `gsockd run` (with `tls`, a table of cert and key paths: over TLS);
--- returns the process, its listen line and its base URL.
local function serve(tls, exec)
  local dir = proc.tmpdir()
  local app = APP
  if tls then
    app = APP:gsub('protocol = "http",', ('protocol = "http",\n  tls = { cert = %q, key = %q },'):format(tls.cert, tls.key), 1)
  end
  local p = proc.start({ "run", proc.write(dir, "app.lua", app) }, { cwd = dir, nofile = 8192, exec = exec })
  local l = p:listening()[1]
  return p, l, ("http://127.0.0.1:%d"):format(l.port)
end

local function sh(cmd)
  local f = assert(io.popen(cmd .. " 2>&1"))
  local out = f:read("a")
  local ok, _, code = f:close()
  return out, ok and 0 or code
end

local function stats(l)
  local r = wire.once({ port = l.port }, "GET /stats HTTP/1.1\r\nConnection: close\r\n\r\n")
  local t = {}
  for k, v in r.body:gmatch("(%w+)=(%d+)") do t[k] = tonumber(v) end
  return t
end

describe("HTTP with real clients", function()
  it("curl: HTTP/1.1, --http1.0, and a 1 MiB POST echoed byte for byte", function()
    local _, _, url = serve()
    local out, code = sh("curl -sS -i " .. url .. "/")
    assert.equals(0, code)
    assert.truthy(out:find("^HTTP/1.1 200 OK\r\n"))
    assert.truthy(out:find("hello 1.1\n$"))
    out = sh("curl -sS -i --http1.0 " .. url .. "/")
    assert.truthy(out:find("Connection: close\r\n", 1, true))
    assert.truthy(out:find("hello 1.0\n$"))
    local dir = proc.tmpdir()
    local file = dir .. "/big"
    assert(os.execute(("head -c 1048576 /dev/urandom > %s"):format(file)))
    local expected = sh("sha256sum < " .. file)
    out, code = sh(("curl -sS --data-binary @%s %s/echo | sha256sum"):format(file, url))
    assert.equals(0, code)
    assert.equals(expected, out)
    -- With curl's Expect: 100-continue turned off, the body comes at once.
    out = sh(("curl -sS -H 'Expect:' --data-binary @%s %s/echo | sha256sum"):format(file, url))
    assert.equals(expected, out)
  end)

  it("python3 http.client: several requests on one keep-alive connection", function()
    local _, l = serve()
    local script = ([[
import http.client
c = http.client.HTTPConnection("127.0.0.1", %d, timeout=5)
for i in range(5):
    c.request("POST", "/echo", body=("item%%d" %% i).encode())
    r = c.getresponse()
    print(r.status, r.read().decode(), r.getheader("Connection"))
print("socket reused:", c.sock is not None)
]]):format(l.port)
    local out, code = sh("python3 -c " .. ("%q"):format(script):gsub("\\\n", "\n"))
    assert.equals(0, code, out)
    for i = 0, 4 do assert.truthy(out:find(("200 item%d None"):format(i), 1, true), out) end
    assert.truthy(out:find("socket reused: True", 1, true))
    local s = stats(l)
    assert.equals(6, s.requests)   -- five on one connection, and this one
  end)

  it("wrk: 10 connections for a second, no errors and no non-2xx", function()
    if not sh("command -v wrk"):find("wrk") then pending("wrk is not installed") return end
    local _, _, url = serve()
    local out = sh("timeout 10 wrk -t1 -c10 -d1s " .. url .. "/")
    local requests = tonumber(out:match("(%d+) requests in"))
    assert.truthy(requests and requests > 100, out)
    assert.is_nil(out:find("Socket errors", 1, true), out)
    assert.is_nil(out:find("Non%-2xx"), out)
  end)

  it("a handler waiting on a cooperative call does not hold up 50 others", function()
    local _, l = serve()
    local t0 = gsock.now()
    local slow = gsock.spawn(function() return wire.once({ port = l.port }, "GET /slow HTTP/1.1\r\n\r\n").body end)
    local fast = {}
    for i = 1, 50 do
      fast[i] = gsock.spawn(function() return wire.once({ port = l.port }, "GET / HTTP/1.1\r\n\r\n").status end)
    end
    for i = 1, 50 do assert.equals(200, fast[i]:get(5)) end
    local fast_done = gsock.now() - t0
    assert.equals("slow", slow:get(5))
    local total = gsock.now() - t0
    assert.is_true(fast_done < 0.4, ("the fast requests took %.2f s"):format(fast_done))
    assert.is_true(total < 0.4 * 3, ("%.2f s in all: the slow request was not overlapped"):format(total))
  end)

  it("a handler waiting on socket.http's request to a slow server does not hold up 49 others doing the same", function()
    local _, l = serve()
    local served = 0
    local slow = gsock.http.server("127.0.0.1:0", function()
      served = served + 1
      gsock.sleep(0.3)
      return 200, "slow"
    end):start()
    local request = ("GET /fetch?http://127.0.0.1:%d/ HTTP/1.1\r\n\r\n"):format(slow.port)
    local t0 = gsock.now()
    local clients = {}
    for i = 1, 50 do
      clients[i] = gsock.spawn(function()
        local r, err = wire.once({ port = l.port }, request)
        return r and (r.status .. " " .. r.body) or ("no response: " .. tostring(err))
      end)
    end
    for i = 1, 50 do assert.equals("200 slow", clients[i]:get(10)) end
    local total = gsock.now() - t0
    assert.equals(50, served)
    assert.is_true(total >= 0.3, ("%.2f s: the slow server was not waited for"):format(total))
    assert.is_true(total < 2, ("%.2f s for 50 requests of 0.3 s each (15 s in a row)"):format(total))
    slow:stop()
  end)

  it("TLS: curl -k and python3's ssl http.client (keep-alive) get the body, and req.peer.tls is set", function()
    if not certs.available() then pending("no openssl command") return end
    local c = certs.make()
    local ok, err = pcall(function()
      local _, l = serve(c.localhost)
      local out, code = sh(("curl -sS -k --resolve localhost:%d:127.0.0.1 https://localhost:%d/tls"):format(l.port, l.port))
      assert.equals(0, code, out)
      assert.matches("^version=TLSv1%.[23] cipher=%S+ sni=localhost verified=false host=127%.0%.0%.1$", out)
      out = sh(("curl -sS -i -k --resolve localhost:%d:127.0.0.1 https://localhost:%d/"):format(l.port, l.port))
      assert.truthy(out:find("^HTTP/1.1 200 OK\r\n"), out)
      assert.truthy(out:find("hello 1.1\n$"), out)
      local script = ([[
import http.client, ssl
ctx = ssl.create_default_context(cafile=%q)
c = http.client.HTTPSConnection("127.0.0.1", %d, timeout=5, context=ctx)
socks = []   # held, so that no id is reused
for i in range(3):
    c.request("POST", "/echo", body=("tls%%d" %% i).encode())
    r = c.getresponse()
    print(r.status, r.read().decode())
    socks.append(c.sock)
c.request("GET", "/tls")
print(c.getresponse().read().decode())
socks.append(c.sock)
print("connections:", len({id(s) for s in socks}))
]]):format(c.ca.cert, l.port)
      out, code = sh("python3 -c " .. proc.quote(script))
      assert.equals(0, code, out)
      for i = 0, 2 do assert.truthy(out:find(("200 tls%d\n"):format(i), 1, true), out) end
      -- No SNI for an IP literal; verified is false (no client certificate was asked for).
      assert.truthy(out:find("\nversion=TLSv1%.[23] cipher=%S+ sni=nil verified=false host=127%.0%.0%.1\n"), out)
      assert.truthy(out:find("\nconnections: 1\n", 1, true), out)   -- all four on one kept-alive connection
    end)
    certs.remove(c)
    assert(ok, err)
  end)

  it("idle keep-alive connections hold no fiber", function()
    local _, l = serve()
    local limit = tonumber((sh("ulimit -n"))) or 1024
    local n = math.min(2000, (limit - 64) // 2)
    local before = stats(l)
    local held = {}
    for i = 1, n do
      local c = wire.connect({ port = l.port })
      assert(c:send("GET / HTTP/1.1\r\n\r\n"))
      assert.equals(200, wire.read(c).status)
      held[i] = c
    end
    local after = stats(l)
    assert.equals(n, after.connections - 1)   -- the /stats connection itself counts
    assert.equals(before.fibers, after.fibers)
    for _, c in ipairs(held) do c:close() end
  end)
end)

describe("HTTP responses and system calls", function()
  it("the responses to the requests of one read go in one send; one at a time, one send each (strace counts)", function()
    local _, code = sh("command -v strace")
    if code ~= 0 then pending("strace is not installed") end
    local trace = proc.tmpdir() .. "/trace"
    local p, l = serve(nil, { "strace", "-f", "-qq", "-s", "16", "-e", "trace=sendto,sendmsg,writev", "-o", trace })
    local c = wire.connect(l)
    local pipelined = {}
    for i = 1, 16 do pipelined[i] = ("GET /%d HTTP/1.1\r\nHost: a\r\n\r\n"):format(i) end
    assert(c:send(table.concat(pipelined)))
    for _ = 1, 16 do assert.equals(200, wire.read(c).status) end
    for i = 1, 4 do
      assert(c:send(("GET /one%d HTTP/1.1\r\nHost: a\r\n\r\n"):format(i)))
      assert.equals(200, wire.read(c).status)
    end
    c:close()
    p:signal("TERM")
    p:wait_exit(5)
    local sends = {}
    for line in io.lines(trace) do
      if line:find('"HTTP/1.1 200', 1, true) then sends[#sends + 1] = line end
    end
    assert.equals(5, #sends, table.concat(sends, "\n"))
    -- the first carries all 16 responses: its result is 16 times one response's length
    local first = tonumber(sends[1]:match("= (%d+)$"))
    local one = tonumber(sends[2]:match("= (%d+)$"))
    assert.is_true(first >= 16 * (one - 2), sends[1])
  end)
end)
