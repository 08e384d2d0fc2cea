-- Metrics (SPEC §9): gsock.metrics.counter/gauge/histogram for Lua code, and render(),
-- the Prometheus text exposition format (0.0.4) of the built-in figures (per service,
-- from the Swift core: Operating/Metrics.swift) followed by the user's metrics. The
-- admin listener's /metrics is render(); nothing here runs unless a metric is touched
-- or a scrape comes.
--
-- A metric's values live in nested tables keyed by label value, one level per label, so
-- that inc/set/observe with labels allocate only the first time a combination is seen.
local core, errors = ...

local error, ipairs, math, tostring, type = error, ipairs, math, tostring, type
local concat = table.concat
local format = string.format

local metrics = {}

local families = {}   -- name → family
local order = {}      -- names, in registration order

-- Names of the built-in families: a user metric may not take one.
local BUILTIN = {}
for _, n in ipairs({ "gsockd_accepted_total", "gsockd_connections", "gsockd_bytes_received_total",
                     "gsockd_bytes_sent_total", "gsockd_handler_errors_total", "gsockd_runaway_fibers_total",
                     "gsockd_fibers", "gsockd_lua_memory_bytes", "gsockd_worker_restarts_total",
                     "gsockd_loop_lag_seconds", "gsockd_http_requests_total",
                     "gsockd_http_request_duration_seconds", "gsockd_tls_handshakes_total" }) do
  BUILTIN[n] = true
end

-- Text --------------------------------------------------------------------------------

local function number_text(v)
  if v == math.huge then return "+Inf" end
  if v == -math.huge then return "-Inf" end
  if v ~= v then return "NaN" end
  if math.type(v) == "integer" then return format("%d", v) end
  if v == math.floor(v) and v > -1e15 and v < 1e15 then return format("%d", math.tointeger(v)) end
  local short = format("%.15g", v)
  if tonumber(short) == v then return short end
  return format("%.17g", v)
end

local function label_value_text(v)
  return (v:gsub('[\\\n"]', { ["\\"] = "\\\\", ["\n"] = "\\n", ['"'] = '\\"' }))
end

local function help_text(h)
  return (h:gsub("[\\\n]", { ["\\"] = "\\\\", ["\n"] = "\\n" }))
end

