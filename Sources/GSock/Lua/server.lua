-- Servers (SPEC §5): gsock.server serves a handler on TCP and unix listeners, one
-- fiber per connection; gsock.udp_server serves datagrams. `gsockd run` and the
-- config-file services are built on these.
--
-- Backpressure: past `max_connections` the accept loop stops accepting, so new
-- connections wait in the kernel's backlog, neither served nor refused. When accept
-- fails for lack of descriptors (EMFILE, ENFILE) the loop backs off (0.01 s doubling
-- to 1 s, as gevent does) and logs at most once a second.
local gsock, socket, host = ...

local error, getmetatable, ipairs, math, pairs, setmetatable, tonumber, tostring, type, xpcall =
      error, getmetatable, ipairs, math, pairs, setmetatable, tonumber, tostring, type, xpcall
local log, resources, accepted_peer = host.log, host.resources, host.accepted_peer
local getinfo = debug.getinfo
local internal = gsock._internal
local bad_argument, bad_type = internal.bad_argument, internal.bad_type

-- What gsock.stats() adds up over every server of the runtime.
local totals = { connections = 0, accepted = 0, errors = 0 }

internal.add_stats(function(s)
  s.connections, s.accepted = totals.connections, totals.accepted
  s.errors = s.errors + totals.errors
end)
local unix = require "socket.unix"

-- The servers running, so that a log line written from a connection's fiber can name
-- its service and peer without a table per connection.
local running = setmetatable({}, { __mode = "k" })

-- A gsock.log line from a connection's fiber carries the service and the peer unless
-- `fields` names them.
internal.add_log_context(function(fields)
  local me = gsock.current()
  for server in pairs(running) do
    local client = me and server.handlers[me]
    if client then
      local copy = { service = server.name }
      local ip, port = client:getpeername()
      if ip then copy.peer = port and ("%s:%s"):format(ip, port) or ip end
      for k, v in pairs(fields or {}) do copy[k] = v end
      fields = copy
      break
    end
  end
  return fields
end)

-- Addresses -------------------------------------------------------------------------

