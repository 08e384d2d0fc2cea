-- Shared helpers of the TLS tests (tests/tls/*_test.lua), SPEC §10.
--
--   local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/tls/"
--   local tls = dofile(here .. "support/tls.lua")
--   local ssl = tls.load_ssl()            -- whatever `require "ssl"` gives (see load_ssl)
--   setup(tls.setup)                      -- certificates (tls.certs) and peers (tls.peer(...))
--   teardown(tls.teardown)
--   after_each(tls.cleanup)
--   describe("...", function()
--     before_each(tls.ready)              -- fails if "ssl" is not gsockd's; pending without tools
--
-- Expected values come from support/luasec_oracle.lua (LuaSec 1.2.0 under plain
-- lua5.4); where SPEC §10 deliberately differs from LuaSec the test says so.
-- luasec_oracle_test.lua compares a probe script under both live.
local gsock = require "gsock"
local socket = require "socket"
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/tls/support/"
local certs_lib = dofile(here .. "certs.lua")
local peers = dofile(here .. "peers.lua")
local proc = dofile(here .. "../../serve/support/proc.lua")
local script = dofile(here .. "../../core/support/script.lua")

local M = { certs_lib = certs_lib, peers = peers, proc = proc, script = script }
peers.sleep = gsock.sleep
peers.clock = function() gsock.sleep(0) return gsock.now() end


--- Why the TLS tests cannot run here (a tool missing), or nil.
function M.missing_tool()
  if not certs_lib.available() then return "the openssl command is not installed" end
  if not peers.available() then return "python3 with its ssl module is not installed" end
  return nil
end

--- `require "ssl"` and whether it is gsockd's own module: returns the module (or nil)
--- and, when it is not usable, why.
---
--- With lua-sec installed, /usr/share/lua/5.4/ssl.lua is on package.path. If
--- `require "ssl"` found it, LuaSec's blocking handshakes and reads would freeze the
--- whole loop. GSOCKD_TLS_ALLOW_LUASEC=1 skips this check, to run the tests with
--- LuaSec (under tests/socket/support/oracle_run.lua, to check the tests' expectations).
--- The files do not raise at load time (that would break `gsockd test --list`): every
--- test fails with the reason instead, from tls.ready.
function M.load_ssl()
  if M._ssl or M._ssl_problem then return M._ssl, M._ssl_problem end
  local ok, ssl = pcall(require, "ssl")
  if not ok then
    M._ssl_problem = "require \"ssl\" failed: " .. tostring(ssl)
    return nil, M._ssl_problem
  end
  if os.getenv("GSOCKD_TLS_ALLOW_LUASEC") ~= "1" then
    local luasec_file = package.searchpath("ssl", package.path)
    local wrap_source = type(ssl) == "table" and type(ssl.wrap) == "function"
        and debug.getinfo(ssl.wrap, "S").source or "?"
    if luasec_file and wrap_source == "@" .. luasec_file then
      M._ssl_problem = ("require \"ssl\" is not gsockd's module: it loaded LuaSec's %s (ssl.wrap is defined "
        .. "there), whose blocking handshakes would freeze every fiber; gsockd must provide \"ssl\" ahead of "
        .. "the file searchers (SPEC §10)"):format(luasec_file)
      return ssl, M._ssl_problem
    end
  end
  M._ssl = ssl
  return ssl
end

--- gsockd's ssl module, or an error saying why not.
function M.ssl()
  local ssl, problem = M.load_ssl()
  if problem then error(problem, 2) end
  return ssl
end

--- before_each(tls.ready): fails the test when "ssl" is not gsockd's module; ends it as
--- pending when openssl or python3 is missing.
function M.ready()
  local _, problem = M.load_ssl()
  if problem then error(problem, 0) end
  local why = M.missing_tool()
  if why then pending(why) end
end

-- Certificates and peers -------------------------------------------------------------

--- setup(): makes the certificates into M.certs (a fresh directory under /tmp).
function M.setup()
  if M.missing_tool() then return end
  M.certs = certs_lib.make()
end

--- teardown(): kills every peer and removes the certificates.
function M.teardown()
  peers.stop_all()
  if M.certs then certs_lib.remove(M.certs) end
  M.certs = nil
  M.peer_cache = {}
end

M.peer_cache = {}

--- A python TLS peer (support/tls_peer.py) on a free port, started once per file and
--- reused: kind "echo" (the localhost leaf), "chain", "self_signed", "wrong", "expired",
--- "stall", "trickle" (a handshake that never ends, one byte at a time), "mtls" (requires
--- a client certificate), "alpn" (offers h2,http/1.1), "tls12" (TLS 1.2 at most),
--- "s_server" (`openssl s_server -www`, the localhost leaf), "s_server_status" (the same,
--- printing each client's OCSP status request).
function M.peer(kind)
  if M.peer_cache[kind] then return M.peer_cache[kind] end
  local c = assert(M.certs, "tls.setup() did not run")
  local opts = { port = proc.free_port(), lifetime = 180 }
  if kind == "stall" or kind == "trickle" then
    opts.mode = kind
  elseif kind == "s_server" or kind == "s_server_status" then
    opts.command, opts.cert, opts.key = "s_server", c.localhost.cert, c.localhost.key
    opts.status = kind == "s_server_status"
  else
    local leaf = ({ echo = c.localhost, chain = c.chained, self_signed = c.self_signed, wrong = c.wrong,
      expired = c.expired, mtls = c.localhost, alpn = c.localhost, tls12 = c.localhost })[kind]
    assert(leaf, "no such peer kind: " .. tostring(kind))
    opts.cert = leaf.chain or leaf.cert
    opts.key = leaf.key
    if kind == "mtls" then opts.client_ca = c.ca.cert end
    if kind == "alpn" then opts.alpn = "h2,http/1.1" end
    if kind == "tls12" then opts.max_version = "1.2" end
  end
  local p = peers.start(opts)
  M.peer_cache[kind] = p
  return p
end

-- Sockets and fibers ----------------------------------------------------------------

-- Tracked sockets and fibers, closed and killed by cleanup() (after_each): proc.lua's.
M.track, M.spawn, M.cleanup = proc.track, proc.spawn, proc.cleanup

--- A TCP client connected to 127.0.0.1:port (tracked), timeout 5 s.
function M.tcp(port, host)
  local tcp = M.track(assert(socket.tcp()))
  tcp:settimeout(5)
  assert(tcp:connect(host or "127.0.0.1", port))
  return tcp
end

--- Client params trusting the test CA; `extra` is merged in (false removes a key).
function M.client_params(extra)
  local p = { mode = "client", protocol = "any", cafile = M.certs.ca.cert }
  for k, v in pairs(extra or {}) do
    if v == false then p[k] = nil else p[k] = v end
  end
  return p
end

--- A TLS client on a fresh connection to the peer of `kind` (not yet handshaken):
--- conn, tcp. `params` as for client_params.
function M.wrap_client(kind, params, host)
  local ssl = M.ssl()
  local tcp = M.tcp(M.peer(kind).port, host)
  local conn, err = ssl.wrap(tcp, M.client_params(params))
  assert(conn, "ssl.wrap failed: " .. tostring(err))
  M.track(conn)
  conn:settimeout(5)
  return conn, tcp
end

--- A handshaken client to the peer of `kind` (with conn:sni("localhost")).
function M.client(kind, params)
  local conn, tcp = M.wrap_client(kind or "echo", params)
  conn:sni("localhost")
  local ok, err = conn:dohandshake()
  assert(ok == true, "handshake failed: " .. tostring(err))
  return conn, tcp
end

--- Server params with the localhost leaf; `extra` merged as in client_params.
function M.server_params(extra)
  local p = { mode = "server", protocol = "any", certificate = M.certs.localhost.cert, key = M.certs.localhost.key }
  for k, v in pairs(extra or {}) do
    if v == false then p[k] = nil else p[k] = v end
  end
  return p
end

--- The first `n` bytes of a real ClientHello (gsockd's client, caught by a raw TCP peer).
function M.client_hello(n)
  local tcp, peer = M.raw_pair()
  local conn = M.track(assert(M.ssl().wrap(tcp, M.client_params())))
  local f = M.spawn(function()
    conn:settimeout(2)
    conn:sni("localhost")
    conn:dohandshake()
  end)
  local hello = assert(peer:receive(n))
  peer:close()
  f:join(3)
  return hello
end

--- A listening TCP socket on 127.0.0.1:0 (tracked) and its port.
function M.listen()
  local srv = M.track(assert(socket.bind("127.0.0.1", 0)))
  local _, port = srv:getsockname()
  return srv, assert(tonumber(port))
end

--- A plain TCP connection in this process: the client (connected, timeout 5 s) and the
--- peer the listener accepted (timeout 2 s), both tracked; the listener is closed.
function M.raw_pair()
  local srv, port = M.listen()
  local client = M.tcp(port)
  srv:settimeout(2)
  local peer = M.track(assert(srv:accept()))
  peer:settimeout(2)
  srv:close()
  return client, peer
end

--- Both ends in gsockd: a handshaken client conn and the server conn it talks to.
--- client_extra / server_extra as in client_params / server_params.
function M.pair(client_extra, server_extra)
  local ssl = M.ssl()
  local srv, port = M.listen()
  local server, server_err
  local f = M.spawn(function()
    srv:settimeout(5)
    local a = assert(srv:accept())
    M.track(a)
    local s = assert(ssl.wrap(a, M.server_params(server_extra)))
    M.track(s)
    s:settimeout(5)
    local ok, err = s:dohandshake()
    if ok then server = s else server_err = err end
  end)
  local conn = assert(ssl.wrap(M.tcp(port), M.client_params(client_extra)))
  M.track(conn)
  conn:settimeout(5)
  conn:sni("localhost")
  local ok, err = conn:dohandshake()
  assert(ok == true, "client handshake failed: " .. tostring(err))
  assert(f:join(5), "the server fiber did not end")
  assert(server, "server handshake failed: " .. tostring(server_err) .. " " .. tostring(f.error))
  srv:close()
  return conn, server
end

-- Subprocesses ----------------------------------------------------------------------

--- Runs `source` with `gsockd run` in a subprocess (its own session: no controlling
--- terminal), bounded by `timeout` (coreutils),
--- with `env` (a table NAME = value) added to its environment and `args` after "--".
--- Returns { status =, stdout =, stderr = }. Only for peers in other processes: this
--- process's loop does not turn while it waits. The script exits 3 if `require "ssl"`
--- there is LuaSec (see M.ssl).
M.RUN_PRELUDE = [[
do
  local ssl = require "ssl"
  local luasec = package.searchpath("ssl", package.path)
  if luasec and debug.getinfo(ssl.wrap, "S").source == "@" .. luasec and os.getenv("GSOCKD_TLS_ALLOW_LUASEC") ~= "1" then
    io.stderr:write("require \"ssl\" loaded LuaSec's " .. luasec .. ", not gsockd's module\n")
    os.exit(3)
  end
end
]]

function M.run(source, env, args, limit)
  local dir = assert(M.certs, "tls.setup() did not run").dir
  M.run_count = (M.run_count or 0) + 1
  local path = ("%s/script-%d.lua"):format(dir, M.run_count)
  local f = assert(io.open(path, "w"))
  f:write(M.RUN_PRELUDE, source)
  f:close()
  local q = certs_lib.quote
  local envs = {}
  for k, v in pairs(env or {}) do envs[#envs + 1] = k .. "=" .. q(v) end
  local argv = {}
  for _, a in ipairs(args or {}) do argv[#argv + 1] = q(a) end
  local out, err = path .. ".out", path .. ".err"
  local cmd = ("env %s setsid -w timeout -k 2 %d %s run %s -- %s </dev/null >%s 2>%s; echo EXIT=$?"):format(
    table.concat(envs, " "), limit or 10, q(script.binary()), q(path), table.concat(argv, " "), q(out), q(err))
  local r = { status = tonumber(script.read_all(cmd):match("EXIT=(%d+)")) }
  r.stdout = certs_lib.slurp(out)
  r.stderr = certs_lib.slurp(err)
  r.output = r.stdout .. r.stderr
  return r
end

--- Starts `gsockd serve` in `dir` on a config with one TLS service "secure" on a free port,
--- whose handler file h.lua holds `handler_source`; `leaf` is { cert =, key = }; `top` is
--- text put before the service's table (`workers = 2`, say). Returns the process once it
--- listens (with `workers`, once all of them serve) and the port.
function M.serve_config(dir, handler_source, leaf, top)
  proc.write(dir, "h.lua", handler_source)
  local port = proc.free_port()
  proc.write(dir, "s.toml", ("%s\n[services.secure]\nlisten = \"127.0.0.1:%d\"\nhandler = \"h.lua\"\n"
    .. "tls = { cert = %q, key = %q }\n"):format(top or "", port, leaf.cert, leaf.key))
  local p = proc.start({ "serve", "s.toml" }, { cwd = dir })
  local workers = (top or ""):match("workers%s*=%s*(%d+)")
  if workers then
    assert(p:wait_stderr("all " .. workers .. " workers serve", 10), p:stderr())
  else
    p:listening()
  end
  return p, port
end

-- Timing ----------------------------------------------------------------------------

--- The loop clock after a loop turn (gsock.now() is cached per turn).
function M.now()
  gsock.sleep(0)
  return gsock.now()
end

--- CPU seconds (user + system) this process used so far.
function M.cpu()
  return proc.cpu(tonumber(certs_lib.slurp("/proc/self/stat"):match("^(%d+)")))
end

--- A string of n bytes with a position-dependent pattern, in lines of 1023 bytes + "\n"
--- (the python peer echoes lines).
function M.lines_of(n)
  local parts, have, k = {}, 0, 0
  while have < n do
    k = k + 1
    local line = (("%08d:"):format(k) .. ("abcdefghijklmnopqrstuvwxyz0123456789"):rep(29)):sub(1, 1023) .. "\n"
    parts[#parts + 1] = line
    have = have + #line
  end
  return table.concat(parts)
end

return M
