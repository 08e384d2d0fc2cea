-- SIGHUP reloads a TLS service's certificate under load (SPEC §10 "Servers": "SIGHUP
-- reloads certificates without dropping connections"): connections exchanging data
-- without pause while the certificate file is replaced and gsockd serve gets SIGHUP all
-- keep working, and new connections are given the new certificate.
local gsock = require "gsock"
local socket = require "socket"
local ssl = require "ssl"
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/tls/"
local certs = dofile(here .. "support/certs.lua")
local proc = dofile(here .. "../serve/support/proc.lua")

local c
setup(function()
  if not certs.available() then return end
  c = certs.make()
end)
teardown(function() if c then certs.remove(c) end end)
after_each(proc.cleanup)

local function need_certs()
  if not c then pending("the openssl command is not installed") end
end

local function tls_connect(port)
  local s = socket.tcp()
  s:settimeout(5)
  assert(s:connect("localhost", port))
  local conn = proc.track(assert(ssl.wrap(s, { mode = "client", cafile = c.ca.cert })))
  conn:settimeout(5)
  assert(conn:dohandshake())
  return conn
end

--- The pid of the worker serving `conn` (the handler answers "pid").
local function worker(conn)
  assert(conn:send("pid\n"))
  return assert(conn:receive("*l"))
end

--- The serial and issuer CN of the certificate a new connection is given, and the pid of
--- the worker that served it.
local function certificate(port)
  local conn = tls_connect(port)
  local cert = conn:getpeercertificate()
  local serial, cn = cert:serial(), cert:issuer()[1].value
  local pid = worker(conn)
  conn:close()
  return serial, cn, pid
end

local function reload_under_load(workers)
  need_certs()
  local dir = proc.tmpdir()
  -- The echo handler collects garbage at every line, so the context the reload replaces is
  -- freed while the connections made with it are still open; it answers "pid" with its
  -- worker's pid.
  proc.write(dir, "h.lua", [[return function(sock)
  while true do
    local l = sock:receive("*l")
    if not l then return end
    collectgarbage()
    if l == "pid" then l = io.open("/proc/self/stat"):read("n") end
    sock:send(l .. "\n")
  end
end]])
  local function copy(from, to) proc.write(dir, to, certs.slurp(from)) end
  copy(c.localhost.cert, "cert.pem")
  copy(c.localhost.key, "key.pem")
  local port = proc.free_port()
  proc.write(dir, "s.toml", ([[
workers = %d
[services.secure]
listen = "127.0.0.1:%d"
handler = "h.lua"
tls = { cert = "cert.pem", key = "key.pem" }
]]):format(workers, port))
  local p = proc.start({ "serve", "s.toml" }, { cwd = dir })
  if workers > 1 then
    assert.truthy(p:wait_stderr("all " .. workers .. " workers serve", 10), p:stderr())
  else
    p:listening()
  end
  local old_serial, old_issuer = certificate(port)

  -- Clients that send a line and read its echo without pause until told to stop: at
  -- least 8, and at least 2 on each worker.
  local clients, reloaded, stop = {}, false, false
  local per_worker = {}
  local function enough()
    if #clients < 8 then return false end
    local n = 0
    for _, count in pairs(per_worker) do
      if count < 2 then return false end
      n = n + 1
    end
    return n == workers
  end
  while not enough() do
    assert.truthy(#clients < 40, "40 connections did not reach every worker")
    local i = #clients + 1
    local cl = { trips = 0, after = 0 }
    cl.conn = tls_connect(port)
    local pid = worker(cl.conn)
    per_worker[pid] = (per_worker[pid] or 0) + 1
    cl.fiber = proc.spawn(function()
      while not stop do
        local line = ("client %d trip %d %s"):format(i, cl.trips, ("x"):rep(200))
        local ok, err = cl.conn:send(line .. "\n")
        if not ok then cl.err = "send: " .. tostring(err); return end
        local got, rerr = cl.conn:receive("*l")
        if got ~= line then cl.err = ("receive: %s %s"):format(tostring(got), tostring(rerr)); return end
        cl.trips = cl.trips + 1
        if reloaded then cl.after = cl.after + 1 end
      end
    end)
    clients[i] = cl
  end
  gsock.sleep(0.3)
  for i, cl in ipairs(clients) do assert.truthy(cl.trips > 0 and not cl.err, ("client %d: %s"):format(i, cl.err)) end

  -- another certificate and key: the chained leaf has another serial and issuer
  copy(c.chained.chain, "cert.pem")
  copy(c.chained.key, "key.pem")
  local from = #p:stderr() + 1
  p:signal("HUP")
  local expected = workers > 1 and "reloaded 1 service.*reloaded 1 service" or "reloaded 1 service"
  assert.truthy(p:wait_stderr(expected, 10, from), p:stderr())
  reloaded = true
  local spread = {}
  for pid, n in pairs(per_worker) do spread[#spread + 1] = ("%s: %d"):format(pid, n) end
  local new_serial, new_issuer, new_pid = certificate(port)
  gsock.sleep(0.5)
  stop = true
  for i, cl in ipairs(clients) do
    assert.truthy(cl.fiber:join(5), ("client %d still running"):format(i))
    assert.is_nil(cl.err, ("client %d, after %d round trips: %s"):format(i, cl.trips, tostring(cl.err)))
    assert.truthy(cl.after > 10, ("client %d: %d round trips after the reload"):format(i, cl.after))
    -- the connection still has the certificate it began with
    assert.equals(old_serial, cl.conn:getpeercertificate():serial())
    cl.conn:close()
  end
  local fewest = math.huge
  for _, cl in ipairs(clients) do fewest = math.min(fewest, cl.after) end
  print(("%d connections (by worker pid: %s); the fewest round trips after the reload: %d"):format(
    #clients, table.concat(spread, ", "), fewest))
  assert.are_not.equal(old_serial, new_serial)
  assert.equals("gsockd test CA", old_issuer)
  assert.equals("gsockd test intermediate", new_issuer)
  -- every worker serves the new certificate
  per_worker[new_pid] = nil
  local tries = 0
  while next(per_worker) do
    assert.truthy(tries < 40, "40 new connections did not reach every worker")
    local serial, _, pid = certificate(port)
    assert.equals(new_serial, serial)
    per_worker[pid], tries = nil, tries + 1
  end
  assert.truthy(p:alive(), p:stderr())
end

describe("a TLS service under load", function()
  it("reloads its certificate on SIGHUP without dropping a connection; new ones get the new certificate", function()
    reload_under_load(1)
  end)

  it("does the same with workers = 2", function()
    reload_under_load(2)
  end)
end)
