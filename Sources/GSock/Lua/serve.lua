-- Serving (SPEC §5, §6): what `gsockd run handler.lua` and `gsockd serve CONFIG` run as
-- the main fiber. It starts a gsock.server per service, prints one line per listener
-- (`listening on ADDRESS (NAME)`), then waits for a signal. SIGTERM and SIGINT stop
-- accepting, drain open connections for up to shutdown_timeout, and return. SIGHUP
-- loads the handlers again (and the config, for config files): when everything loads,
-- new connections get the new code while open ones finish on the old, and no listener
-- is closed; when anything fails, the old code keeps serving and the failure is logged.
--
-- Returns nothing when done, or a status and a message: "fail" (exit 1: an address
-- in use, an init that raised) or "usage" (exit 2: a handler file that does not load).
local gsock, host = ...
local log = host.log

local M = {}

--- "FILE:LINE" of the first line of `file` that assigns `key` (a handler table is
--- written by hand, so that is almost always the line), else "FILE".
local function where(file, key)
  local f = type(key) == "string" and io.open(file, "r")
  if not f then return file end
  local n, pattern = 0, "%f[%w_]" .. key:gsub("%p", "%%%0") .. "%s*="
  for line in f:lines() do
    n = n + 1
    if line:find(pattern) then
      f:close()
      return ("%s:%d"):format(file, n)
    end
  end
  f:close()
  return file
end

--- The handler table of what a handler file returned, or nil and what is wrong with it.
local function handler_of(value, file)
  if type(value) == "function" then return { handle = value } end
  if type(value) == "table" then
    local problem, key = gsock.check_handler(value)
    if not problem then return value end
    return nil, ("%s: handler table: %s"):format(where(file, key or problem:match("^unknown key '(.-)'")), problem)
  end
  return nil, ("%s: a handler file returns a function(sock, peer) or a table with a 'handle' function, got %s")
    :format(file, value == nil and "nothing" or type(value))
end

local function load_handler(file)
  local chunk, err = loadfile(file)
  if not chunk then return nil, err end
  local ok, value = pcall(chunk)
  if not ok then return nil, tostring(value) end
  return handler_of(value, file)
end

local SERVER_OPTIONS = { "max_connections", "backlog", "idle_timeout", "nodelay", "tls", "protocol", "access_log",
                         "max_request_line", "max_header_size", "max_headers", "max_body", "header_timeout",
                         "body_timeout", "keepalive_timeout", "keepalive_requests" }

--- A service's server options: the config's, else the handler table's.
local function server_options(service)
  local opts = { name = service.name, reuseport = service.reuseport }
  for _, key in ipairs(SERVER_OPTIONS) do
    local v = (service.options or {})[key]
    if v == nil then v = service.handler[key] end
    opts[key] = v
  end
  return opts
end

local function init(service)
  local h = service.handler
  if not h.init then return true end
  local ok, err = pcall(h.init, { name = service.name, env = service.env or {}, listen = service.listen })
  if not ok then return nil, ("%s: init failed: %s"):format(service.name, tostring(err)) end
  return true
end

local function start_all(services, announce)
  local servers = {}
  local function abandon()
    for _, s in ipairs(servers) do s:stop(0) end
  end
  for i, service in ipairs(services) do
    local ok, err = init(service)
    if not ok then abandon() return nil, err end
    local server = gsock.server(service.listen, service.handler.handle, server_options(service))
    ok, err = pcall(server.start, server)
    if not ok then abandon() return nil, tostring(err) end
    servers[i] = server
    for _, address in ipairs(server.bound) do
      if announce then io.stdout:write(("listening on %s (%s)\n"):format(address, service.name)) end
      log("info", "listening on " .. address, { service = service.name })
    end
  end
  io.stdout:flush()
  return servers
end

-- The admin listener (SPEC §9) ---------------------------------------------------------

