-- The admin listener (SPEC §9): `admin = ADDR` / `--admin ADDR` serves /metrics (the
-- Prometheus text format, read here by prometheus_client's parser and a strict one of
-- support/prom.py), /healthz, /readyz and /debug/fibers; drain_delay keeps accepting
-- after SIGTERM while /readyz fails; gsock.metrics for Lua code. Each bad input too.
local gsock = require "gsock"
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/serve/"
local proc = dofile(here .. "support/proc.lua")

after_each(proc.cleanup)

--- The admin address a server printed ("admin listening on ADDRESS").
local function admin_address(p, limit)
  local deadline = proc.now() + (limit or 5)
  while true do
    local a = p:stdout():match("admin listening on (%S+)")
    if a then return a end
    if not p:alive() or proc.now() > deadline then error("no admin line\n" .. p:describe(), 2) end
    gsock.sleep(0.02)
  end
end

--- Parses a scrape with support/prom.py: { [ "name{k=v,...}" ] = value }, and the list.
local function parse(text)
  local dir = proc.tmpdir()
  local file = proc.write(dir, "scrape.txt", text)
  local f = assert(io.popen(("python3 %s < %s 2>&1; echo \"rc=$?\""):format(proc.quote(here .. "support/prom.py"),
                                                                           proc.quote(file))))
  local out = f:read("a")
  f:close()
  assert(out:match("rc=0%s*$"), "the scrape does not parse:\n" .. out .. "\n--- scrape ---\n" .. text)
  local values, parser = {}, nil
  for line in out:gmatch("[^\n]+") do
    local name, labels, value = line:match("^(%S+)\t(.-)\t(%S+)$")
    if name == "parser" then parser = labels
    elseif name then values[("%s{%s}"):format(name, labels)] = tonumber(value) end
  end
  return values, parser
end

local function scrape(address)
  local status, body = proc.http_get(address, "/metrics")
  assert.equals(200, status, tostring(body))
  local values, parser = parse(body)
  return values, body, parser
end

--- Polls the scrape until `key` has `want` (or `limit` seconds pass); returns the values.
local function scrape_until(address, key, want, limit)
  local deadline = proc.now() + (limit or 3)
  local values, body
  repeat
    values, body = scrape(address)
    if values[key] == want then return values end
    gsock.sleep(0.05)
  until proc.now() > deadline
  error(("%s is %s, not %s, in:\n%s"):format(key, tostring(values[key]), tostring(want), body), 2)
end

local APP = [[
local hits = gsock.metrics.counter("app_hits_total", "Requests by path.", { "path" })
local depth = gsock.metrics.gauge("app_queue_depth", "Items queued.")
local sizes = gsock.metrics.histogram("app_item_seconds", "Item times.", { 0.1, 1, 10 }, { "kind" })
return {
  protocol = "http",
  handle = function(req)
    hits:inc(1, { req.path })
    if req.path == "/fail" then error("this handler fails") end
    if req.path == "/observe" then
      for _, v in ipairs({ 0.05, 0.5, 5, 50 }) do sizes:observe(v, { "a" }) end
      depth:set(7)
    end
    if req.path == "/missing" then return 404, "no\n" end
    return 200, "hi\n"
  end,
}
]]

local function serve_app(top)
  local dir = proc.tmpdir()
  proc.write(dir, "app.lua", APP)
  proc.write(dir, "echo.lua", proc.ECHO)
  local config = proc.write(dir, "gsockd.toml", (top or "") .. [[

admin = "127.0.0.1:0"

[services.app]
listen = "127.0.0.1:0"
handler = "app.lua"

[services.echo]
listen = "127.0.0.1:0"
handler = "echo.lua"
]])
  local p = proc.start({ "serve", config }, { cwd = dir })
  local services = {}
  for _, l in ipairs(p:listening(3)) do if l.name then services[l.name] = l.address end end
  return p, admin_address(p), services
end

