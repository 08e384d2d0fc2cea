-- The child of tests/fuzz/arguments_fuzz_test.lua: makes `calls` seeded random calls of
-- every gsock and socket function and method with hostile argument shapes, each logged
-- (and flushed) to `log` before it is made, so that when this process dies by a signal
-- the parent can name the call that killed it.
-- TLS and HTTP too: the ssl module's functions, ssl.https (towards this process's own
-- servers on 127.0.0.1 and a closed port only), the methods of TLS contexts, of SSL
-- connections before and after their handshake (a TLS echo server runs in fibers here),
-- of x509 objects and sessions, tcp sockets' sslhandshake/setclientcert, gsock.http.server,
-- and, inside the handler of a request this process sends (plain or over TLS), req's and
-- res's methods and fields and what the handler returns.
--   gsockd run arguments_child.lua -- SEED CALLS LOG
local socket = require "socket"
local unix = require "socket.unix"
local ssl = require "ssl"
local https = require "ssl.https"
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/fuzz/support/"
local certs_lib = dofile(here .. "../../tls/support/certs.lua")

local seed, calls, logpath = tonumber(arg[1]), tonumber(arg[2]), arg[3]
math.randomseed(seed)
local log = assert(io.open(logpath, "w"))
-- GSOCKD_FUZZ_ONLY="a,b,c": make only these calls (the others still draw their values), to
-- narrow a failure down to the calls that cause it.
local only
if os.getenv("GSOCKD_FUZZ_ONLY") then
  only = {}
  for n in os.getenv("GSOCKD_FUZZ_ONLY"):gmatch("%d+") do only[tonumber(n)] = true end