--- Parses "HOST:PORT", "[IPV6]:PORT", ":PORT" (all interfaces) or "unix:/path" into
--- { host =, port = } or { path = }; nil and a message when malformed.
local function parse_address(text)
  if type(text) ~= "string" then
    return nil, ("an address string expected, got %s"):format(type(text))
  end
  local path = text:match("^unix:(.+)$")
  if path and #path > host.unix_path_max then
    return nil, ("bad address '%s' (a unix socket path is at most %d bytes, this one is %d)")
      :format(text, host.unix_path_max, #path)
  end
  if path then return { path = path } end
  local h, p = text:match("^%[([^%]]+)%]:(%d+)$")
  if not h then h, p = text:match("^([^:%[%]]*):(%d+)$") end
  local port = math.tointeger(tonumber(p))
  if not h or not port or port > 65535 then
    return nil, ("bad address '%s' (expected HOST:PORT, [IPV6]:PORT, :PORT or unix:/path)"):format(text)
  end
  if h == "" or h == "*" then h = "0.0.0.0" end
  return { host = h, port = port }
end

local function address_text(a)
  if a.path then return "unix:" .. a.path end
  if a.host:find(":", 1, true) then return ("[%s]:%d"):format(a.host, a.port) end
  return ("%s:%d"):format(a.host, a.port)
end

--- Why a unix socket cannot be bound at `path` when bind said `err`, in words that
--- name what is there; nil when it is a socket file nobody listens on (a dead server's).
local function unix_path_problem(path, err)
  local kind = host.file_identity(path)
  if err == "address already in use" then
    if kind == "file" then return "a regular file is there, not a socket (gsockd does not delete it)" end
    if kind == "directory" then return "a directory is there, not a socket" end
    if kind ~= "socket" then return err end
    local probe = unix.stream()
    local live = probe:connect(path)
    probe:close()
    if live then return "address already in use (another process listens on it)" end
    return nil
  end
  local dir = path:match("^(.*)/[^/]*$")
  if dir and dir ~= "" and not host.file_identity(dir) then
    return ("the directory %s does not exist"):format(dir)
  end
  return err
end

--- A listening socket on `a`, or nil and "ADDRESS: reason". For a unix path, also the
--- identity of the socket file made, so that stop removes it only if it is still ours.
local function listen_on(a, backlog, reuseport)
  if a.path then
    local s = unix.stream()
    local ok, err = s:bind(a.path)
    if not ok then
      local problem = unix_path_problem(a.path, err)
      if problem == nil then
        -- A socket file nobody listens on is left over from a dead server: replace it.
        os.remove(a.path)
        ok, err = s:bind(a.path)
      else
        err = problem
      end
    end
    if ok then ok, err = s:listen(backlog) end
    if not ok then s:close() return nil, ("%s: %s"):format(address_text(a), err) end
    local _, identity = host.file_identity(a.path)
    return s, nil, identity
  end
  local candidates, err = socket.dns.getaddrinfo(a.host)
  if not candidates then return nil, ("%s: %s"):format(address_text(a), err) end
  for _, alt in ipairs(candidates) do
    local s = alt.family == "inet6" and socket.tcp6() or socket.tcp4()
    s:setoption("reuseaddr", true)
    if reuseport then s:setoption("reuseport", true) end
    local ok
    ok, err = s:bind(alt.addr, a.port)
    if ok then ok, err = s:listen(backlog) end
    if ok then return s end
    s:close()
  end
  return nil, ("%s: %s"):format(address_text(a), err or "no address")
end

--- listen_on, for a worker of several: the listener the supervisor holds for `a`, else
--- one bound here and handed to the supervisor, which keeps it for every worker (and
--- removes its socket file at the end: then no identity is returned, this process does
--- not remove it). In a process that is no worker, listen_on's.
local function shared_listen_on(a, backlog, reuseport)
  local key = address_text(a)
  local fd = host.shared_listener(key)
  if fd then
    local s, err = host.adopt_listener(fd)
    if not s then return nil, ("%s: %s"):format(key, err) end
    return s
  end
  local s, err, identity = listen_on(a, backlog, reuseport)
  if s and host.share_listener(key, s:getfd(), identity) then identity = nil end
  return s, err, identity
end

--- xpcall's message handler: the error and its traceback from where it was raised down
--- to the handler's own first frame. gsockd's frames (this function, above the error;
--- the xpcall that ran the handler and the accept machinery, below it) are left out:
--- users read their own code's frames. Level 3 skips pcall and this function.
--- `message` is the error as text, `traceback` the "stack traceback:" lines.
local function traceback(e)
  local message = tostring(e)
  local ok, tb = pcall(debug.traceback, "", 3)
  if not ok then return { error = e, message = message, traceback = "" } end
  local last = 0
  for at in tb:gmatch("()\n\t%[C%]: in function 'xpcall'") do last = at end
  if last > 0 then tb = tb:sub(1, last - 1) end
  return { error = e, message = message, traceback = (tb:gsub("^\n", "")) }
end

--- What xpcall(f, traceback, ...) failed with. Lua calls no message handler for a memory
--- error, so that one comes as the bare message.
local function failure_of(result)
  if type(result) == "table" and result.traceback and result.message then return result end
  return { error = result, message = tostring(result), traceback = "" }
end

local function is_killed(e)
  return type(e) == "table" and e.kind == "killed"
end

internal.server_support = {
  traceback = traceback, failure_of = failure_of, is_killed = is_killed,
  count_error = function(service)
    totals.errors = totals.errors + 1
    host.count_handler_error(service)
  end,
}

-- TCP and unix servers ----------------------------------------------------------------------

local Server = {}
Server.__index = Server
Server.__name = "gsock.server"
Server.__tostring = function(s)
  return ("gsock.server %s (%s)"):format(s.name, s.address or "not started")
end

-- Handler-table keys (SPEC §5) and what each holds; gsock.server's opts take the same
-- ones (less handle and init) plus reuseport.
local function is_callable(v)
  return type(v) == "function" or type((getmetatable(v) or {}).__call) == "function"
end
local function is_address_list(v)
  if type(v) == "string" then return true end
  if type(v) ~= "table" then return false end
  for _, a in ipairs(v) do if type(a) ~= "string" then return false end end
  return true
end
local function is_positive_integer(v) return math.type(v) == "integer" and v >= 1 end
local function is_positive_number(v) return type(v) == "number" and v > 0 and v == v end
local KEYS = {
  handle = { is_callable, "a function(sock, peer)" },
  listen = { is_address_list, "an address string or a list of them" },
  init = { is_callable, "a function(config)" },
  max_connections = { is_positive_integer, "a positive integer" },
  backlog = { is_positive_integer, "a positive integer" },
  idle_timeout = { is_positive_number, "a positive number of seconds" },
  name = { function(v) return type(v) == "string" end, "a string" },
  nodelay = { function(v) return type(v) == "boolean" end, "a boolean" },
  reuseport = { function(v) return type(v) == "boolean" end, "a boolean" },
  tls = { function(v) return type(v) == "table" end, "a table { cert = FILE, key = FILE, ... }" },
  -- HTTP services (SPEC §11).
  protocol = { function(v) return v == "http" end, "\"http\"" },
  max_request_line = { is_positive_integer, "a positive integer (bytes)" },
  max_header_size = { is_positive_integer, "a positive integer (bytes)" },
  max_headers = { is_positive_integer, "a positive integer" },
  max_body = { function(v) return math.type(v) == "integer" and v >= 0 end, "a non-negative integer (bytes)" },
  header_timeout = { is_positive_number, "a positive number of seconds" },
  body_timeout = { is_positive_number, "a positive number of seconds" },
  keepalive_timeout = { is_positive_number, "a positive number of seconds" },
  keepalive_requests = { is_positive_integer, "a positive integer" },
  access_log = { function(v) return type(v) == "boolean" end, "a boolean" },
}
local TABLE_KEYS = { "handle", "listen", "init", "max_connections", "backlog", "idle_timeout", "name", "nodelay",
                     "tls", "protocol", "max_request_line", "max_header_size", "max_headers", "max_body",
                     "header_timeout", "body_timeout", "keepalive_timeout", "keepalive_requests", "access_log" }
-- The limits an HTTP service hands to the host.
local HTTP_LIMITS = { "max_request_line", "max_header_size", "max_headers", "max_body", "header_timeout",
                      "body_timeout", "keepalive_timeout", "keepalive_requests" }

-- TLS services (SPEC §10) ------------------------------------------------------------

local function is_string_list(v, allowed)
  if type(v) ~= "table" then return false end
  for _, s in ipairs(v) do
    if type(s) ~= "string" or (allowed and not allowed[s]) then return false end
  end
  return true
end
local TLS_KEYS = {
  cert = { function(v) return type(v) == "string" end, "a certificate file" },
  key = { function(v) return type(v) == "string" end, "a private key file" },
  password = { function(v) return type(v) == "string" end, "a string" },
  client_ca = { function(v) return type(v) == "string" end, "a CA certificates file" },
  verify_client = { function(v) return v == "require" or v == "optional" end, "\"require\" or \"optional\"" },
  alpn = { is_string_list, "a list of protocol names" },
  protocols = { function(v) return is_string_list(v, { tlsv1_2 = true, tlsv1_3 = true }) and #v > 0 end,
                "a list of \"tlsv1_2\" and \"tlsv1_3\"" },
  ciphers = { function(v) return type(v) == "string" end, "an OpenSSL cipher list" },
  ciphersuites = { function(v) return type(v) == "string" end, "a TLS 1.3 cipher suite list" },
  handshake_timeout = { is_positive_number, "a positive number of seconds" },
  certs = { function(v)
    if type(v) ~= "table" or #v == 0 then return false end
    for _, entry in ipairs(v) do
      if type(entry) ~= "table" or type(entry.cert) ~= "string" or type(entry.key) ~= "string"
         or not is_string_list(entry.names) or #entry.names == 0
         or (entry.password ~= nil and type(entry.password) ~= "string") then
        return false
      end
    end
    return true
  end, "a list of { cert = FILE, key = FILE, names = { NAME, ... } }" },
}

local TLS_KEY_NAMES = {}
for k in pairs(TLS_KEYS) do TLS_KEY_NAMES[#TLS_KEY_NAMES + 1] = k end
table.sort(TLS_KEY_NAMES)

--- nil, or what is wrong with the keys of a server's `tls` table: the first unknown key
--- ("unknown key 'tls.kee'; did you mean 'tls.key'?") or value of a wrong type.
local function tls_problem(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  for _, k in ipairs(keys) do
    local spec = TLS_KEYS[k]
    if not spec then
      local g = type(k) == "string" and internal.closest(k, TLS_KEY_NAMES)
      return ("unknown key 'tls.%s'%s"):format(tostring(k), g and ("; did you mean 'tls.%s'?"):format(g) or "")
    end
    if not spec[1](t[k]) then return ("'tls.%s' must be %s, got %s"):format(k, spec[2], type(t[k])) end
  end
  if (not t.cert or not t.key) and not t.certs then return "'tls' needs cert and key, or certs" end
end

--- The TLS context of a server's `tls` table, or nil and what is wrong ("tls.cert: ...").
local function tls_context(t)
  local problem = tls_problem(t)
  if problem then return nil, problem end
  local cert, key, password = t.cert, t.key, t.password
  local sni
  if t.certs then
    sni = {}
    for i, entry in ipairs(t.certs) do
      sni[i] = { names = entry.names, certificate = entry.cert, key = entry.key, password = entry.password }
    end
    if not cert then cert, key, password = t.certs[1].cert, t.certs[1].key, t.certs[1].password or password end
  end
  if t.verify_client and not t.client_ca then return nil, "'tls.verify_client' needs 'tls.client_ca'" end
  local protocol = "any"
  if t.protocols and #t.protocols == 1 then protocol = t.protocols[1] end
  local verify
  if t.verify_client == "require" then verify = { "peer", "fail_if_no_peer_cert" }
  elseif t.verify_client == "optional" then verify = { "peer" } end
  local ssl = require "ssl"
  local ctx, err = ssl.newcontext({ mode = "server", certificate = cert, key = key, password = password,
                                    sni_certificates = sni,
                                    cafile = t.client_ca, verify = verify, alpn = t.alpn, protocol = protocol,
                                    ciphers = t.ciphers, ciphersuites = t.ciphersuites })
  if not ctx then return nil, "tls: " .. err end
  return ctx
end
local OPTIONS = {}
for k in pairs(KEYS) do OPTIONS[k] = k ~= "handle" and k ~= "init" end

--- The known key closest to `key`, when it is close enough to be a typo.
local function guess(key, known)
  if key == "handler" or key == "handlers" then return "handle" end
  return internal.closest(key, known)
end

--- nil, or what is wrong with the key `key` = `value` of a handler table (or of
--- gsock.server's opts when `opts`).
local function key_problem(key, value, opts)
  local spec = KEYS[key]
  if not spec or (opts and not OPTIONS[key]) then
    local g = type(key) == "string" and guess(key, TABLE_KEYS)
    return ("unknown key '%s'%s"):format(tostring(key), g and ("; did you mean '%s'?"):format(g) or "")
  end
  if not spec[1](value) then
    return ("'%s' must be %s, got %s"):format(key, spec[2], value == value and type(value) or "nan")
  end
end

--- Checks a handler table (SPEC §5): nil, or the first problem ("unknown key 'listn';
--- did you mean 'listen'?", "'backlog' must be a positive integer, got string").
local function check_handler(t)
  if not is_callable(t.handle) then
    if t.handle == nil then
      local g
      for k in pairs(t) do if type(k) == "string" and guess(k, { "handle" }) == "handle" then g = k end end
      if g then return ("unknown key '%s'; did you mean 'handle'?"):format(g) end
      return "no 'handle' function"
    end
    return key_problem("handle", t.handle)
  end
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  for _, k in ipairs(keys) do
    local problem = key_problem(k, t[k])
    -- A tls table's keys are checked here too, so that `gsockd check` and `gsockd run`
    -- name them as the handler table's; its files are read when the server starts.
    if not problem and k == "tls" then problem = tls_problem(t.tls) end
    if problem then return problem, k end
  end
end

--- Whether `handler` can see a second argument. A handler that cannot is not given the
--- peer: that saves a table and a getpeername per connection.
local function takes_peer(handler)
  if type(handler) ~= "function" then return true end
  local info = getinfo(handler, "u")
  return info.nparams >= 2 or info.isvararg
end

--- gsock.server(listen, handler [, opts]): `handler` is function(sock, peer) or a table
--- with `handle` and options; `opts` overrides the table's options.
local function server(listen, handler, opts)
  local options = {}
  if type(handler) == "table" and not is_callable(handler) then
    local problem = check_handler(handler)
    if problem then error(bad_argument(2, "server", "handler table: " .. problem), 2) end
    for k, v in pairs(handler) do options[k] = v end
    handler = handler.handle
  end
  if opts ~= nil and type(opts) ~= "table" then
    error(bad_type(3, "server", "table", opts), 2)
  end
  for k, v in pairs(opts or {}) do
    if not OPTIONS[k] then error(bad_argument(3, "server", ("unknown option '%s'"):format(tostring(k))), 2) end
    local problem = v ~= nil and key_problem(k, v, true)
    if problem then error(bad_argument(3, "server", problem), 2) end
    options[k] = v
  end
  if not is_callable(handler) then
    error(bad_argument(2, "server", "a handler function expected"), 2)
  end
  listen = listen or options.listen
  local list = type(listen) == "table" and listen or { listen }
  local addresses = {}
  for i, text in ipairs(list) do
    local a, err = parse_address(text)
    if not a then error(bad_argument(1, "server", err), 2) end
    addresses[i] = a
  end
  if #addresses == 0 then error(bad_argument(1, "server", "no address to listen on"), 2) end
  local max = options.max_connections
  if max ~= nil and (math.type(max) ~= "integer" or max < 1) then
    error(bad_argument(3, "server", "max_connections must be a positive integer"), 2)
  end
  local tls, tls_problem
  if options.tls then
    tls, tls_problem = tls_context(options.tls)
    if not tls then error(bad_argument(opts and opts.tls and 3 or 2, "server", tls_problem), 2) end
  end
  local http_limits
  if options.protocol == "http" then
    http_limits = {}
    for _, k in ipairs(HTTP_LIMITS) do http_limits[k] = options[k] end
  else
    for _, k in ipairs(HTTP_LIMITS) do
      if options[k] ~= nil then
        error(bad_argument(2, "server", ("'%s' is an HTTP limit: it needs protocol = \"http\""):format(k)), 2)
      end
    end
  end
  local self = setmetatable({
    addresses = addresses, handle = handler, http_limits = http_limits, access_log = options.access_log == true, takes_peer = takes_peer(handler), name = options.name or "server",
    max_connections = max or math.maxinteger, backlog = options.backlog or 511,
    idle_timeout = options.idle_timeout, nodelay = options.nodelay ~= false,
    reuseport = options.reuseport, listeners = {}, socket_files = {}, handlers = {}, count = 0, accepted = 0,
    tls = tls, handshake_timeout = options.tls and options.tls.handshake_timeout or 10,
    slot = gsock.event(), drained = gsock.event(), stopped = gsock.event(),
  }, Server)
  -- Linked to every connection's fiber (one function for all: no closure per connection).
  -- The handler's wrapper closes the client; a fiber killed before it started did not.
  -- The events are set only when someone may wait on them: `slot` when the count falls below
  -- max_connections (the accept loop waits only at max_connections), `drained` when the last
  -- connection closes after stop began (only stop waits on it, and only with connections
  -- open). A connection costs no event calls otherwise.
  local function closed()
    self.count = self.count - 1
    totals.connections = totals.connections - 1
    if self.count == self.max_connections - 1 then self.slot:set() end
    if self.count == 0 and self.closing then self.drained:set() end
  end
  function self.on_handler_done(done)
    local client = self.handlers[done]
    self.handlers[done] = nil
    if not client then return end   -- handed to the HTTP layer, which tells `closed`
    client:close()
    closed()
  end
  self.on_http_closed = closed
  return self
end

function Server:connections() return self.count end

--- Replaces the handler (a reload): the next request or connection gets the new one.
function Server:set_handle(handle)
  self.handle = handle
  if self.http and not self.access_log then self.http:set_handle(handle) end
end

--- The TLS context a reload would give this server (SIGHUP reloads certificates): its
--- `tls` table made into a context, or nil and what is wrong. Connections already open keep
--- the context they began with.
function Server:tls_context_for(t)
  if t == nil then return nil end
  return tls_context(t)
end

function Server:use_tls(ctx, t)
  self.tls = ctx
  self.handshake_timeout = t and t.handshake_timeout or 10
end

--- The host and port of an IPv4 peer as host.accepted_peer packs them (1 << 48 | address << 16 | port).
local function unpack_peer(packed)
  return ("%d.%d.%d.%d"):format(packed >> 40 & 255, packed >> 32 & 255, packed >> 24 & 255, packed >> 16 & 255),
         packed & 0xffff
end

local function handle_connection(self, client, a, packed)
  -- The peer's address is known before the handler runs, while the connection is surely
  -- open: a failure is logged with it. An IPv4 peer came with the accept (`packed`) and is
  -- formatted only when something reads it; another is read now. (Locals cost no memory;
  -- the table only if asked.)
  local peer_host, peer_port
  if not a.path and not packed then
    peer_host, peer_port = client:getpeername()
    peer_port = tonumber(peer_port)     -- a number: the port string is garbage at once
  end
  local peer
  if self.takes_peer then
    if packed then peer_host, peer_port, packed = unpack_peer(packed) end
    peer = a.path and { path = a.path } or { host = peer_host, port = peer_port }
  end
  if self.tls then
    -- The handshake finishes before the handler runs, bounded by handshake_timeout in all;
    -- the connection's own timeout (idle_timeout) starts after it.
    local done, err = client:_tlshandshake(self.tls, self.handshake_timeout)
    if not done then
      if packed then peer_host, peer_port = unpack_peer(packed) end
      local who = a.path and ("unix:" .. a.path) or ("%s:%s"):format(peer_host, peer_port)
      log("info", "TLS handshake failed: " .. err, { service = self.name, peer = who })
      client:close()
      return
    end
    if self.idle_timeout then client:settimeout(self.idle_timeout) end
    if self.http then
      self.handlers[gsock.current()] = nil
      if packed then peer_host, peer_port = unpack_peer(packed) end
      local info = a.path and { path = a.path } or { host = peer_host, port = peer_port }
      info.tls = client:_tlsinfo()
      self.http:adopt(client, info)
      return
    end
    if peer then peer.tls = client:_tlsinfo() end
  elseif self.idle_timeout then
    client:settimeout(self.idle_timeout)
  end
  local ok, result = xpcall(self.handle, traceback, client, peer)
  local failure = not ok and failure_of(result)
  if failure and not is_killed(failure.error) then
    if packed then peer_host, peer_port = unpack_peer(packed) end
    local who = a.path and ("unix:" .. a.path) or (peer_host and ("%s:%s"):format(peer_host, peer_port))
    totals.errors = totals.errors + 1
    host.count_handler_error(self.name)
    log("error", "handler failed: " .. failure.message,
        { service = self.name, peer = who or "unknown", traceback = failure.traceback })
  end
  client:close()
end

local function accept_loop(self, listener, a)
  local backoff, logged_at = 0, -math.huge
  while not self.closing do
    while self.count >= self.max_connections and not self.closing do
      self.slot:clear()
      self.slot:wait()
    end
    if self.closing then break end
    local client, err
    if self.http and not self.tls then
      -- The connection goes to the HTTP layer with no Lua object for its socket.
      client, err = self.http:accept(listener, self.idle_timeout, a.path)
    else
      client, err = listener:accept()
    end
    if client then
      local packed = accepted_peer()   -- its peer, from the accept (false: handle_connection reads it)
      backoff = 0
      self.count = self.count + 1
      self.accepted = self.accepted + 1
      totals.connections = totals.connections + 1
      totals.accepted = totals.accepted + 1
      if self.http and not self.tls then
        -- (the service has it; `err` is false when it closed at once, which is told now)
        if err == false then self.on_http_closed() end
      else   -- (handle_connection sets idle_timeout: for TLS, after the handshake)
        local f = gsock.spawn(handle_connection, self, client, a, packed)
        self.handlers[f] = client
        gsock._link(f, self.on_handler_done)
      end
    elseif err == "closed" or self.closing then
      break
    else
      backoff = backoff == 0 and 0.01 or math.min(backoff * 2, 1)
      if gsock.now() - logged_at >= 1 then
        logged_at = gsock.now()
        log("error", ("accept on %s failed: %s; retrying in %g s"):format(address_text(a), err, backoff),
            { service = self.name })
      end
      gsock.sleep(backoff)
    end
  end
end

--- Removes the unix socket files this server made, each only if the file at its path is
--- still that socket (another server may have replaced it since; never a user's file).
function Server:remove_socket_files()
  for path, identity in pairs(self.socket_files) do
    if type(path) == "string" then
      local kind, now = host.file_identity(path)
      if kind == "socket" and now == identity then os.remove(path) end
    end
  end
  self.socket_files = {}
end

--- Raises luaL_checkudata's error, at the method's caller, unless `self` is an object of
--- `class` (Server or UdpServer).
local function check_self(self, class, method)
  if getmetatable(self) ~= class then
    error(("bad argument #1 to '%s' (%s expected, got %s)"):format(method, class.__name, type(self)), 3)
  end
end

--- Binds every address and starts accepting; raises "ADDRESS: reason" on failure.
function Server:start()
  check_self(self, Server, "start")
  if self.started then return self end
  for i, a in ipairs(self.addresses) do
    local listener, err, identity = shared_listen_on(a, self.backlog, self.reuseport)
    if not listener then
      for _, l in ipairs(self.listeners) do l:close() end
      self:remove_socket_files()
      self.listeners = {}
      error(err, 2)
    end
    self.listeners[i] = listener
    self.socket_files[a.path or i] = identity
    -- TCP_NODELAY on the listener: Linux gives it to every connection accepted from it, which
    -- then needs no setsockopt of its own. Set either way: a listener shared by the supervisor
    -- may have been set by a configuration before this one.
    if not a.path then listener:setoption("tcp-nodelay", self.nodelay) end
    -- /metrics counts the connections a listener accepts in its service's figures.
    if not self.no_metrics then host.attach_metrics(listener, self.name, self.tls ~= nil, self.http_limits ~= nil) end
  end
  self.bound = {}
  for i, a in ipairs(self.addresses) do
    if a.path then
      self.bound[i] = "unix:" .. a.path
    else
      local ip, port = self.listeners[i]:getsockname()
      self.bound[i] = address_text({ host = ip, port = tonumber(port) })
    end
  end
  local first = self.addresses[1]
  if first.path then
    self.address = "unix:" .. first.path
  else
    local ip, port = self.listeners[1]:getsockname()
    self.host, self.port = ip, tonumber(port)
    self.address = address_text({ host = ip, port = port })
  end
  if self.http_limits and not self.http then
    local run, complete = internal.http_runner(self)
    -- With no access log to time requests, the host runs the handler itself.
    self.http = host.http_service(self.http_limits, run, self.on_http_closed, complete,
                                  not self.access_log and self.handle or nil)
  end
  self.started = true
  running[self] = true
  self.acceptors = {}
  for i, listener in ipairs(self.listeners) do
    self.acceptors[i] = gsock.spawn(accept_loop, self, listener, self.addresses[i])
  end
  resources[self] = self
  return self
end

--- Starts (if needed) and waits until the server is stopped.
function Server:serve_forever()
  check_self(self, Server, "serve_forever")
  self:start()
  self.stopped:wait()
end

--- Stops accepting at once, waits up to `timeout` seconds (default: for ever) for the
--- open connections, then kills their handlers, whose clients see the connection closed.
function Server:stop(timeout)
  check_self(self, Server, "stop")
  if self.closing then
    self.stopped:wait(timeout)
    return
  end
  self.closing = true
  for _, l in ipairs(self.listeners) do l:close() end
  self:remove_socket_files()
  self.slot:set()
  if self.acceptors and gsock.current() then gsock.joinall(self.acceptors, 1) end
  -- HTTP: idle keep-alive connections close now, the others after their response.
  if self.http then self.http:shutdown() end
  local open = self.count
  if self.count > 0 and timeout ~= 0 then self.drained:wait(timeout) end
  local killed = self.count
  if killed > 0 then
    local list = self.http and self.http:fibers() or {}
    for f in pairs(self.handlers) do list[#list + 1] = f end
    gsock.killall(list, nil, 1)
    if self.http then self.http:close_all() end
  end
  self.drain_counts = { finished = open - killed, killed = killed }
  -- serve.lua writes one line for every service of the process
  if open > 0 and not self.quiet_drain then
    log("notice", ("drained: %d connection(s) finished, %d killed"):format(open - killed, killed),
        { service = self.name })
  end
  resources[self] = nil
  running[self] = nil
  self.stopped:set()
end

Server.close = Server.stop

-- UDP servers ---------------------------------------------------------------------------

local UdpServer = {}
UdpServer.__index = UdpServer
UdpServer.__name = "gsock.udp_server"

--- gsock.udp_server(listen, fn(data, peer, server)): one fiber per datagram.
local function udp_server(listen, fn, opts)
  local a, err = parse_address(listen)
  if not a or a.path then error(bad_argument(1, "udp_server", err or "a HOST:PORT address expected"), 2) end
  if type(fn) ~= "function" then error(bad_argument(2, "udp_server", "a handler function expected"), 2) end
  return setmetatable({ addresses = { a }, fn = fn, name = (opts or {}).name or "udp", stopped = gsock.event() }, UdpServer)
end

function UdpServer:start()
  check_self(self, UdpServer, "start")
  if self.sock then return self end
  local a = self.addresses[1]
  local s = a.host:find(":", 1, true) and socket.udp6() or socket.udp4()
  s:setoption("reuseaddr", true)
  local ok, err = s:setsockname(a.host, a.port)
  if not ok then s:close() error(("%s: %s"):format(address_text(a), err), 2) end
  self.sock = s
  local ip, port = s:getsockname()
  self.host, self.port = ip, tonumber(port)
  self.address = address_text({ host = self.host, port = self.port })
  self.receiver = gsock.spawn(function()
    local backoff, logged_at = 0, -math.huge
    while not self.closing do
      local data, ip, port = s:receivefrom()
      if not data then
        -- A closed socket answers at once ("closed" when it closed under the wait, LuaSocket's
        -- "refused" after): end. Anything else is a datagram error on an open socket (an
        -- ICMP's "connection refused"): retry, backing off while it persists, as accept does.
        if ip == "closed" or self.closing or s:getfd() < 0 then break end
        backoff = backoff == 0 and 0.01 or math.min(backoff * 2, 1)
        if gsock.now() - logged_at >= 1 then
          logged_at = gsock.now()
          log("error", ("%s: receive on %s failed: %s; retrying in %g s"):format(self.name, self.address, ip, backoff),
              { service = self.name })
        end
        gsock.sleep(backoff)
      else
        backoff = 0
        gsock.spawn(function()
          local ok2, result = xpcall(self.fn, traceback, data, { host = ip, port = tonumber(port) }, self)
          local failure = not ok2 and failure_of(result)
          if failure and not is_killed(failure.error) then
            log("error", "handler failed: " .. failure.message,
                { service = self.name, peer = ("%s:%s"):format(ip, port), traceback = failure.traceback })
          end
        end)
      end
    end
  end)
  resources[self] = self
  return self
end

function UdpServer:sendto(data, ip, port) return self.sock:sendto(data, ip, port) end

function UdpServer:serve_forever()
  check_self(self, UdpServer, "serve_forever")
  self:start()
  self.stopped:wait()
end

function UdpServer:stop()
  check_self(self, UdpServer, "stop")
  self.closing = true
  if self.sock then self.sock:close() end
  if self.receiver and gsock.current() then self.receiver:join(1) end
  resources[self] = nil
  self.stopped:set()
end

UdpServer.close = UdpServer.stop

internal.provide({ server = server, udp_server = udp_server, parse_address = parse_address,
                   check_handler = check_handler })