describe("admin /metrics", function()
  it("counters move with traffic, gsockd_connections matches open connections, parsed by a real parser", function()
    local p, admin, svc = serve_app()
    local values, _, parser = scrape(admin)
    assert.equals(0, values['gsockd_accepted_total{service=echo}'])
    assert.equals(0, values['gsockd_connections{service=echo}'])
    print("  (parsed with " .. tostring(parser) .. ")")
    -- three connections held open, each echoing a line
    local clients = {}
    for i = 1, 3 do
      clients[i] = assert(proc.connect(svc.echo))
      clients[i]:send("hello " .. i .. "\n")
      assert.equals("hello " .. i, clients[i]:receive("*l"))
    end
    values = scrape(admin)
    assert.equals(3, values['gsockd_accepted_total{service=echo}'])
    assert.equals(3, values['gsockd_connections{service=echo}'])
    assert.equals(24, values['gsockd_bytes_received_total{service=echo}'])   -- "hello N\n" three times
    assert.equals(24, values['gsockd_bytes_sent_total{service=echo}'])
    clients[1]:close()
    values = scrape_until(admin, 'gsockd_connections{service=echo}', 2)
    for i = 2, 3 do clients[i]:close() end
    values = scrape_until(admin, 'gsockd_connections{service=echo}', 0)
    assert.equals(3, values['gsockd_accepted_total{service=echo}'])
    -- HTTP: requests by method and status, durations, handler errors
    for _ = 1, 4 do assert.equals(200, (proc.http_get(svc.app, "/a"))) end
    assert.equals(404, (proc.http_get(svc.app, "/missing")))
    assert.equals(500, (proc.http_get(svc.app, "/fail")))
    values = scrape_until(admin, 'gsockd_http_requests_total{method=GET,service=app,status=500}', 1)
    assert.equals(4, values['gsockd_http_requests_total{method=GET,service=app,status=200}'])
    assert.equals(1, values['gsockd_http_requests_total{method=GET,service=app,status=404}'])
    assert.equals(6, values['gsockd_http_request_duration_seconds_count{service=app}'])
    assert.equals(6, values['gsockd_http_request_duration_seconds_bucket{le=+Inf,service=app}'])
    assert.equals(1, values['gsockd_handler_errors_total{service=app}'])
    assert.equals(0, values['gsockd_handler_errors_total{service=echo}'])
    assert.equals(6, values['gsockd_accepted_total{service=app}'])
    -- the process's own figures
    assert.is_true(values['gsockd_fibers{}'] >= 3)
    assert.is_true(values['gsockd_lua_memory_bytes{}'] > 10000)
    assert.equals(0, values['gsockd_runaway_fibers_total{}'])
    assert.equals(0, values['gsockd_worker_restarts_total{}'])
    assert.is_not_nil(values['gsockd_loop_lag_seconds_count{}'])
    p:signal("TERM")
    assert.equals(0, p:wait_exit(5), p:describe())
  end)

  it("user metrics appear, with labels; histogram buckets are cumulative with +Inf, sum and count", function()
    local _, admin, svc = serve_app()
    assert.equals(200, (proc.http_get(svc.app, "/observe")))
    assert.equals(200, (proc.http_get(svc.app, "/a")))
    assert.equals(200, (proc.http_get(svc.app, "/a")))
    local values, body = scrape(admin)
    assert.equals(1, values['app_hits_total{path=/observe}'])
    assert.equals(2, values['app_hits_total{path=/a}'])
    assert.equals(7, values['app_queue_depth{}'])
    assert.equals(1, values['app_item_seconds_bucket{kind=a,le=0.1}'])
    assert.equals(2, values['app_item_seconds_bucket{kind=a,le=1}'])
    assert.equals(3, values['app_item_seconds_bucket{kind=a,le=10}'])
    assert.equals(4, values['app_item_seconds_bucket{kind=a,le=+Inf}'])
    assert.equals(4, values['app_item_seconds_count{kind=a}'])
    assert.near(55.55, values['app_item_seconds_sum{kind=a}'], 1e-9)
    assert.matches("# HELP app_hits_total Requests by path%.\n# TYPE app_hits_total counter\n", body)
    assert.matches("# TYPE app_item_seconds histogram\n", body)
  end)

  it("Content-Type is the 0.0.4 text format; other paths are 404; other methods 405", function()
    local _, admin = serve_app()
    local status, _, head = proc.http_get(admin, "/metrics")
    assert.equals(200, status)
    assert.matches("Content%-Type: text/plain; version=0%.0%.4", head)
    assert.equals(404, (proc.http_get(admin, "/")))
    assert.equals(404, (proc.http_get(admin, "/metricsx")))
    local c = assert(proc.connect(admin))
    c:send("POST /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n")
    assert.matches("^HTTP/1%.1 405", c:receive("*l"))
    c:close()
  end)
end)