--- `{a="x",b="y"}` for names and values (and an extra pair, for `le`), or "".
local function labels_text(names, values, extra_name, extra_value)
  local parts = {}
  for i, n in ipairs(names) do parts[i] = format('%s="%s"', n, label_value_text(values[i])) end
  if extra_name then parts[#parts + 1] = format('%s="%s"', extra_name, extra_value) end
  if #parts == 0 then return "" end
  return "{" .. concat(parts, ",") .. "}"
end

local function header(out, name, kind, help)
  out[#out + 1] = format("# HELP %s %s\n# TYPE %s %s\n", name, help_text(help), name, kind)
end

local function sample(out, name, names, values, value, extra_name, extra_value)
  out[#out + 1] = format("%s%s %s\n", name, labels_text(names, values, extra_name, extra_value), number_text(value))
end

--- A histogram's lines: `counts` cumulative per bound, then +Inf, sum and count.
local function histogram_samples(out, name, names, values, bounds, counts, sum, count)
  for i, b in ipairs(bounds) do sample(out, name .. "_bucket", names, values, counts[i], "le", number_text(b)) end
  sample(out, name .. "_bucket", names, values, count, "le", "+Inf")
  sample(out, name .. "_sum", names, values, sum)
  sample(out, name .. "_count", names, values, count)
end

-- User metrics ------------------------------------------------------------------------

local function is_name(s) return type(s) == "string" and s:find("^[%a_:][%w_:]*$") ~= nil end
local function is_label(s) return type(s) == "string" and s:find("^[%a_][%w_]*$") ~= nil and s:sub(1, 2) ~= "__" end

local Family = {}
Family.__index = Family

--- The series of `labels` (a list of values), made on first use; raises naming the metric
--- when the values are not as many as its labels or not strings or numbers.
local function series(self, labels, level)
  local names = self.labels
  local n = #names
  if n == 0 then
    if labels ~= nil and (type(labels) ~= "table" or #labels > 0) then
      error(format("metric '%s' has no labels, got label values", self.name), level)
    end
    return self.root
  end
  if type(labels) ~= "table" then
    error(format("metric '%s' needs %d label value(s) (%s), got %s", self.name, n, concat(names, ", "),
                 labels == nil and "none" or type(labels)), level)
  end
  if #labels ~= n then
    error(format("metric '%s' needs %d label value(s) (%s), got %d", self.name, n, concat(names, ", "), #labels), level)
  end
  local node = self.root
  for i = 1, n do
    local v = labels[i]
    local tv = type(v)
    if tv == "number" then
      v = tostring(math.tointeger(v) or v)
    elseif tv ~= "string" then
      error(format("metric '%s': label '%s' must be a string or a number, got %s", self.name, names[i], tv), level)
    end
    local child = node[v]
    if not child then
      child = {}
      node[v] = child
    end
    node = child
  end
  local s = node[true]
  if not s then
    local values = {}
    for i = 1, n do
      local v = labels[i]
      values[i] = type(v) == "number" and tostring(math.tointeger(v) or v) or v
    end
    s = { values = values, value = 0 }
    if self.bounds then
      s.counts = {}
      for i = 1, #self.bounds do s.counts[i] = 0 end
      s.sum, s.count = 0, 0
    end
    node[true] = s
    self.list[#self.list + 1] = s
  end
  return s
end

local function number_arg(self, v, what, level)
  if type(v) ~= "number" then
    error(format("metric '%s': %s must be a number, got %s", self.name, what, type(v)), level)
  end
  return v
end

local Counter = setmetatable({}, { __index = Family })
Counter.__index = Counter
--- counter:inc([n [, label values]]): adds n (default 1, never negative).
function Counter:inc(n, labels)
  if n == nil then n = 1 else number_arg(self, n, "the increment", 3) end
  if n < 0 then error(format("metric '%s': a counter cannot go down (inc(%s))", self.name, number_text(n)), 2) end
  local s = series(self, labels, 3)
  s.value = s.value + n
end

local Gauge = setmetatable({}, { __index = Family })
Gauge.__index = Gauge
function Gauge:set(v, labels)
  number_arg(self, v, "the value", 3)
  series(self, labels, 3).value = v
end
function Gauge:inc(n, labels)
  if n == nil then n = 1 else number_arg(self, n, "the increment", 3) end
  local s = series(self, labels, 3)
  s.value = s.value + n
end
function Gauge:dec(n, labels)
  if n == nil then n = 1 else number_arg(self, n, "the decrement", 3) end
  local s = series(self, labels, 3)
  s.value = s.value - n
end

local Histogram = setmetatable({}, { __index = Family })
Histogram.__index = Histogram
function Histogram:observe(v, labels)
  number_arg(self, v, "the observed value", 3)
  local s = series(self, labels, 3)
  s.sum, s.count = s.sum + v, s.count + 1
  local bounds, counts = self.bounds, s.counts
  for i = 1, #bounds do
    if v <= bounds[i] then
      counts[i] = counts[i] + 1
      return
    end
  end
end

local CLASSES = { counter = Counter, gauge = Gauge, histogram = Histogram }

local function same_list(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do if a[i] ~= b[i] then return false end end
  return true
end

local function register(kind, fname, name, help, labels, bounds)
  if not is_name(name) then
    error(errors.bad_argument(1, fname, format("a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*) expected, got %s",
                                               type(name) == "string" and "'" .. name .. "'" or type(name))), 3)
  end
  if BUILTIN[name] then error(format("metric '%s' is one of gsockd's built-in metrics", name), 3) end
  if type(help) ~= "string" then error(errors.bad_type(2, fname, "string (the help text)", help), 3) end
  if labels ~= nil and type(labels) ~= "table" then
    error(format("metric '%s': labels must be a list of names, got %s", name, type(labels)), 3)
  end
  local names = {}
  for i, l in ipairs(labels or {}) do
    if not is_label(l) or (kind == "histogram" and l == "le") then
      error(format("metric '%s': bad label name %s", name, type(l) == "string" and "'" .. l .. "'" or type(l)), 3)
    end
    names[i] = l
  end
  local old = families[name]
  if old then
    if old.kind ~= kind then
      error(format("metric '%s' is already registered as a %s", name, old.kind), 3)
    end
    if not same_list(old.labels, names) then
      error(format("metric '%s' is already registered with labels (%s), not (%s)", name, concat(old.labels, ", "),
                   concat(names, ", ")), 3)
    end
    if bounds and not same_list(old.bounds, bounds) then
      error(format("metric '%s' is already registered with other buckets", name), 3)
    end
    return old   -- a handler file loaded again (SIGHUP) gets the metric it made
  end
  local f = setmetatable({ kind = kind, name = name, help = help, labels = names, bounds = bounds, root = {},
                           list = {} }, CLASSES[kind])
  if #names == 0 then
    f.root = { values = {}, value = 0 }
    if bounds then
      f.root.counts = {}
      for i = 1, #bounds do f.root.counts[i] = 0 end
      f.root.sum, f.root.count = 0, 0
    end
    f.list[1] = f.root
  end
  families[name] = f
  order[#order + 1] = name
  return f
end

--- gsock.metrics.counter(name, help [, labels])
function metrics.counter(name, help, labels) return register("counter", "counter", name, help, labels) end

--- gsock.metrics.gauge(name, help [, labels])
function metrics.gauge(name, help, labels) return register("gauge", "gauge", name, help, labels) end

--- gsock.metrics.histogram(name, help, buckets [, labels]): buckets, the upper bounds, ascending.
function metrics.histogram(name, help, buckets, labels)
  if type(buckets) ~= "table" or #buckets == 0 then
    error(errors.bad_type(3, "histogram", "a non-empty list of bucket bounds", buckets), 2)
  end
  local bounds = {}
  for i, b in ipairs(buckets) do
    if type(b) ~= "number" or b ~= b or (i > 1 and b <= bounds[i - 1]) then
      error(format("metric '%s': buckets must be numbers in increasing order", tostring(name)), 2)
    end
    bounds[i] = b
  end
  if bounds[#bounds] == math.huge then bounds[#bounds] = nil end
  return register("histogram", "histogram", name, help, labels, bounds)
end

local function render_family(out, f)
  header(out, f.name, f.kind, f.help)
  local list = f.list
  if f.kind == "histogram" then
    for _, s in ipairs(list) do
      local cumulative, counts = {}, 0
      for i = 1, #f.bounds do
        counts = counts + s.counts[i]
        cumulative[i] = counts
      end
      histogram_samples(out, f.name, f.labels, s.values, f.bounds, cumulative, s.sum, s.count)
    end
  else
    for _, s in ipairs(list) do sample(out, f.name, f.labels, s.values, s.value) end
  end
end

-- Built-in figures ----------------------------------------------------------------------

local SERVICE = { "service" }

local function service_family(out, services, name, kind, help, field)
  header(out, name, kind, help)
  for _, s in ipairs(services) do sample(out, name, SERVICE, { s.name }, s[field]) end
end

--- The built-in families' text, from the core's figures. `extra` adds process-group
--- figures (worker restarts, from a supervisor).
local function render_builtin(out, figures, extra)
  local services = figures.services
  service_family(out, services, "gsockd_accepted_total", "counter", "Connections accepted.", "accepted")
  service_family(out, services, "gsockd_connections", "gauge", "Connections open.", "connections")
  service_family(out, services, "gsockd_bytes_received_total", "counter", "Bytes received on connections.", "bytes_in")
  service_family(out, services, "gsockd_bytes_sent_total", "counter", "Bytes sent on connections.", "bytes_out")
  service_family(out, services, "gsockd_handler_errors_total", "counter", "Handler calls that raised an error.",
                 "errors")
  header(out, "gsockd_runaway_fibers_total", "counter", "Fibers that ran past max_run_time without yielding.")
  sample(out, "gsockd_runaway_fibers_total", {}, {}, figures.runaways)
  header(out, "gsockd_fibers", "gauge", "Live fibers.")
  sample(out, "gsockd_fibers", {}, {}, figures.fibers)
  header(out, "gsockd_lua_memory_bytes", "gauge", "Bytes held by the Lua state.")
  sample(out, "gsockd_lua_memory_bytes", {}, {}, figures.memory)
  header(out, "gsockd_worker_restarts_total", "counter", "Worker processes restarted by the supervisor.")
  sample(out, "gsockd_worker_restarts_total", {}, {}, (extra and extra.worker_restarts) or 0)
  local lag = figures.loop_lag
  if lag then
    header(out, "gsockd_loop_lag_seconds", "histogram", "How late the event loop ran a timer due every 0.5 s.")
    histogram_samples(out, "gsockd_loop_lag_seconds", {}, {}, lag.bounds, lag.counts, lag.sum, lag.count)
  end
  local http, tls = {}, {}
  for _, s in ipairs(services) do
    if s.http then http[#http + 1] = s end
    if s.tls then tls[#tls + 1] = s end
  end
  if #http > 0 then
    header(out, "gsockd_http_requests_total", "counter", "HTTP responses by method and status.")
    local names = { "service", "method", "status" }
    for _, s in ipairs(http) do
      for _, r in ipairs(s.http) do sample(out, "gsockd_http_requests_total", names, { s.name, r.method, tostring(r.status) }, r.count) end
    end
    header(out, "gsockd_http_request_duration_seconds", "histogram", "HTTP request durations, head to response.")
    for _, s in ipairs(http) do
      local d = s.duration
      histogram_samples(out, "gsockd_http_request_duration_seconds", SERVICE, { s.name }, d.bounds, d.counts, d.sum,
                        d.count)
    end
  end
  if #tls > 0 then
    header(out, "gsockd_tls_handshakes_total", "counter", "TLS handshakes by result.")
    local names = { "service", "result" }
    for _, s in ipairs(tls) do
      sample(out, "gsockd_tls_handshakes_total", names, { s.name, "ok" }, s.tls.ok)
      sample(out, "gsockd_tls_handshakes_total", names, { s.name, "failed" }, s.tls.failed)
    end
  end
end

--- The whole exposition: built-in families, then the user's.
--- A sample value as the exposition format writes it (the supervisor's merge uses it too).
metrics._number_text = number_text

function metrics.render(extra)
  local out = {}
  render_builtin(out, core.metrics_figures(), extra)
  for _, name in ipairs(order) do render_family(out, families[name]) end
  return concat(out)
end

return metrics
