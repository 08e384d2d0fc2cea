-- TLS peers for the TLS tests: support/tls_peer.py (python3's ssl) run in the
-- background on 127.0.0.1, bounded by coreutils `timeout` and its own --lifetime, and
-- killed by stop_all(). Plain Lua plus a sleep function, so that the LuaSec oracle
-- (plain lua5.4) uses it too.
--
--   local peers = dofile(here .. "support/peers.lua")
--   peers.sleep = gsock.sleep                      -- (default: LuaSocket's blocking sleep)
--   local p = peers.start({ mode = "echo", cert = c.localhost.cert, key = c.localhost.key,
--                           port = proc.free_port() })
--   ... p.port ...
--   peers.stop_all()                               -- in teardown()
--
-- start() options: port (required), mode ("echo" | "stall" | "trickle"), cert, key, client_ca,
-- alpn ("a,b"), max_version ("1.2"), lifetime (seconds, default 60).
local M = {}

local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/tls/support/"
M.SCRIPT = here .. "tls_peer.py"

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>/dev/null", "r"))
  local out = p:read("a")
  p:close()
  return out
end

function M.sleep(t) require("socket").sleep(t) end
function M.clock() return require("socket").gettime() end

local started = {}

--- True when python3 with its ssl module is there.
function M.available()
  return sh("python3 -c 'import ssl; print(1)'"):match("1") ~= nil
end

--- Starts a peer; returns { port =, pid =, dir =, stderr = function } once it listens.
--- opts.command: "s_server" runs `openssl s_server -www` (answers an HTTP GET with its
--- status page; it has no line echo) with opts.cert and opts.key instead of the python peer;
--- with opts.status it prints "cert_status: callback called" for each client that asks
--- for a stapled OCSP response (-status_verbose).
function M.start(opts)
  local base = os.tmpname()
  os.remove(base)
  local dir = base .. "-gsockd-tlspeer"
  assert(os.execute("mkdir -p " .. q(dir)))
  local args = { "--port", tostring(assert(opts.port, "peers.start: port")), "--mode", opts.mode or "echo",
    "--lifetime", tostring(opts.lifetime or 60) }
  for _, k in ipairs({ "cert", "key", "client_ca", "alpn", "max_version" }) do
    if opts[k] then
      args[#args + 1] = "--" .. k:gsub("_", "-")
      args[#args + 1] = opts[k]
    end
  end
  local quoted = {}
  for i, a in ipairs(args) do quoted[i] = q(a) end
  local program = "python3 " .. q(M.SCRIPT)
  local ready = "READY"
  if opts.command == "s_server" then
    program = "openssl s_server"
    quoted = { "-accept", q("127.0.0.1:" .. opts.port), "-cert", q(opts.cert), "-key", q(opts.key), "-www" }
    if opts.status then quoted[#quoted + 1] = "-status_verbose" end
    ready = "ACCEPT"
  end
  local p = { port = opts.port, dir = dir, out = dir .. "/out", err = dir .. "/err" }
  -- setsid: its own process group, so stop kills the group; timeout: bounded even if
  -- the test process dies before its teardown.
  local cmd = ("setsid timeout -s KILL %d %s %s </dev/null >%s 2>%s & echo $! > %s"):format(
    math.tointeger((opts.lifetime or 60) + 10), program, table.concat(quoted, " "),
    q(p.out), q(p.err), q(dir .. "/pid"))
  assert(os.execute(cmd))
  p.pid = math.tointeger(tonumber(slurp(dir .. "/pid") or ""))
  started[#started + 1] = p
  function p.stderr() return slurp(p.err) or "" end
  local deadline = M.clock() + 5
  while not ((slurp(p.out) or "") .. (slurp(p.err) or "")):match(ready) do
    if M.clock() > deadline then
      M.stop(p)
      error("the TLS peer did not start: " .. cmd .. "\n" .. (slurp(p.err) or ""), 2)
    end
    M.sleep(0.01)
  end
  return p
end

--- Kills a peer (its whole process group) and removes its directory.
function M.stop(p)
  if p.pid then
    os.execute(("kill -9 -%d %d 2>/dev/null"):format(p.pid, p.pid))
    p.pid = nil
  end
  if p.dir and p.dir:match("^/tmp/.+%-gsockd%-tlspeer$") then os.execute("rm -rf " .. q(p.dir)) end
end

--- Kills every peer started so far.
function M.stop_all()
  local list = started
  started = {}
  for _, p in ipairs(list) do M.stop(p) end
end

return M
