-- The admin listener of a group of workers (SPEC §9), run by the supervisor in a Lua
-- runtime of its own: the supervisor outlives its workers, so a scrape never depends on
-- which worker answers. Each request asks every serving worker over its admin channel
-- (Serving/AdminChannel.swift) and waits at most `ask_timeout` for the answers; a worker
-- that does not answer in time is left out (and makes /healthz fail). /metrics sums the
-- workers' series (counters, gauges and histogram buckets all add up) and adds the
-- supervisor's own figures: gsockd_worker_restarts_total and gsockd_workers.
local gsock = require "gsock"
local sup = require "gsockd.supervisor"
local channel = require "gsockd.channel"

local concat, format = table.concat, string.format
local address, ask_timeout, max_run_time = sup.settings()

local next_id = 0
local asking = gsock.lock()

--- Sends `what` to every serving worker; returns their answers ({ index =, text = },
--- in worker order) and how many workers were asked.
local function ask(what)
  asking:acquire()
  local _ <close> = asking
  next_id = next_id + 1
  local id = tostring(next_id)
  local workers = sup.workers()
  local answers, fibers = {}, {}
  local deadline = gsock.now() + ask_timeout
  for _, w in ipairs(workers) do
    if channel.message_send(w.fd, id .. " " .. what) then
      fibers[#fibers + 1] = gsock.spawn(function()
        local parts = {}
        while true do
          local left = deadline - gsock.now()
          if left <= 0 or not pcall(gsock.wait_read, w.fd, left) then return end
          while true do
            local m = channel.message_receive(w.fd)
            if not m then
              if m == nil then return end
              break
            end
            local mid, flag, data = m:match("^(%d+)([+.])(.*)$")
            if mid == id then   -- older answers (of a worker that was late) are dropped
              parts[#parts + 1] = data
              if flag == "." then
                answers[#answers + 1] = { index = w.index, text = concat(parts) }
                return
              end
            end
          end
        end
      end)
    end
  end
  gsock.joinall(fibers)
  table.sort(answers, function(a, b) return a.index < b.index end)
  return answers, #workers
end

local number_text = gsock.metrics._number_text

--- The workers' expositions summed series by series, in the order first seen.
local function merge(texts, extra)
  local families, order = {}, {}
  for _, text in ipairs(texts) do
    local family
    for line in text:gmatch("[^\n]+") do
      local kind, name, rest = line:match("^# (%u+) (%S+) ?(.*)$")
      if kind then
        family = families[name]
        if not family then
          family = { name = name, values = {}, keys = {} }
          families[name] = family
          order[#order + 1] = name
        end
        if kind == "HELP" then family.help = family.help or rest end
        if kind == "TYPE" then family.type = family.type or rest end
      elseif family then
        local key, value = line:match("^(.-) (%S+)$")
        local v = tonumber(value)
        if key and v then
          if not family.values[key] then family.keys[#family.keys + 1] = key end
          family.values[key] = (family.values[key] or 0) + v
        end
      end
    end
  end
  for name, value in pairs(extra) do
    local family = families[name]
    if family then family.values[name] = value end
  end
  local out = {}
  for _, name in ipairs(order) do
    local f = families[name]
    if f.help then out[#out + 1] = format("# HELP %s %s\n", name, f.help) end
    if f.type then out[#out + 1] = format("# TYPE %s %s\n", name, f.type) end
    for _, key in ipairs(f.keys) do out[#out + 1] = format("%s %s\n", key, number_text(f.values[key])) end
  end
  return concat(out)
end

local text = { ["Content-Type"] = "text/plain; charset=utf-8" }

local routes = {
  ["/metrics"] = function()
    local answers = ask("metrics")
    local texts = {}
    for i, a in ipairs(answers) do texts[i] = a.text end
    local body = merge(texts, { gsockd_worker_restarts_total = sup.restarts() })
    body = body .. "# HELP gsockd_workers Workers of the group, by whether they answered this scrape.\n"
      .. "# TYPE gsockd_workers gauge\n"
      .. format('gsockd_workers{state="answered"} %d\ngsockd_workers{state="missing"} %d\n', #answers,
                sup.count() - #answers)
    return 200, body, { ["Content-Type"] = "text/plain; version=0.0.4; charset=utf-8" }
  end,
  ["/healthz"] = function()
    local answers, asked = ask("health")
    local bad = {}
    for _, a in ipairs(answers) do
      if a.text ~= "ok" then bad[#bad + 1] = format("worker %d: %s", a.index, a.text) end
    end
    if #answers < asked then bad[#bad + 1] = format("%d worker(s) did not answer", asked - #answers) end
    if #bad > 0 then
      return 503, format("unhealthy: %s (max_run_time %g s)\n", concat(bad, "; "), max_run_time), text
    end
    return 200, "ok\n", text
  end,
  ["/readyz"] = function()
    local state = sup.state()
    if state ~= "serving" then return 503, "not ready: " .. state .. "\n", text end
    local answers, asked = ask("ready")
    for _, a in ipairs(answers) do
      if a.text ~= "ready" then return 503, format("worker %d: %s\n", a.index, a.text), text end
    end
    if asked == 0 or #answers < asked then return 503, "not ready: a worker did not answer\n", text end
    return 200, "ready\n", text
  end,
  ["/debug/fibers"] = function(req)
    local json = (req:args()).format == "json"
    local answers = ask(json and "dumpjson" or "dump")
    local parts = {}
    for i, a in ipairs(answers) do
      parts[i] = json and format('{"worker":%d,"dump":%s}', a.index, (a.text:gsub("\n$", "")))
        or format("worker %d:\n%s", a.index, a.text)
    end
    if json then return 200, '{"workers":[' .. concat(parts, ",") .. "]}\n", { ["Content-Type"] = "application/json" } end
    return 200, concat(parts), text
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
local ok, err = pcall(server.start, server)
if not ok then
  sup.failed("admin: " .. tostring(err))
  return
end
io.stdout:write(("admin listening on %s\n"):format(server.address))
io.stdout:flush()
sup.started(server.address)