end
-- GSOCKD_FUZZ_SKIP="pattern": makes no call of the targets whose name matches the Lua
-- pattern (their values are still drawn), to tell which family a failure needs.
-- GSOCKD_FUZZ_KEEP="p1,p2": makes only the calls of targets matching one of these patterns.
local skip_pattern = os.getenv("GSOCKD_FUZZ_SKIP")
local keep_patterns
if os.getenv("GSOCKD_FUZZ_KEEP") then
  keep_patterns = {}
  for p in os.getenv("GSOCKD_FUZZ_KEEP"):gmatch("[^,]+") do keep_patterns[#keep_patterns + 1] = p end
end
local function kept(name)
  if skip_pattern and name:match(skip_pattern) then return false end
  if not keep_patterns then return true end
  for _, p in ipairs(keep_patterns) do if name:match(p) then return true end end
  return false
end
local function note(line)
  log:write(line, "\n")
  log:flush()
end

-- Values ---------------------------------------------------------------------------

local trap = setmetatable({}, {
  __index = function() error("trap __index") end,
  __newindex = function() error("trap __newindex") end,
  __len = function() error("trap __len") end,
  __tostring = function() error("trap __tostring") end,
  __call = function() error("trap __call") end,
  __eq = function() error("trap __eq") end,
  __lt = function() error("trap __lt") end,
  __concat = function() error("trap __concat") end,
  __name = "trap",
})
local huge_string = string.rep("x", 1 << 20)
local objects = {}   -- class name -> the current object of that class

local simple = {
  { "nil", nil }, { "true", true }, { "false", false },
  { "2^31", 2^31 }, { "-2^31", -2^31 }, { "2^31 int", 1 << 31 }, { "2^32-1", 2^32 - 1 },
  { "2^63", 2^63 }, { "-2^63", -2^63 },
  { "mininteger", math.mininteger }, { "maxinteger", math.maxinteger },
  { "1e308", 1e308 }, { "-1e308", -1e308 }, { "inf", math.huge }, { "-inf", -math.huge },
  { "nan", 0/0 }, { "0", 0 }, { "1", 1 }, { "-1", -1 }, { "0.5", 0.5 }, { "3", 3 },
  { "huge string", huge_string }, { "empty string", "" }, { "'*a'", "*a" }, { "'*l'", "*l" },
  { "'--'", "--" }, { "'rw'", "rw" }, { "'127.0.0.1'", "127.0.0.1" }, { "'localhost'", "localhost" },
  { "trap table", trap }, { "empty table", {} }, { "{1, 2}", { 1, 2 } },
  { "noop function", function() end },
  { "sleeping function", function() gsock.sleep(0.05) end },
  { "erroring function", function() error("boom") end },
  { "many results function", function() return table.unpack({}, 1, 250) end },
  { "io.stdout", io.stdout }, { "coroutine", coroutine.create(function() end) },
  { "getfd 2^32-1", { getfd = function() return 2^32 - 1 end } },
  { "getfd 3", { getfd = function() return 3 end } },
  { "getfd -1", { getfd = function() return -1 end } },
  { "getfd nan", { getfd = function() return 0/0 end } },
  { "{ {getfd 3} }", { { getfd = function() return 3 end } } },
}

local classes = { "tcp_master", "tcp_server", "tcp_client", "udp", "unix_stream", "unix_dgram",
                  "fiber", "dead_fiber", "event", "queue", "semaphore", "lock", "timeout", "watcher", "pool",
                  -- TLS and HTTP (made by refresh_tls below)
                  "server_ctx", "client_ctx", "ssl_fresh", "ssl_done", "ssl_server", "tcp_to_tls", "tcp_tls",
                  "x509", "x509_peer", "session", "http_server", "stale_req", "stale_res" }

local function value()
  if math.random() < 0.15 then  -- wrong self: an object of some class
    local class = classes[math.random(#classes)]
    return class, objects[class]
  end
  local v = simple[math.random(#simple)]
  return v[1], v[2]
end

-- Objects, made again every so often since calls close and kill them ---------------

local keep = {}  -- things to close when objects are made again
local function refresh()
  for _, o in ipairs(keep) do pcall(function() o:close() end) end
  keep = {}
  local function own(o) if o then keep[#keep + 1] = o end return o end
  -- Calls may have used up descriptors or broken sockets: a failed make leaves the old object.
  local function make(class, f)
    local ok, o = pcall(f)
    if ok and o then objects[class] = own(o) end
  end
  make("tcp_master", socket.tcp)
  make("tcp_server", function() return socket.bind("127.0.0.1", 0) end)
  make("tcp_client", function()
    local _, port = objects.tcp_server:getsockname()
    local c = assert(socket.connect("127.0.0.1", port))
    own(objects.tcp_server:accept())
    return c
  end)
  make("udp", function() local u = socket.udp(); u:setsockname("127.0.0.1", 0); return u end)
  make("unix_stream", unix.stream)
  make("unix_dgram", unix.dgram)
  objects.fiber = gsock.spawn(function() gsock.sleep(0.5) end)
  objects.dead_fiber = gsock.spawn(function() return 1, 2, 3 end)
  objects.event = gsock.event()
  objects.queue = gsock.queue(2)
  objects.semaphore = gsock.semaphore(1)
  objects.lock = gsock.lock()
  pcall(function() objects.watcher = gsock.io(objects.tcp_client:getfd(), "r") end)
  objects.pool = gsock.pool(2)
end

-- TLS and HTTP objects -----------------------------------------------------------------
-- Test certificates (support/../../tls/support/certs.lua, the openssl command) in this
-- process's directory (the parent runs it in a fresh one and removes it).
local certs
do
  local tmpname = os.tmpname
  local n = 0
  os.tmpname = function() n = n + 1 return ("%s/tls%d"):format(os.getenv("PWD") or ".", n) end
  local ok, c = pcall(certs_lib.make)
  os.tmpname = tmpname
  certs = assert(ok and c, c)
end
local leaf_pem = certs_lib.slurp(certs.localhost.cert)
local server_params = { mode = "server", protocol = "any", certificate = certs.localhost.cert, key = certs.localhost.key }
local server_ctx = assert(ssl.newcontext(server_params))
local client_ctx = assert(ssl.newcontext({ mode = "client", protocol = "any", cafile = certs.ca.cert }))
local noverify_ctx = assert(ssl.newcontext({ mode = "client", protocol = "any", verify = "none" }))

-- A TLS echo server in fibers of this process (its listening socket is its own: no call
-- gets it). Each connection's server side becomes objects.ssl_server.
local echo_listener = assert(socket.bind("127.0.0.1", 0))
local _, echo_port = echo_listener:getsockname()
echo_port = tonumber(echo_port)
gsock.spawn(function()
  while true do
    local c = echo_listener:accept()
    if c then
      gsock.spawn(function()
        local conn = ssl.wrap(c, server_ctx)
        if not conn then c:close() return end
        conn:settimeout(2)
        if not conn:dohandshake() then conn:close() return end
        objects.ssl_server = conn
        while true do
          local line, err = conn:receive("*l")
          if not line then break end
          if not conn:send(line .. "\n") then break end
        end
        conn:close()
      end)
    end
  end
end)
local closed_port
do
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, p = s:getsockname()
  closed_port = tonumber(p)
  s:close()
end

-- HTTP: a server (and an HTTPS one) whose handler runs the pending action of an HTTP
-- target with the request's req and res; what the action returns the handler returns.
local pending            -- function(req, res) or nil
local function fuzz_handler(req, res)
  objects.stale_req, objects.stale_res = req, res   -- stale once this request is over
  local action = pending
  pending = nil
  if action then return action(req, res) end
  return 200, "ok"
end
local http_limits = { header_timeout = 1, body_timeout = 1, keepalive_timeout = 1 }
local http_srv = gsock.http.server("127.0.0.1:0", fuzz_handler, http_limits):start()
local https_limits = { header_timeout = 1, body_timeout = 1, keepalive_timeout = 1,
                       tls = { cert = certs.localhost.cert, key = certs.localhost.key, handshake_timeout = 1 } }
local https_srv = gsock.http.server("127.0.0.1:0", fuzz_handler, https_limits):start()
local function port_of(srv)
  return tonumber(tostring(srv.address):match(":(%d+)$"))
end
local http_port, https_port = assert(port_of(http_srv)), assert(port_of(https_srv))

local tls_keep, http_servers = {}, {}
local function refresh_tls()
  for _, o in ipairs(tls_keep) do pcall(function() o:close() end) end
  tls_keep = {}
  for _, srv in ipairs(http_servers) do gsock.spawn(function() pcall(srv.stop, srv, 0) end) end
  http_servers = {}
  local function make(class, f)
    local ok, o = pcall(f)
    if ok and o then
      objects[class] = o
      if io.type(o) == nil and type(o) == "userdata" then tls_keep[#tls_keep + 1] = o end
    end
  end
  local function tcp_to_echo()
    local c = assert(socket.connect("127.0.0.1", echo_port))
    c:settimeout(1)
    return c
  end
  -- Contexts of their own (a call may release them with __gc): the echo server's stay usable.
  make("server_ctx", function() return assert(ssl.newcontext(server_params)) end)
  make("client_ctx", function()
    return assert(ssl.newcontext({ mode = "client", protocol = "any", cafile = certs.ca.cert,
                                   verify = math.random() < 0.5 and "none" or nil }))
  end)
  make("tcp_to_tls", tcp_to_echo)
  make("ssl_fresh", function() return assert(ssl.wrap(tcp_to_echo(), client_ctx)) end)
  make("ssl_done", function()
    local conn = assert(ssl.wrap(tcp_to_echo(), client_ctx))
    conn:settimeout(1)
    conn:sni("localhost")
    assert(conn:dohandshake())
    return conn
  end)
  make("x509_peer", function() return assert(objects.ssl_done:getpeercertificate()) end)
  make("x509", function() return assert(ssl.loadcertificate(leaf_pem)) end)
  make("tcp_tls", function()
    local c = tcp_to_echo()
    local session = assert(c:sslhandshake(nil, "localhost", false))
    objects.session = session
    return c
  end)
  make("http_server", function()
    local srv = gsock.http.server("127.0.0.1:0", fuzz_handler, http_limits)
    http_servers[#http_servers + 1] = srv
    return srv
  end)
end
refresh_tls()

-- Targets ---------------------------------------------------------------------------

local targets = {}
local skip = { server = true, udp_server = true, dump = true, __unload = true, _link = true }
for _, lib in ipairs({ { "gsock", gsock }, { "socket", socket }, { "socket.dns", socket.dns }, { "socket.unix", unix } }) do
  local keys = {}
  for k, v in pairs(lib[2]) do if type(v) == "function" and not skip[k] then keys[#keys + 1] = k end end
  table.sort(keys)
  for _, k in ipairs(keys) do targets[#targets + 1] = { name = lib[1] .. "." .. k, fn = lib[2][k] } end
end
local methods = {
  socket = { "_receiveuntil", "accept", "bind", "close", "connect", "dirty", "getfamily", "getfd", "getoption",
             "getpeername", "getreusedtimes", "getsockname", "getstats", "gettimeout", "listen", "receive",
             "receiveany", "receiveuntil", "send", "setfd", "setkeepalive", "setoption", "setpeername",
             "setsockname", "setstats", "settimeout", "settimeouts", "shutdown", "receivefrom", "sendto",
             "sslhandshake", "setclientcert", "_tlshandshake", "_tlsinfo",
             "__gc", "__close", "__tostring", "__index" },
  fiber = { "join", "get", "kill", "dead", "successful", "__gc" },
  event = { "set", "clear", "is_set", "wait" },
  queue = { "put", "get", "put_nowait", "get_nowait", "size" },
  semaphore = { "acquire", "release", "__close" },
  timeout = { "cancel", "__close", "__gc" },
  watcher = { "close", "getfd", "__close", "__gc" },
  pool = { "spawn", "join" },
  request = { "body", "reader", "header_values", "args", "__index", "__tostring" },
  response = { "write", "finish", "upgrade", "__index" },
}
local family = { tcp_master = "socket", tcp_server = "socket", tcp_client = "socket", udp = "socket",
                 unix_stream = "socket", unix_dgram = "socket", fiber = "fiber", dead_fiber = "fiber",
                 event = "event", queue = "queue", semaphore = "semaphore", lock = "semaphore",
                 timeout = "timeout", watcher = "watcher", pool = "pool",
                 tcp_to_tls = "socket", tcp_tls = "socket",
                 stale_req = "request", stale_res = "response" }
-- The TLS classes' methods are what their metatables hold (pairs over __index), and their
-- metamethods.
local tls_classes = { server_ctx = true, client_ctx = true, ssl_fresh = true, ssl_done = true, ssl_server = true,
                      x509 = true, x509_peer = true, session = true, http_server = true }
local function listed(o)
  local mt = getmetatable(o)
  local names = {}
  if type(mt) ~= "table" then return names end
  if type(mt.__index) == "table" then
    for k, v in pairs(mt.__index) do
      if type(v) == "function" then names[#names + 1] = k end
    end
  end
  for _, m in ipairs({ "__gc", "__close", "__tostring", "__index", "__eq", "__len" }) do
    if type(rawget(mt, m)) == "function" then names[#names + 1] = m end
  end
  table.sort(names)
  return names
end
-- objects.ssl_server comes from the echo server's fiber, a moment after ssl_done.
for _ = 1, 100 do if objects.ssl_server then break end gsock.sleep(0.01) end
for _, class in ipairs(classes) do
  local list = tls_classes[class] and listed(objects[class]) or methods[family[class]]
  for _, m in ipairs(list) do
    targets[#targets + 1] = { name = class .. ":" .. m, class = class, method = m, tls = tls_classes[class] }
  end
end

-- TLS values: params tables, paths, names and PEM besides the hostile values.
local param_keys = { "mode", "protocol", "key", "certificate", "certificates", "password", "cafile", "capath",
                     "ciphers", "ciphersuites", "verify", "options", "depth", "dhparam", "curve", "curveslist",
                     "verifyext", "alpn", "dane", "sni_certificates" }
local plausible = {
  mode = { "client", "server", "both" },
  protocol = { "any", "tlsv1_2", "tlsv1_3", "tlsv1", "sslv23" },
  key = { certs.localhost.key, certs.client.encrypted_key, certs.garbage, certs.missing, certs.localhost.cert },
  certificate = { certs.localhost.cert, certs.chained.chain, certs.garbage, certs.missing, certs.localhost.key },
  certificates = { { { certificate = certs.localhost.cert, key = certs.localhost.key } }, { {} }, { 1 } },
  password = { "secret", "", function() return "secret" end, function() gsock.sleep(0.01) return "secret" end },
  cafile = { certs.ca.cert, certs.garbage, certs.missing },
  capath = { certs.dir, "/nonexistent" },
  ciphers = { "HIGH", "NONE", "" }, ciphersuites = { "TLS_AES_128_GCM_SHA256", "bogus" },
  verify = { "none", "peer", { "peer", "fail_if_no_peer_cert" }, "client_once", "sometimes" },
  options = { "all", { "all", "no_sslv2" }, { "no_such_option" } },
  depth = { 0, 3, -1, 2^40 },
  dhparam = { function() return "garbage" end, function() return leaf_pem end, function() gsock.sleep(0.01) end },
  curve = { "prime256v1", "nope" }, curveslist = { "X25519:prime256v1", "" },
  verifyext = { "lsec_continue", { "crl_check" } },
  alpn = { "http/1.1", { "h2", "http/1.1" }, { ("a"):rep(300) }, { "" } },
  dane = { true, { "no_ee_namechecks" }, { "bogus" } },
  sni_certificates = { { { names = { "localhost" }, certificate = certs.localhost.cert, key = certs.localhost.key } } },
}
local tls_strings = { "localhost", "none", "peer", "client", "server", "sha256", "sha1", "md5", "nope",
                      "http/1.1", leaf_pem, certs.localhost.cert, certs.ca.cert, "version", "cipher", "bits",
                      "protocol", "*l", "*a", "wantread" }

local function tls_value()
  local r = math.random()
  if r < 0.15 then
    local p = { mode = plausible.mode[math.random(2)] }
    if math.random() < 0.1 then p.mode = select(2, value()) end
    for _ = 1, math.random(0, 3) do
      local key = param_keys[math.random(#param_keys)]
      if math.random() < 0.6 then
        p[key] = plausible[key][math.random(#plausible[key])]
      else
        local _, v = value()
        p[key] = v
      end
    end
    if math.random() < 0.05 then p.cafle = certs.ca.cert end
    return "params table", p
  elseif r < 0.25 then
    local s = tls_strings[math.random(#tls_strings)]
    return ("'%s'"):format(#s > 40 and s:sub(1, 20) .. "..." or s), s
  elseif r < 0.28 then
    return "{ localhost = server_ctx }", { localhost = server_ctx, ["*"] = client_ctx }
  end
  return value()
end

-- A copy of a plain table (ssl.https fills in its argument; the shared values stay as they are).
local function copied(v)
  if type(v) ~= "table" or getmetatable(v) then return v end
  local t = {}
  for k, x in pairs(v) do t[k] = x end
  return t
end

-- ssl.https towards this process's servers and a closed port only: every URL is replaced by one of these.
local local_urls = {
  "https://127.0.0.1:" .. https_port .. "/r?a=1",
  "https://127.0.0.1:" .. echo_port .. "/",
  "https://127.0.0.1:" .. closed_port .. "/",
  "https://127.0.0.1:" .. http_port .. "/",
  "http://127.0.0.1:" .. http_port .. "/",
}
local function local_url() return local_urls[math.random(#local_urls)] end
local function localized(u)
  if type(u) == "string" then return local_url() end
  if type(u) == "table" and not getmetatable(u) then
    u = copied(u)
    u.url = local_url()
    if math.random() < 0.5 then u.verify = "none" end
    if math.random() < 0.3 then u.cafile = certs.ca.cert end
    for _ = 1, math.random(0, 2) do
      local key = ({ "method", "headers", "source", "sink", "step", "protocol", "options", "create", "redirect",
                     "proxy", "certificate", "key", "alpn", "port", "host", "path" })[math.random(16)]
      local _, v = tls_value()
      u[key] = copied(v)
    end
  end
  return u
end
-- (A target's prepare(args) runs in the main loop, so that what it draws keeps a seed's
-- sequence whatever the fibers' timing; it returns the function to call.)
targets[#targets + 1] = { name = "ssl.https.request", tls = true, prepare = function(args)
  args[1] = localized(args[1])
  return https.request
end }
targets[#targets + 1] = { name = "ssl.https.tcp", tls = true, prepare = function(args)
  for i = 1, args.n do args[i] = copied(args[i]) end
  local port = ({ https_port, echo_port, closed_port })[math.random(3)]
  return function(...)
    local create = https.tcp(...)
    local conn = create()
    conn:settimeout()
    conn:connect("127.0.0.1", port)
    return conn:send("GET / HTTP/1.0\r\n\r\n")
  end
end }
for _, name in ipairs({ "newcontext", "wrap", "loadcertificate" }) do
  targets[#targets + 1] = { name = "ssl." .. name, tls = true, fn = ssl[name],
                            class = name == "wrap" and "tcp_to_tls" or nil }
end
targets[#targets + 1] = { name = "ssl.x509.load", tls = true, fn = ssl.x509.load }
targets[#targets + 1] = { name = "gsock.http.server", tls = true, fn = function(...)
  local srv = gsock.http.server(...)
  http_servers[#http_servers + 1] = srv
  return srv
end }

-- HTTP targets: `action(req, res, args)` runs in the handler of a request this process
-- sends with a raw socket (plain or TLS); args[1] is req or res 85% of the time.
local request_text = "POST /p%20q?a=1&a=2&b&c=%41+x HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nX-A: 2\r\n"
  .. "Content-Length: 11\r\nConnection: close\r\n\r\nhello world"
local function drive(action, over_tls)
  pending = action
  local c = assert(socket.connect("127.0.0.1", over_tls and https_port or http_port))
  c:settimeout(1)
  if over_tls then
    c = assert(ssl.wrap(c, noverify_ctx))
    c:settimeout(1)
    assert(c:dohandshake())
  end
  c:send(request_text)
  c:receive("*a")
  c:close()
end
local function http_target(name, self_class, action)
  targets[#targets + 1] = { name = name, tls = true, http = true, self_class = self_class, action = action }
end
local function call_method(obj, m, args)
  local f = obj[m]
  return f(table.unpack(args, 1, args.n))
end
for _, m in ipairs({ "body", "reader", "header_values", "args" }) do
  http_target("req:" .. m, "req", function(req, res, args, run)
    run(function()
      local r = call_method(req, m, args)
      if m == "reader" and type(r) == "function" then
        for _ = 1, 4 do if r() == nil then break end end
      end
    end)
  end)
end
http_target("req[k]", "req", function(req, res, args, run)
  run(function() local v = req[args[2]] if type(v) == "table" then return v[args[3]] end end)
end)
http_target("req.headers[k]", "req", function(req, res, args, run)
  run(function() return req.headers[args[2]], req:header_values(args[3]) end)
end)
for _, m in ipairs({ "write", "finish", "upgrade" }) do
  http_target("res:" .. m, "res", function(req, res, args, run)
    run(function()
      local r = call_method(res, m, args)
      if m == "upgrade" and r then r:send("x") r:close() end
    end)
    if args.coins[1] < 0.5 then
      run(function() return res:write(args[3]) end)
    end
  end)
end
http_target("res.status=", "res", function(req, res, args, run)
  run(function() res.status = args[2] end)
  if args.coins[1] < 0.5 then return end
  run(function() return res:finish(args[3]) end)
end)
http_target("res.headers[k]=v", "res", function(req, res, args, run)
  run(function() res.headers[args[2]] = args[3] end)
  if args.coins[1] < 0.3 then run(function() res.headers = args[4] end) end
  if args.coins[2] < 0.5 then run(function() return res:write("body") end) end
end)
http_target("return", "res", function(req, res, args)
  return table.unpack(args, 2, args.n)
end)
http_target("return status, body, headers", "res", function(req, res, args)
  local headers = args[4]
  if args.coins[1] < 0.5 then headers = { [args[3]] = args[4], ["X-Ok"] = args[2] } end
  return args[2], args[3], headers
end)
http_target("raise", "res", function(req, res, args)
  error(args[2], math.floor(args.coins[1] * 3))
end)

-- Errors: with GSOCKD_FUZZ_ERRORS=path, each distinct (target, error) pair is written
-- there, to read for messages of the wrong kind (not a string or gsock error value) or
-- that do not name the bad argument.
local errors_log = os.getenv("GSOCKD_FUZZ_ERRORS") and assert(io.open(os.getenv("GSOCKD_FUZZ_ERRORS"), "a"))
local seen = {}
local function record(name, how, e)
  if not errors_log then return end
  local kind = type(e)
  local text
  if kind == "string" then
    text = e
  elseif kind == "table" and getmetatable(e) and rawget(e, "kind") then
    kind = "gsock error " .. tostring(rawget(e, "kind"))
    text = tostring(rawget(e, "message"))
  else
    kind = "ODD " .. kind
    local ok, t = pcall(tostring, e)
    text = ok and t or "?"
  end
  text = text:sub(1, 300):gsub("0x%x+", "0x..."):gsub("\n", "\\n")
  local key = name .. "\t" .. how .. "\t" .. kind .. "\t" .. text
  if not seen[key] then
    seen[key] = true
    errors_log:write(key, "\n")
    errors_log:flush()
  end
end

-- Calling ---------------------------------------------------------------------------

local function resolve(t)
  if t.fn or t.action then return t.fn end
  -- (prepare-d targets do not come here)
  local o = objects[t.class]
  if t.method:sub(1, 2) == "__" then
    local mt = getmetatable(o)
    return type(mt) == "table" and rawget(mt, t.method) or nil
  end
  local ok, f = pcall(function() return o[t.method] end)
  return ok and f or nil
end

local contexts = { "fiber", "fiber", "fiber", "fiber", "__gc", "__close", "sort", "coroutine.wrap" }

local function checked(name, f)
  return function()
    local r = table.pack(pcall(f))
    if not r[1] then
      record(name, "raised", r[2])
    elseif r[2] == nil and r.n >= 3 then
      record(name, "returned nil,", r[3])
    end
  end
end

local function in_context(context, f)
  if context == "__gc" then
    setmetatable({}, { __gc = function() pcall(f) end })
    collectgarbage()
  elseif context == "__close" then
    do local _ <close> = setmetatable({}, { __close = function() pcall(f) end }) end
  elseif context == "sort" then
    local done = false
    table.sort({ 3, 1, 2 }, function(a, b) if not done then done = true pcall(f) end return a < b end)
  elseif context == "coroutine.wrap" then
    pcall(coroutine.wrap(function() pcall(f) end))
  else
    f()
  end
end

refresh()
for i = 1, calls do
  if i % 40 == 0 then refresh() end
  if i % 40 == 20 then refresh_tls() end
  local t = targets[math.random(#targets)]
  local args, names = { n = 0 }, {}
  local first = 1
  local draw = t.tls and tls_value or value
  if (t.class or t.self_class) and math.random() < 0.85 then
    args[1], args.n, names[1], first = objects[t.class], 1, t.class or t.self_class, 2
  end
  for j = first, math.random(first - 1, first + 3) do
    names[j], args[j] = draw()
    args.n = j
  end
  local context = contexts[math.random(#contexts)]
  local over_tls = t.http and math.random() < 0.3
  if t.http then args.coins = { math.random(), math.random() } end
  note(("call %d: %s(%s) in %s%s"):format(i, t.name, table.concat(names, ", ", 1, args.n), context,
                                          over_tls and " over TLS" or ""))
  local f
  if t.prepare then f = t.prepare(args) else f = resolve(t) end
  local make = (not only or only[i]) and kept(t.name)
  if t.http and make then
    -- args[1] is req or res when names[1] says so: the handler's own.
    local own_self = first == 2
    local fiber = gsock.spawn(function()
      drive(function(req, res)
        if own_self then args[1] = t.self_class == "req" and req or res end
        return t.action(req, res, args, function(g)
          in_context(context, checked(t.name, g))
        end)
      end, over_tls)
    end)
    if not fiber:join(0.6) then pcall(fiber.kill, fiber, nil, true, 0.2) end
  elseif f and make then
    -- A call that blocks for ever is bounded by running it in its own fiber for a while.
    local fiber = gsock.spawn(function()
      in_context(context, checked(t.name, function() return f(table.unpack(args, 1, args.n)) end))
    end)
    if not fiber:join(0.01) then pcall(fiber.kill, fiber, nil, true, 0.2) end
  end
end
for _, o in ipairs(keep) do pcall(function() o:close() end) end
for _, o in ipairs(tls_keep) do pcall(function() o:close() end) end
os.execute("rm -rf " .. certs_lib.quote(certs.dir))
note(("done %d"):format(calls))
log:close()
print("FUZZ DONE " .. calls)
