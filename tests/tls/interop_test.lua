-- TLS services against other clients (SPEC §10): curl, openssl s_client and python3's ssl
-- talk to a gsockd TLS service; big transfers both ways at once and 1-byte reads out of
-- full 16 KiB records on one connection.
local gsock = require "gsock"
local socket = require "socket"
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/tls/"
local certs = dofile(here .. "support/certs.lua")
local proc = dofile(here .. "../serve/support/proc.lua")
local tls = dofile(here .. "support/tls.lua")

local c
setup(function() if certs.available() then c = certs.make() end end)
teardown(function() if c then certs.remove(c) end end)
after_each(proc.cleanup)

local function have(tool) return os.execute("command -v " .. tool .. " >/dev/null 2>&1") == true end

--- A TLS service on 127.0.0.1:0 running `handler`; its port.
local function service(handler)
  local srv = gsock.server("127.0.0.1:0", handler, { tls = { cert = c.localhost.cert, key = c.localhost.key } })
  srv:start()
  local _, port = srv.listeners[1]:getsockname()
  return srv, tonumber(port)
end

--- Runs a shell command in the background while this fiber waits; its output.
local function shell(cmd, limit)
  local dir = proc.tmpdir()
  local out, rc = dir .. "/out", dir .. "/rc"
  assert(os.execute(("(timeout -k 1 %d sh -c %s >%s 2>&1 </dev/null; echo $? >%s) &"):format(
    limit or 10, certs.quote(cmd), certs.quote(out), certs.quote(rc))))
  local deadline = gsock.now() + (limit or 10) + 3
  while gsock.now() < deadline do
    local f = io.open(rc)
    if f then
      local status = tonumber(f:read("a"))
      f:close()
      return status, proc.slurp(out) or ""
    end
    gsock.sleep(0.02)
  end
  error("no exit status from: " .. cmd)
end

--- A TLS client connected to the service on `port`, verifying it against the test CA.
local function client(port)
  local ssl = require "ssl"
  local s = assert(socket.connect("localhost", port))
  return proc.track(assert(ssl.wrap(s, { mode = "client", cafile = c.ca.cert })))
end

local HTTP_HELLO = function(sock)
  while true do
    local line = sock:receive("*l")
    if not line or line == "" then break end
  end
  sock:send("HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nhello\n")
end