--- Starts the admin listener on `address`: /healthz, /readyz (from `readiness`, a table
--- whose `why` is nil when ready), /metrics and /debug/fibers. Raises "ADDRESS: reason".
local function start_admin(address, readiness, max_run_time)
  local text = { ["Content-Type"] = "text/plain; charset=utf-8" }
  local metrics_type = { ["Content-Type"] = "text/plain; version=0.0.4; charset=utf-8" }
  local json = { ["Content-Type"] = "application/json" }
  local routes = {
    ["/healthz"] = function()
      if host.loop_healthy(math.max(max_run_time, 1)) then return 200, "ok\n", text end
      return 503, ("unhealthy: a fiber blocked the loop past max_run_time (%g s)\n"):format(max_run_time), text
    end,
    ["/readyz"] = function()
      if readiness.why then return 503, "not ready: " .. readiness.why .. "\n", text end
      return 200, "ready\n", text
    end,
    ["/metrics"] = function()
      return 200, gsock.metrics.render(readiness.extra), metrics_type
    end,
    ["/debug/fibers"] = function(req)
      if (req:args()).format == "json" then return 200, host.fiber_dump(true), json end
      return 200, host.fiber_dump(false), text
    end,
  }
  local server = gsock.http.server(address, function(req)
    local route = routes[req.path]
    if not route then return 404, "not found\n", text end
    if req.method ~= "GET" and req.method ~= "HEAD" then
      return 405, "method not allowed\n", { ["Content-Type"] = text["Content-Type"], Allow = "GET, HEAD" }
    end
    return route(req)
  end, { name = "admin" })
  server.no_metrics = true
  server.quiet_drain = true   -- the process's one drain line is about its services
  local ok, err = pcall(server.start, server)
  if not ok then error(err, 0) end
  host.start_collecting()
  return server
end