describe("admin on TLS and unix sockets", function()
  local certs = dofile(here .. "../tls/support/certs.lua")

  --- The localhost certificate and key of `c` as cert.pem and key.pem in `dir`.
  local function write_cert(dir, c)
    proc.write(dir, "cert.pem", certs.slurp(c.localhost.cert))
    proc.write(dir, "key.pem", certs.slurp(c.localhost.key))
  end

  --- Runs fn(c) with fresh test certificates `c` (certs.make), removed after; pending
  --- without the openssl command.
  local function with_certs(fn)
    if not certs.available() then pending("no openssl command") return end
    local c = certs.make()
    local ok, err = pcall(fn, c)
    certs.remove(c)
    assert(ok, err)
  end

  --- A TLS client connection (gsockd's ssl) to ADDRESS, handshaken, verifying with `c`'s CA.
  local function tls_connect(address, c)
    local ssl = require "ssl"
    local s = require("socket").tcp()
    assert(s:connect("127.0.0.1", tonumber(address:match(":(%d+)$"))))
    local conn = assert(ssl.wrap(s, { mode = "client", cafile = c.ca.cert }))
    conn:settimeout(5)
    assert(conn:dohandshake())
    return conn
  end

  it("gsockd_tls_handshakes_total counts handshakes by result for a TLS service; the admin listens on a unix socket", function()
    with_certs(function(c)
      local dir = proc.tmpdir()
      proc.write(dir, "h.lua", [[return function(sock) local l = sock:receive("*l"); sock:send(l .. "\n") end]])
      write_cert(dir, c)
      local admin = "unix:" .. proc.unix_path(dir, "admin")
      proc.write(dir, "s.toml", ([[
admin = "%s"
[services.secure]
listen = "127.0.0.1:0"
handler = "h.lua"
tls = { cert = "cert.pem", key = "key.pem", handshake_timeout = 2 }
]]):format(admin))
      local p = proc.start({ "serve", "s.toml" }, { cwd = dir })
      local address = p:listening(2)[2].address
      assert.equals(admin, admin_address(p))
      local conn = tls_connect(address, c)
      assert(conn:send("hi\n"))
      assert.equals("hi", conn:receive("*l"))
      conn:close()
      -- a client that speaks no TLS fails the handshake
      local plain = assert(proc.connect(address))
      plain:send("GET / HTTP/1.0\r\n\r\n")
      plain:receive("*a")
      plain:close()
      local values = scrape_until(admin, 'gsockd_tls_handshakes_total{result=failed,service=secure}', 1)
      assert.equals(1, values['gsockd_tls_handshakes_total{result=ok,service=secure}'])
      assert.equals(2, values['gsockd_accepted_total{service=secure}'])
      p:signal("TERM")
      assert.equals(0, p:wait_exit(5), p:describe())
    end)
  end)

  it("a connection a handler wraps with ssl.wrap stays its service's: open in gsockd_connections, its bytes counted, gone when it closes", function()
    with_certs(function(c)
      local dir = proc.tmpdir()
      proc.write(dir, "h.lua", [[
local ssl = require "ssl"
return function(sock)
  local conn = assert(ssl.wrap(sock, { mode = "server", certificate = "cert.pem", key = "key.pem" }))
  conn:settimeout(5)
  assert(conn:dohandshake())
  while true do
    local l = conn:receive("*l")
    if not l then break end
    conn:send(l .. "\n")
  end
  conn:close()
end]])
      write_cert(dir, c)
      proc.write(dir, "s.toml", [[
admin = "127.0.0.1:0"
[services.wrapped]
listen = "127.0.0.1:0"
handler = "h.lua"
]])
      local p = proc.start({ "serve", "s.toml" }, { cwd = dir })
      local address
      for _, l in ipairs(p:listening(2)) do if l.name == "wrapped" then address = l.address end end
      local admin = admin_address(p)
      local conn = tls_connect(address, c)
      assert(conn:send("hello\n"))
      assert.equals("hello", conn:receive("*l"))
      local values = scrape(admin)
      assert.equals(1, values['gsockd_connections{service=wrapped}'])
      assert.equals(6, values['gsockd_bytes_received_total{service=wrapped}'])   -- "hello\n", decrypted
      assert.equals(6, values['gsockd_bytes_sent_total{service=wrapped}'])
      conn:close()
      scrape_until(admin, 'gsockd_connections{service=wrapped}', 0)
      p:signal("TERM")
      assert.equals(0, p:wait_exit(5), p:describe())
    end)
  end)
end)

describe("admin on a unix socket", function()
  it("serves there and removes its socket file at the end, with one process and with workers", function()
    for _, workers in ipairs({ 1, 2 }) do
      local dir = proc.tmpdir()
      proc.write(dir, "echo.lua", proc.ECHO)
      local path = proc.unix_path(dir, "admin")
      local config = proc.write(dir, "gsockd.toml", ([[
workers = %d
admin = "unix:%s"
[services.echo]
listen = "127.0.0.1:0"
handler = "echo.lua"
]]):format(workers, path))
      local p = proc.start({ "serve", config }, { cwd = dir })
      assert.equals("unix:" .. path, admin_address(p))
      local deadline = proc.now() + 8
      while (proc.http_get("unix:" .. path, "/readyz")) ~= 200 and proc.now() < deadline do gsock.sleep(0.05) end
      assert.equals(200, (proc.http_get("unix:" .. path, "/readyz")))
      local values = scrape("unix:" .. path)
      assert.equals(0, values['gsockd_accepted_total{service=echo}'])
      p:signal("TERM")
      assert.equals(0, p:wait_exit(8), p:describe())
      assert.is_nil(os.execute("test -e " .. proc.quote(path)), ("workers = %d: %s is still there"):format(workers, path))
    end
  end)
end)

describe("admin /debug/fibers", function()
  it("is the SIGUSR1 dump, and JSON with ?format=json", function()
    local _, admin = serve_app()
    local status, body = proc.http_get(admin, "/debug/fibers")
    assert.equals(200, status)
    assert.matches("fiber dump %(pid %d+%): %d+ fibers", body)
    assert.matches("in method 'accept'", body)
    status, body = proc.http_get(admin, "/debug/fibers?format=json")
    assert.equals(200, status)
    local file = proc.write(proc.tmpdir(), "dump.json", body)
    local out = proc.sh(("python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); "
      .. "print(len(d[\"fibers\"]), all(set(f)>={\"id\",\"state\",\"waiting\",\"traceback\"} for f in d[\"fibers\"]))' %s")
      :format(proc.quote(file)))
    local n, fields = out:match("^(%d+) (%a+)")
    assert.is_true(tonumber(n) >= 3, out .. body)
    assert.equals("True", fields)
  end)
end)

describe("admin /readyz and drain_delay", function()
  it("/readyz is 503 while an init sleeps and 200 once every service serves", function()
    local dir = proc.tmpdir()
    proc.write(dir, "slow.lua", [[
return { init = function() gsock.sleep(1.5) end,
         handle = function(sock) sock:send("up\n") end }
]])
    local config = proc.write(dir, "gsockd.toml", [[
admin = "127.0.0.1:0"
[services.slow]
listen = "127.0.0.1:0"
handler = "slow.lua"
]])
    local p = proc.start({ "serve", config }, { cwd = dir })
    local admin = admin_address(p)
    assert.is_true(p:alive())
    local status, body = proc.http_get(admin, "/readyz")
    assert.equals(503, status)
    assert.matches("starting", body)
    assert.equals(200, (proc.http_get(admin, "/healthz")))   -- alive while not ready
    local l = p:listening(2, 5)
    assert.equals("up", proc.request(l[2].address, ""))
    status, body = proc.http_get(admin, "/readyz")
    assert.equals(200, status, body)
  end)

  it("/readyz is 503 after a reload that failed, and 200 again after one that worked", function()
    local dir = proc.tmpdir()
    proc.write(dir, "echo.lua", proc.ECHO)
    local config = proc.write(dir, "gsockd.toml", [[
admin = "127.0.0.1:0"
[services.echo]
listen = "127.0.0.1:0"
handler = "echo.lua"
]])
    local p = proc.start({ "serve", config }, { cwd = dir })
    local admin = admin_address(p)
    p:listening(2)
    assert.equals(200, (proc.http_get(admin, "/readyz")))
    proc.write(dir, "echo.lua", "return function(sock) sock:send( end")   -- does not compile
    p:signal("HUP")
    assert.is_truthy(p:wait_stderr("reload failed", 3), p:describe())
    local status, body = proc.http_get(admin, "/readyz")
    assert.equals(503, status)
    assert.matches("the last reload failed", body)
    proc.write(dir, "echo.lua", proc.ECHO)
    p:signal("HUP")
    assert.is_truthy(p:wait_stderr("reloaded 1 service", 3), p:describe())
    assert.equals(200, (proc.http_get(admin, "/readyz")))
  end)

  it("on SIGTERM /readyz fails at once while the service still accepts for drain_delay; then it drains and exits 0", function()
    local p, admin, svc = serve_app("drain_delay = 1.5\nshutdown_timeout = 2\n")
    assert.equals(200, (proc.http_get(admin, "/readyz")))
    local t0 = proc.now()
    p:signal("TERM")
    local status, body
    repeat
      status, body = proc.http_get(admin, "/readyz")
    until status == 503 or proc.now() - t0 > 1
    assert.equals(503, status)
    assert.matches("draining", body)
    assert.is_true(proc.now() - t0 < 0.5, "readyz failed only after " .. (proc.now() - t0) .. " s")
    -- still accepting and serving, on both services, during the delay
    gsock.sleep(0.5)
    assert.equals("still", proc.request(svc.echo, "still"))
    assert.equals(200, (proc.http_get(svc.app, "/a")))
    assert.is_true(proc.now() - t0 < 1.4)
    assert.equals(0, p:wait_exit(6), p:describe())
    assert.is_true(proc.now() - t0 >= 1.5, "exited " .. (proc.now() - t0) .. " s after SIGTERM")
  end)
end)

describe("admin /healthz", function()
  it("is 503 for a probe made while a fiber blocks the loop past max_run_time, 200 again after", function()
    local dir = proc.tmpdir()
    proc.write(dir, "spin.lua", [[
return { protocol = "http", handle = function(req)
  if req.path == "/spin" then
    local t = os.clock()
    while os.clock() - t < 1.5 do end
  end
  return 200, "done\n"
end }
]])
    local config = proc.write(dir, "gsockd.toml", [[
admin = "127.0.0.1:0"
max_run_time = 0.3
[services.spin]
listen = "127.0.0.1:0"
handler = "spin.lua"
]])
    local p = proc.start({ "serve", config }, { cwd = dir })
    local admin = admin_address(p)
    local address = p:listening(2)[2].address
    assert.equals(200, (proc.http_get(admin, "/healthz")))
    local spun = proc.spawn(function() return proc.http_get(address, "/spin", 5) end)
    gsock.sleep(0.6)   -- the handler is spinning now
    local status, body = proc.http_get(admin, "/healthz", 5)
    assert.equals(503, status, tostring(body) .. "\n" .. p:describe())
    assert.matches("max_run_time", body)
    assert.equals(200, (spun:get(5)))
    local values = scrape(admin)
    assert.equals(1, values['gsockd_runaway_fibers_total{}'])
    assert.is_true(values['gsockd_loop_lag_seconds_bucket{le=+Inf}'] > values['gsockd_loop_lag_seconds_bucket{le=0.5}'],
                   "no loop-lag sample above 0.5 s")
    gsock.sleep(1.1)
    assert.equals(200, (proc.http_get(admin, "/healthz")))
  end)
end)

describe("admin with workers = 2", function()
  local PID_ECHO = [[
return function(sock)
  while true do
    local l = sock:receive("*l")
    if not l then return end
    if l == "pid" then l = io.open("/proc/self/stat"):read("n") end
    if l == "spin" then
      local t = os.clock()
      while os.clock() - t < 2.5 do end
    end
    sock:send(l .. "\n")
  end
end
]]

  local function serve_group(top)
    local dir = proc.tmpdir()
    proc.write(dir, "echo.lua", PID_ECHO)
    local config = proc.write(dir, "gsockd.toml", (top or "") .. [[

workers = 2
admin = "127.0.0.1:0"

[services.echo]
listen = "127.0.0.1:0"
handler = "echo.lua"
]])
    local p = proc.start({ "serve", config }, { cwd = dir })
    local address
    for _, l in ipairs(p:listening(2, 8)) do if l.name == "echo" then address = l.address end end
    local admin = admin_address(p)
    -- ready once every worker serves
    local deadline = proc.now() + 8
    while (proc.http_get(admin, "/readyz")) ~= 200 and proc.now() < deadline do gsock.sleep(0.05) end
    return p, admin, address
  end

  it("/metrics sums both workers: accepted and open connections equal those made to both, whichever worker answers", function()
    local p, admin, address = serve_group()
    local clients, pids = {}, {}
    -- connections until both workers hold some (the kernel picks the worker)
    for i = 1, 40 do
      local c = assert(proc.connect(address))
      c:send("pid\n")
      local pid = assert(c:receive("*l"))
      clients[i] = c
      pids[pid] = (pids[pid] or 0) + 1
      local n = 0
      for _ in pairs(pids) do n = n + 1 end
      if n == 2 and i >= 6 then break end
    end
    local workers = 0
    for _ in pairs(pids) do workers = workers + 1 end
    assert.equals(2, workers, "every connection went to one worker")
    local made = #clients
    for _ = 1, 5 do   -- each scrape is the group's, the same whoever answers
      local values = scrape(admin)
      assert.equals(made, values['gsockd_accepted_total{service=echo}'])
      assert.equals(made, values['gsockd_connections{service=echo}'])
      assert.equals(2, values['gsockd_workers{state=answered}'])
      assert.equals(0, values['gsockd_workers{state=missing}'])
      assert.equals(0, values['gsockd_worker_restarts_total{}'])
    end
    for i = 1, 3 do clients[i]:close() end
    scrape_until(admin, 'gsockd_connections{service=echo}', made - 3)
    assert.equals(200, (proc.http_get(admin, "/healthz")))
    local status, body = proc.http_get(admin, "/debug/fibers")
    assert.equals(200, status)
    assert.matches("worker 1:\ngsockd: fiber dump", body)
    assert.matches("worker 2:\ngsockd: fiber dump", body)
    p:signal("TERM")
    for _, c in ipairs(clients) do c:close() end
    assert.equals(0, p:wait_exit(8), p:describe())
  end)

  it("gsockd_worker_restarts_total counts a worker that died and was restarted; the admin listener outlives it", function()
    local p, admin = serve_group()
    local kids = proc.children(p.pid)
    assert.equals(2, #kids, p:describe())
    os.execute("kill -KILL " .. kids[1])
    local values = scrape_until(admin, 'gsockd_worker_restarts_total{}', 1, 5)
    assert.is_not_nil(values['gsockd_accepted_total{service=echo}'])
    scrape_until(admin, 'gsockd_workers{state=answered}', 2, 5)
    assert.equals(200, (proc.http_get(admin, "/readyz")))
  end)

  it("a worker whose loop is blocked is left out of /metrics, which still answers in time; /healthz is 503", function()
    local _, admin, address = serve_group()
    local c = assert(proc.connect(address, 5))
    c:send("spin\n")
    gsock.sleep(0.3)
    local t0 = proc.now()
    local values = scrape(admin)
    assert.is_true(proc.now() - t0 < 2, "the scrape took " .. (proc.now() - t0) .. " s")
    assert.equals(1, values['gsockd_workers{state=answered}'])
    assert.equals(1, values['gsockd_workers{state=missing}'])
    local status, body = proc.http_get(admin, "/healthz", 5)
    assert.equals(503, status)
    -- still blocked (no answer), or just back (its loop was blocked past max_run_time)
    assert.is_truthy(body:find("1 worker(s) did not answer", 1, true) or body:match("worker %d: unhealthy"), body)
    assert.equals("spin", c:receive("*l"))
    scrape_until(admin, 'gsockd_workers{state=answered}', 2, 3)
  end)

  it("/readyz is 503 after the workers' reload failed, 200 after one that worked", function()
    local p, admin = serve_group()
    local dir = p.dir
    proc.write(dir, "echo.lua", "return function(sock) sock:send( end")   -- does not compile
    p:signal("HUP")
    local deadline, status, body = proc.now() + 5, nil, nil
    repeat
      gsock.sleep(0.1)
      status, body = proc.http_get(admin, "/readyz")
    until status == 503 or proc.now() > deadline
    assert.equals(503, status, tostring(body) .. p:describe())
    assert.matches("worker %d: not ready: the last reload failed", body)
    proc.write(dir, "echo.lua", PID_ECHO)
    p:signal("HUP")
    deadline = proc.now() + 5
    repeat
      gsock.sleep(0.1)
      status, body = proc.http_get(admin, "/readyz")
    until status == 200 or proc.now() > deadline
    assert.equals(200, status, tostring(body))
  end)

  it("/readyz is 503 during drain_delay while the workers still accept, then they drain", function()
    local p, admin, address = serve_group("drain_delay = 1.5\nshutdown_timeout = 2\n")
    assert.equals(200, (proc.http_get(admin, "/readyz")))
    local t0 = proc.now()
    p:signal("TERM")
    gsock.sleep(0.2)
    local status, body = proc.http_get(admin, "/readyz")
    assert.equals(503, status, tostring(body))
    assert.equals("still", proc.request(address, "still"))
    assert.is_true(proc.now() - t0 < 1.4)
    assert.equals(0, p:wait_exit(8), p:describe())
    assert.is_true(proc.now() - t0 >= 1.5)
  end)

  it("a SIGTERM sent to the whole process group (workers get it twice) still waits drain_delay", function()
    local p, admin, address = serve_group("drain_delay = 1.5\nshutdown_timeout = 2\n")
    assert.equals(200, (proc.http_get(admin, "/readyz")))
    local t0 = proc.now()
    proc.sh("kill -TERM -" .. p.pid)   -- the group: the supervisor and both workers
    gsock.sleep(0.3)
    assert.equals(503, (proc.http_get(admin, "/readyz")))
    assert.equals("still", proc.request(address, "still"))
    assert.equals(0, p:wait_exit(8), p:describe())
    assert.is_true(proc.now() - t0 >= 1.5, ("exited after %.2f s"):format(proc.now() - t0))
  end)
end)

describe("admin: bad input", function()
  local function check_fails(top, pattern, args)
    local dir = proc.tmpdir()
    proc.write(dir, "echo.lua", proc.ECHO)
    local config = proc.write(dir, "gsockd.toml", top .. [[

[services.echo]
listen = "127.0.0.1:7391"
handler = "echo.lua"
]])
    local argv = { "serve", config }
    for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
    local p = proc.start(argv, { cwd = dir })
    assert.equals(2, p:wait_exit(5), p:describe())
    assert.matches(pattern, p:stderr())
    assert.is_nil(p:stdout():find("listening", 1, true), p:describe())
  end

  it("a bad admin address is a config error naming admin", function()
    check_fails('admin = "localhost"', "gsockd%.toml.*admin.*expected HOST:PORT")
  end)
  it("an admin that is not a string is a config error naming admin", function()
    check_fails("admin = 9100", "admin.*expected an address")
  end)
  it("an admin on a service's address is a config error naming admin and the service", function()
    check_fails('admin = "127.0.0.1:7391"', "admin.*services%.echo%.listen")
  end)
  it("an admin on all interfaces of a service's port collides too", function()
    check_fails('admin = ":7391"', "admin.*collides with services%.echo%.listen")
  end)
  it("a bad --admin, or one on a service's address, is a usage error naming --admin", function()
    check_fails("", "%-%-admin: .*expected HOST:PORT", { "--admin", "nope" })
    check_fails("", "%-%-admin: .*services%.echo%.listen", { "--admin", "127.0.0.1:7391" })
  end)
  it("a negative or non-number drain_delay is a config error naming drain_delay", function()
    check_fails("drain_delay = -1", "drain_delay: expected a number of seconds >= 0, got integer %-1")
    check_fails('drain_delay = "5s"', 'drain_delay: expected a number of seconds >= 0, got string "5s"')
  end)
  it("an unknown top-level key near admin gets a did-you-mean", function()
    check_fails('admn = "127.0.0.1:9100"', "admn.*did you mean 'admin'")
  end)
  it("an admin address in use: exit 1 saying so, with one process and with workers", function()
    local socket = require "socket"
    local taken = proc.track(assert(socket.bind("127.0.0.1", 0)))
    local _, port = taken:getsockname()
    for _, workers in ipairs({ 1, 2 }) do
      local dir = proc.tmpdir()
      proc.write(dir, "echo.lua", proc.ECHO)
      local config = proc.write(dir, "gsockd.toml", ([[
workers = %d
admin = "127.0.0.1:%s"
[services.echo]
listen = "127.0.0.1:0"
handler = "echo.lua"
]]):format(workers, port))
      local p = proc.start({ "serve", config }, { cwd = dir })
      assert.equals(1, p:wait_exit(8), p:describe())
      assert.matches("admin: 127%.0%.0%.1:" .. port .. ": address already in use", p:stderr())
    end
  end)

  it("gsockd run --admin with a bad address exits 2 naming --admin", function()
    local dir = proc.tmpdir()
    local h = proc.write(dir, "echo.lua", proc.ECHO)
    local p = proc.start({ "run", h, "--listen", "127.0.0.1:0", "--admin", "bad" }, { cwd = dir })
    assert.equals(2, p:wait_exit(5), p:describe())
    assert.matches("%-%-admin: bad address 'bad' %(expected HOST:PORT", p:stderr())
  end)
end)

describe("gsock.metrics", function()
  it("a metric registered twice with other label names, or as another kind, raises naming it; the same labels give it back", function()
    local c = gsock.metrics.counter("test_twice_total", "Twice.", { "a" })
    assert.equals(c, gsock.metrics.counter("test_twice_total", "Twice.", { "a" }))
    local ok, err = pcall(gsock.metrics.counter, "test_twice_total", "Twice.", { "b" })
    assert.is_false(ok)
    assert.matches("test_twice_total.*labels %(a%), not %(b%)", err)
    ok, err = pcall(gsock.metrics.gauge, "test_twice_total", "Twice.", { "a" })
    assert.is_false(ok)
    assert.matches("test_twice_total.*already registered as a counter", err)
    ok, err = pcall(gsock.metrics.counter, "gsockd_accepted_total", "Mine.")
    assert.is_false(ok)
    assert.matches("gsockd_accepted_total.*built%-in", err)
  end)

  it("a label value of the wrong type, or the wrong number of them, raises naming the metric", function()
    local g = gsock.metrics.gauge("test_labels", "Labels.", { "host", "code" })
    g:set(1, { "a", 200 })
    local ok, err = pcall(g.set, g, 1, { "a", true })
    assert.is_false(ok)
    assert.matches("test_labels.*label 'code' must be a string or a number, got boolean", err)
    ok, err = pcall(g.set, g, 1, { "a" })
    assert.matches("test_labels.*needs 2 label value%(s%)", err)
    ok, err = pcall(g.inc, g)
    assert.matches("test_labels.*needs 2 label value%(s%)", err)
    local c = gsock.metrics.counter("test_down_total", "Down.")
    ok, err = pcall(c.inc, c, -1)
    assert.matches("test_down_total.*cannot go down", err)
    ok, err = pcall(gsock.metrics.counter, "bad name", "x")
    assert.matches("bad argument #1 to 'counter'", err)
    ok, err = pcall(gsock.metrics.histogram, "test_h", "x", { 1, 0.5 })
    assert.matches("test_h.*increasing", err)
  end)

  it("render() writes the user's metrics in the text format", function()
    local h = gsock.metrics.histogram("test_render_seconds", "Render \"times\"\nsecond line.", { 1, 2 })
    h:observe(1.5)
    local c = gsock.metrics.counter("test_render_total", "Renders.", { "who" })
    c:inc(2, { 'a "quoted"\nname\\' })
    local text = gsock.metrics.render()
    assert.matches('# HELP test_render_seconds Render "times"\\nsecond line%.\n', text)
    assert.matches('test_render_seconds_bucket{le="1"} 0\ntest_render_seconds_bucket{le="2"} 1\n'
      .. 'test_render_seconds_bucket{le="%+Inf"} 1\ntest_render_seconds_sum 1%.5\ntest_render_seconds_count 1\n', text)
    assert.matches('test_render_total{who="a \\"quoted\\"\\nname\\\\"} 2\n', text)
    local values = parse(text)
    assert.equals(2, values['test_render_total{who=a \\"quoted\\"\\nname\\\\}'])
  end)
end)