describe("a gsockd TLS service and other clients", function()
  it("answers curl over HTTPS, verified against the test CA", function()
    if not c or not have("curl") then pending("openssl or curl is missing") end
    local srv, port = service(HTTP_HELLO)
    local status, out = shell(("curl -sS --cacert %s https://localhost:%d/"):format(certs.quote(c.ca.cert), port))
    srv:stop()
    assert.equals(0, status, out)
    assert.equals("hello\n", out)
  end)

  it("echoes to openssl s_client, which verifies it (Verify return code: 0)", function()
    if not c then pending("openssl is missing") end
    local srv, port = service(function(sock)
      local line = sock:receive("*l")
      if line then sock:send("echo " .. line .. "\n") end
    end)
    local status, out = shell(("printf 'ping\\n' | openssl s_client -connect 127.0.0.1:%d -servername localhost "
      .. "-verify_hostname localhost -CAfile %s -ign_eof 2>&1"):format(port, certs.quote(c.ca.cert)))
    srv:stop()
    assert.equals(0, status, out)
    assert.truthy(out:find("echo ping", 1, true), out)
    assert.truthy(out:find("Verify return code: 0 (ok)", 1, true), out)
  end)

  it("serves python3's ssl client, which checks the host name", function()
    if not c or not have("python3") then pending("openssl or python3 is missing") end
    local srv, port = service(function(sock)
      local line = sock:receive("*l")
      if line then sock:send(line:upper() .. "\n") end
    end)
    local status, out = shell(([[python3 -c "
import socket, ssl
ctx = ssl.create_default_context(cafile='%s')
with socket.create_connection(('127.0.0.1', %d)) as raw:
    with ctx.wrap_socket(raw, server_hostname='localhost') as s:
        s.sendall(b'quiet\n')
        print(s.recv(100).decode().strip(), s.version())
"]]):format(c.ca.cert, port))
    srv:stop()
    assert.equals(0, status, out)
    assert.matches("^QUIET TLSv1%.[23]", out)
  end)
end)

-- The same clients against the other kinds of TLS service, each in its own gsockd process
-- (so the clients run with blocking proc.sh): a handler table run by `gsockd run` and a
-- config service run by `gsockd serve`. The handler answers an HTTP GET (for curl) or
-- echoes a line.
local EITHER = [[
return function(sock)
  local line = sock:receive("*l")
  if not line then return end
  if line:match("^GET ") then
    repeat local h = sock:receive("*l") until not h or h == ""
    sock:send("HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nhello\n")
  else
    sock:send("echo " .. line .. "\n")
  end
end
]]

local kinds = {
  { "a handler table run by gsockd run", function(dir)
    proc.write(dir, "either.lua", EITHER)
    local h = proc.write(dir, "h.lua", ([[
return { tls = { cert = %q, key = %q }, handle = dofile("either.lua") }
]]):format(c.localhost.cert, c.localhost.key))
    local p = proc.start({ "run", h, "--listen", "127.0.0.1:0" }, { cwd = dir })
    return p:listening()[1].port
  end },
  { "a config service run by gsockd serve", function(dir)
    local _, port = tls.serve_config(dir, EITHER, c.localhost)
    return port
  end },
}

for _, entry in ipairs(kinds) do
  local kind, start = entry[1], entry[2]
  describe(kind, function()
    local function service()
      if not c then pending("openssl is missing") end
      return start(proc.tmpdir())
    end

    it("answers curl --cacert (the test CA)", function()
      if not have("curl") then pending("curl is missing") end
      local port = service()
      local out = proc.sh(("curl -sS --max-time 5 --cacert %s https://localhost:%d/ 2>&1; echo \"rc=$?\""):format(
        certs.quote(c.ca.cert), port))
      assert.equals("hello\nrc=0\n", out)
    end)

    it("is verified by openssl s_client -verify_return_error and echoes to it", function()
      local port = service()
      local out = proc.sh(("printf 'ping\\n' | timeout 5 openssl s_client -connect 127.0.0.1:%d -servername localhost "
        .. "-verify_hostname localhost -verify_return_error -CAfile %s -ign_eof 2>&1; echo \"rc=$?\""):format(
        port, certs.quote(c.ca.cert)))
      assert.truthy(out:find("echo ping", 1, true), out)
      assert.truthy(out:find("Verify return code: 0 (ok)", 1, true), out)
      assert.matches("rc=0\n$", out)
    end)

    it("serves python3's ssl client, which verifies the certificate and the host name", function()
      if not have("python3") then pending("python3 is missing") end
      local port = service()
      local out = proc.sh(([[timeout 5 python3 -c "
import socket, ssl
ctx = ssl.create_default_context(cafile='%s')
with socket.create_connection(('127.0.0.1', %d)) as raw:
    with ctx.wrap_socket(raw, server_hostname='localhost') as s:
        s.sendall(b'snake\n')
        print(s.recv(100).decode().strip(), s.version())
" 2>&1]]):format(c.ca.cert, port))
      assert.matches("^echo snake TLSv1%.[23]\n$", out)
    end)
  end)
end

describe("one TLS connection", function()
  it("carries 8 MiB each way at once (one fiber sends while another receives, on both ends)", function()
    if not c then pending("openssl is missing") end
    local size = 8 * 1024 * 1024
    local block = ("0123456789abcdef"):rep(4096)   -- 64 KiB
    local srv, port = service(function(sock)
      local got = 0
      local writer = gsock.spawn(function()
        for _ = 1, size // #block do assert(sock:send(block)) end
      end)
      while got < size do
        local data = assert(sock:receive(math.min(65536, size - got)))
        got = got + #data
      end
      writer:join()
      sock:send("done\n")
    end)
    local conn = client(port)
    conn:settimeout(20)
    assert(conn:dohandshake())
    local received = {}
    local reader = gsock.spawn(function()
      local got = 0
      while got < size do
        local data = assert(conn:receive(math.min(65536, size - got)))
        received[#received + 1] = data
        got = got + #data
      end
    end)
    for _ = 1, size // #block do assert(conn:send(block)) end
    assert.truthy(reader:join(30))
    assert.equals("done", (conn:receive("*l")))
    conn:close()
    srv:stop()
    local all = table.concat(received)
    assert.equals(size, #all)
    assert.equals(block:rep(size // #block), all)
  end)

  it("hands out 1-byte reads out of full 16 KiB records without waiting for the network", function()
    if not c then pending("openssl is missing") end
    local record = ("x"):rep(16384 - 1) .. "\n"
    local srv, port = service(function(sock)
      sock:send(record .. record)
      sock:receive("*l")
    end)
    local conn = client(port)
    conn:settimeout(5)
    assert(conn:dohandshake())
    assert.equals("x", (conn:receive(1)))      -- the first record came
    conn:settimeout(0)                          -- from here on nothing may wait
    local n = 1
    while n < 2 * #record do
      local byte, err = conn:receive(1)
      if not byte then
        assert.equals("wantread", err)          -- the second record is still on its way
        conn:settimeout(5)
        byte = assert(conn:receive(1))
        conn:settimeout(0)
      end
      n = n + 1
    end
    conn:settimeout(5)
    conn:send("bye\n")
    conn:close()
    srv:stop()
    assert.equals(2 * #record, n)
  end)
end)