--- A worker's side of the admin channel (Serving/AdminChannel.swift): answers the
--- supervisor's requests from a fiber, waiting on the descriptor, never blocking the loop.
local function answer_supervisor(fd, readiness, grace)
  local part_size = 32 * 1024
  local function reply(id, text)
    local i = 1
    repeat
      local msg = id .. (i + part_size > #text and "." or "+") .. text:sub(i, i + part_size - 1)
      i = i + part_size
      while true do
        local sent = host.message_send(fd, msg)
        if sent then break end
        if sent == nil or not pcall(gsock.wait_write, fd, 1) then return end
      end
    until i > #text
  end
  local answers = {
    metrics = function() return gsock.metrics.render() end,
    health = function() return host.loop_healthy(grace) and "ok" or "unhealthy" end,
    ready = function() return readiness.why and ("not ready: " .. readiness.why) or "ready" end,
    dump = function() return host.fiber_dump(false) end,
    dumpjson = function() return host.fiber_dump(true) end,
  }
  while pcall(gsock.wait_read, fd) do
    while true do
      local msg = host.message_receive(fd)
      if msg == nil then return end
      if msg == false then break end
      local id, what = msg:match("^(%d+) (%a+)$")
      local answer = answers[what]
      if answer then reply(id, answer()) end
    end
  end
end

--- Loads the services again; swaps their handlers only when every one loads and inits.
--- True when it did.
local function reload(servers, services, load_services)
  local fresh, err = load_services()
  if not fresh then
    log("error", "reload failed, the running code keeps serving: " .. tostring(err))
    return
  end
  local by_name = {}
  for _, s in ipairs(fresh) do by_name[s.name] = s end
  local contexts = {}
  for i, s in ipairs(services) do
    local new = by_name[s.name]
    if new then
      local ok, ierr = init(new)
      if not ok then
        log("error", "reload failed, the running code keeps serving: " .. ierr)
        return
      end
      -- Certificates are read again; a service that had no TLS does not start speaking it.
      local tls = server_options(new).tls
      if tls and servers[i].tls then
        local ctx, terr = servers[i]:tls_context_for(tls)
        if not ctx then
          log("error", ("reload failed, the running code keeps serving: %s: %s"):format(s.name, terr))
          return
        end
        contexts[i] = { ctx, tls }
      end
    end
  end
  local kept = 0
  for i, s in ipairs(services) do
    local new = by_name[s.name]
    if new then
      servers[i]:set_handle(new.handler.handle)
      if contexts[i] then servers[i]:use_tls(contexts[i][1], contexts[i][2]) end
      s.handler = new.handler
      by_name[s.name] = nil
      kept = kept + 1
    else
      log("warning", ("reload: service %s is gone from the config; it keeps serving until a restart"):format(s.name))
    end
  end
  for name in pairs(by_name) do
    log("warning", ("reload: new service %s starts at the next restart"):format(name))
  end
  log("notice", ("reloaded %d service(s)"):format(kept))
  return true
end

--- The one line that ends a drain: connections finished and killed over every service
--- (and per service, when there are several).
local function drain_summary(servers, seconds)
  local finished, killed, parts = 0, 0, {}
  for _, s in ipairs(servers) do
    local counts = s.drain_counts or { finished = 0, killed = 0 }
    finished, killed = finished + counts.finished, killed + counts.killed
    parts[#parts + 1] = ("%s: %d finished, %d killed"):format(s.name, counts.finished, counts.killed)
  end
  local text = ("drained: %d connection(s) finished, %d killed in %.1f s"):format(finished, killed, seconds)
  if #servers > 1 and finished + killed > 0 then text = text .. " (" .. table.concat(parts, "; ") .. ")" end
  return text
end

--- Starts the services and serves until SIGTERM or SIGINT.
local function serve_services(services, options, load_services)
  for _, service in ipairs(services) do
    for _, text in ipairs(type(service.listen) == "table" and service.listen or { service.listen }) do
      local ok, err = gsock.parse_address(text)
      if not ok then return "usage", ("%s: %s"):format(service.name, err) end
    end
  end
  -- /readyz fails until every service's init ran and its listeners are bound.
  local readiness = { why = "starting" }
  local admin
  if options.admin then
    local ok, aerr = pcall(start_admin, options.admin, readiness, options.max_run_time or 1)
    if not ok then return "fail", "admin: " .. tostring(aerr) end
    admin = aerr
    if options.announce ~= false then
      io.stdout:write(("admin listening on %s\n"):format(admin.address))
      io.stdout:flush()
    end
    log("info", "admin listening on " .. admin.address)
  end
  local channel = host.admin_channel()
  local answering
  if channel then
    host.start_collecting()
    answering = gsock.spawn(answer_supervisor, channel, readiness, math.max(options.max_run_time or 1, 1))
  end
  local servers, err = start_all(services, options.announce ~= false)
  if not servers then
    if admin then admin:stop(0) end
    return "fail", err
  end
  readiness.why = nil
  -- systemd (NOTIFY_SOCKET): with workers, the supervisor speaks for the group.
  local notify = options.announce ~= false and host.notify or function() end
  local function status() return ("STATUS=serving %d service(s)"):format(#servers) end
  notify("READY=1\n" .. status())
  host.worker_ready()
  local interval = host.watchdog_interval()
  local watchdog = interval and gsock.spawn(function()
    -- From a fiber, so that a loop that stops turning stops the pings too.
    while true do
      notify("WATCHDOG=1")
      gsock.sleep(interval / 2)
    end
  end)
  local stop = gsock.event()
  local draining_delayed = false
  host.on_signal(function(name)
    if name == "HUP" then
      notify("RELOADING=1\nSTATUS=reloading")
      local reloaded = reload(servers, services, load_services)
      if readiness.why ~= "draining" then readiness.why = not reloaded and "the last reload failed" or nil end
      notify("READY=1\n" .. status())
      host.worker_ready()
    elseif not stop:is_set() then
      -- A signal sent to the process group reaches a worker twice within moments (from
      -- the sender and passed on by the supervisor): that is one SIGTERM, not a second
      -- one cutting drain_delay short.
      if draining_delayed and gsock.now() - draining_delayed < 1 then return end
      readiness.why = "draining"
      local delay = options.drain_delay or 0
      if delay > 0 and not draining_delayed then
        -- Load balancers stop sending here (readyz fails) while the listeners still accept.
        draining_delayed = gsock.now()
        log("notice", ("SIG%s: not ready; accepting for %g s more (drain_delay)"):format(name, delay))
        notify(("STOPPING=1\nSTATUS=drain_delay %g s"):format(delay))
        gsock.sleep(delay)
        if stop:is_set() then return end
      end
      log("notice", ("SIG%s: no longer accepting; draining open connections for up to %g s")
        :format(name, options.shutdown_timeout))
      notify(("STOPPING=1\nSTATUS=draining for up to %g s"):format(options.shutdown_timeout))
      stop:set()
    end
  end)
  stop:wait()
  local began, stopping = gsock.now(), {}
  for i, s in ipairs(servers) do
    s.quiet_drain = true
    stopping[i] = gsock.spawn(s.stop, s, options.shutdown_timeout)
  end
  gsock.joinall(stopping)
  log("notice", drain_summary(servers, gsock.now() - began))
  if watchdog then watchdog:kill() end
  if admin then admin:stop(0) end
  if answering then answering:kill() end
end

--- `gsockd run FILE`: runs the file; if it returns a handler, serves it.
function M.run(chunk, options, ...)
  local value = chunk(...)
  if value == nil then
    if not options.listen then return end
    return "usage", ("%s: returned nothing, so it is a script and cannot be served on --listen: a handler file "
      .. "returns a function(sock, peer) or a table with a 'handle' function"):format(options.file)
  end
  local handler, err = handler_of(value, options.file)
  if not handler then return "usage", err end
  local name = handler.name or options.file:match("([^/]+)%.lua$") or "handler"
  local listen = options.listen or handler.listen or "127.0.0.1:7000"
  local service = { name = name, listen = listen, handler = handler, reuseport = options.reuseport }
  options.shutdown_timeout = options.shutdown_timeout or 10
  return serve_services({ service }, options, function()
    local h, lerr = load_handler(options.file)
    if not h then return nil, lerr end
    return { { name = name, listen = listen, handler = h } }
  end)
end

--- The services of a config spec with their handlers loaded, or nil and the first failure.
local function load_services(spec)
  local services = {}
  for i, s in ipairs(spec.services) do
    local h, err = load_handler(s.handler)
    if not h then return nil, err end
    services[i] = { name = s.name, listen = s.listen, handler = h, options = s.options, env = s.env,
                    reuseport = spec.reuseport }
  end
  return services
end

--- `gsockd check CONFIG`: loads every service's handler (runs its top level, not its
--- init) and checks what it returns; "usage" and every problem, one per line, if any.
function M.check(spec)
  for _, pattern in ipairs(spec.lua_path or {}) do package.path = pattern .. ";" .. package.path end
  local problems = {}
  for _, s in ipairs(spec.services) do
    local h, err = load_handler(s.handler)
    if not h then problems[#problems + 1] = ("services.%s.handler: %s"):format(s.name, err) end
  end
  if #problems > 0 then return "usage", table.concat(problems, "\ngsockd: ") end
end

--- `gsockd serve CONFIG`: `spec` is the config as Swift read it; spec.reload() reads it again.
function M.serve(spec)
  for _, pattern in ipairs(spec.lua_path or {}) do package.path = pattern .. ";" .. package.path end
  local services, err = load_services(spec)
  if not services then return "usage", err end
  return serve_services(services, spec, function()
    local fresh, rerr = spec.reload()
    if not fresh then return nil, rerr end
    return load_services(fresh)
  end)
end

return M
