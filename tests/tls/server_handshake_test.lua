-- The server side of a TLS service's handshake against clients that misbehave (SPEC §10
-- "Servers": the handshake completes before the handler runs, bounded by handshake_timeout;
-- a client that fails it is logged with the reason and closed). Each test runs a handler
-- table with `gsockd run` (its log is the subprocess's stderr) or a gsock.server in this
-- process, sends raw bytes from a plain TCP socket, and checks that another client is served
-- meanwhile or afterwards.
local gsock = require "gsock"
local socket = require "socket"
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/tls/"
local tls = dofile(here .. "support/tls.lua")
local proc = tls.proc
local ssl = tls.load_ssl()

setup(tls.setup)
teardown(tls.teardown)
after_each(tls.cleanup)

--- A `gsockd run` TLS handler-table service (handshake_timeout 0.5 s) that answers a line
--- with "tls <line>" and logs what a failed receive returned ("receive failed: nil <err>").
local function service()
  local dir = proc.tmpdir()
  local h = proc.write(dir, "h.lua", ([[
return { tls = { cert = %q, key = %q, handshake_timeout = 0.5 }, handle = function(sock)
  while true do
    local line, err = sock:receive("*l")
    if not line then io.stderr:write("receive failed: ", tostring(line), " ", tostring(err), "\n") return end
    sock:send("tls " .. line .. "\n")
  end
end }
]]):format(tls.certs.localhost.cert, tls.certs.localhost.key))
  local p = proc.start({ "run", h, "--listen", "127.0.0.1:0" }, { cwd = dir })
  return p, p:listening()[1].port
end

--- A verifying TLS client round trip: the answer, or nil and why.
local function ask(port, line)
  local conn = tls.track(assert(ssl.wrap(tls.tcp(port), tls.client_params())))
  conn:settimeout(5)
  conn:sni("localhost")
  local ok, err = conn:dohandshake()
  if not ok then return nil, err end
  conn:send(line .. "\n")
  local answer, rerr = conn:receive("*l")
  conn:close()
  return answer, rerr
end

--- A raw TCP connection to `port` (tracked) and the "host:port" it comes from.
local function raw(port)
  local s = tls.tcp(port)
  local _, local_port = s:getsockname()
  return s, "127.0.0.1:" .. local_port
end

--- Whether the server closed `s` within `limit` seconds: its receive('*a') ends (an alert or
--- nothing, then EOF) before our own timeout.
local function closed_by_server(s, limit)
  s:settimeout(limit)
  local t0 = tls.now()
  local _, err = s:receive("*a")
  return err == nil or err == "closed", tls.now() - t0
end

--- The log line of `who`'s failed handshake (waits up to 3 s), or nil: "peer=HOST:PORT TLS
--- handshake failed: REASON".
local function failure_line(p, who)
  local pattern = "[^\n]*peer=" .. proc.lit(who) .. " TLS handshake failed: %S[^\n]*"
  if not p:wait_stderr(pattern, 3) then return nil end
  return p:stderr():match(pattern)
end

describe("a TLS service's handshake against a misbehaving client", function()
  before_each(tls.ready)

  it("a partial ClientHello (its first 20 bytes) then silence: closed after handshake_timeout, logged with "
    .. "the reason; another client is served meanwhile", function()
    local hello = tls.client_hello(20)
    assert.equals(22, hello:byte(1))                      -- a handshake record
    local p, port = service()
    local stalled, who = raw(port)
    assert(stalled:send(hello))
    local t0 = tls.now()
    local served, serr
    local other = tls.spawn(function() served, serr = ask(port, "other") end)
    local closed, took = closed_by_server(stalled, 3)
    assert.is_true(other:join(5))
    assert.equals("tls other", served, tostring(serr))
    assert.is_true(closed, "the server kept the stalled client for 3 s")
    took = tls.now() - t0
    assert.is_true(took >= 0.4 and took < 2, ("closed after %.2f s (handshake_timeout 0.5)"):format(took))
    assert.truthy(failure_line(p, who), p:stderr())      -- names the client and a reason
    assert.is_true(p:alive())
  end)

  it("a client that resets mid-handshake: logged, the server lives on and serves the next client", function()
    local p, port = service()
    local s, who = raw(port)
    assert(s:send(tls.client_hello(20)))
    gsock.sleep(0.05)
    s:setoption("linger", { on = true, timeout = 0 })
    s:close()
    assert.truthy(failure_line(p, who), p:stderr())
    assert.equals("tls next", (ask(port, "next")))
    assert.is_true(p:alive())
  end)

  it("random binary garbage (not HTTP text): logged with the reason and closed at once; others are served",
    function()
      local p, port = service()
      local bytes = {}
      local seed = 12345
      for i = 1, 300 do
        seed = (seed * 1103515245 + 12345) % 2147483648
        bytes[i] = string.char(seed >> 16 & 255)
      end
      local garbage = "\200\1\2" .. table.concat(bytes)       -- no TLS record type (20..24) first
      local s, who = raw(port)
      assert(s:send(garbage))
      local closed, took = closed_by_server(s, 3)
      assert.is_true(closed, "the server kept a client that sent garbage")
      assert.is_true(took < 0.4, ("closed after %.2f s: it waited for handshake_timeout"):format(took))
      local line = failure_line(p, who)
      assert.truthy(line, p:stderr())
      assert.matches("wrong version number", line)        -- OpenSSL's reason for a record that is not TLS
      assert.equals("tls fine", (ask(port, "fine")))
      assert.is_true(p:alive())
    end)

  it("garbage after a completed handshake (raw bytes, not a TLS record): the handler's receive gets nil and "
    .. "an error; the server keeps serving", function()
    local p, port = service()
    local out = proc.sh(([[python3 -c "
import os, socket, ssl
ctx = ssl.create_default_context(cafile='%s')
with socket.create_connection(('127.0.0.1', %d)) as raw:
    s = ctx.wrap_socket(raw, server_hostname='localhost')
    s.sendall(b'hi\n')
    print(s.recv(100).decode().strip())
    plain = socket.socket(fileno=os.dup(s.fileno()))
    plain.sendall(b'\x00\x01\x02 this is no TLS record \xff\xfe' * 4)
    plain.settimeout(3)
    try:
        while plain.recv(1000):
            pass
        print('closed')
    except ConnectionResetError:
        print('closed')      # by the server, with our garbage unread
    except Exception as e:
        print('error', e)
" 2>&1]]):format(tls.certs.ca.cert, port))
    assert.matches("^tls hi\n", out, p:stderr())
    assert.matches("closed", out, p:stderr())             -- the server ended the connection
    assert.truthy(p:wait_stderr("receive failed: nil %S", 3), p:stderr())
    assert.equals("tls after", (ask(port, "after")))
    assert.is_true(p:alive())
  end)

  it("server stop during a handshake: stop returns promptly and the half-shaken client is closed", function()
    local srv = gsock.server("127.0.0.1:0", function(sock)
      local line = sock:receive("*l")
      if line then sock:send(line .. "\n") end
    end, { tls = { cert = tls.certs.localhost.cert, key = tls.certs.localhost.key } })
    srv:start()
    local _, port = srv.listeners[1]:getsockname()
    local s = raw(tonumber(port))
    assert(s:send(tls.client_hello(20)))
    gsock.sleep(0.1)                                      -- the server's handshake waits for the rest
    local t0 = tls.now()
    srv:stop(1)
    assert.is_true(tls.now() - t0 < 1.5, ("stop took %.2f s"):format(tls.now() - t0))
    assert.is_true((closed_by_server(s, 3)), "the half-shaken client stayed open after stop")
    local refused = socket.tcp()
    refused:settimeout(1)
    assert.is_nil((refused:connect("127.0.0.1", tonumber(port))))   -- no longer listening
    refused:close()
  end)
end)
