-- Workers (SPEC §6): `workers = N` processes share the listeners (SO_REUSEPORT); they
-- are children of the gsockd process; a worker that dies is restarted, and the others
-- keep serving meanwhile.
local gsock = require "gsock"
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/serve/"
local proc = dofile(here .. "support/proc.lua")

after_each(proc.cleanup)

-- Answers each connection with the pid of the process that served it.
local PID_HANDLER = [[
local function mypid()
  local f = assert(io.open("/proc/self/stat", "r"))
  local s = f:read("a")
  f:close()
  return s:match("^(%d+)")
end
return function(sock)
  local line = sock:receive("*l")
  if line then sock:send(mypid() .. "\n") end
end
]]

local function set_of(list)
  local s = {}
  for _, v in ipairs(list) do s[v] = true end
  return s
end

local function count(set)
  local n = 0
  for _ in pairs(set) do n = n + 1 end
  return n
end

--- Waits until the process has `n` running children; returns them.
local function wait_children(p, n, limit)
  local deadline = proc.now() + (limit or 3)
  local kids
  repeat
    kids = {}
    for _, c in ipairs(p:children()) do
      if proc.running(c) then kids[#kids + 1] = c end
    end
    if #kids == n then return kids end
    gsock.sleep(0.05)
  until proc.now() > deadline
  error(("expected %d worker processes (children of %d), found %d: %s\n%s"):format(
    n, p.pid, #kids, table.concat(kids, " "), p:describe()), 2)
end

--- Makes requests from a few fibers until `want` distinct pids answered (or `limit`
--- requests); returns the set of pids seen (as numbers).
local function pids_seen(address, want, limit)
  local seen, done, made = {}, false, 0
  local fibers = {}
  for i = 1, 4 do
    fibers[i] = proc.spawn(function()
      while not done and made < limit do
        made = made + 1
        local reply = proc.request(address, "pid", 2)
        if reply and tonumber(reply) then
          seen[math.tointeger(tonumber(reply))] = true
          if count(seen) >= want then done = true end
        end
      end
    end)
  end
  gsock.joinall(fibers, 8)
  done = true
  return seen
end

-- Workers bind their own sockets with SO_REUSEPORT, so port 0 (a port per worker) is
-- refused with workers > 1: these tests use a port that was free a moment ago.
local function config_with_workers(n, extra, source)
  local dir = proc.tmpdir()
  local handler = proc.write(dir, "handler.lua", source or PID_HANDLER)
  local config = proc.write(dir, "gsockd.toml", ([[
workers = %d
shutdown_timeout = 3
%s
[services.pids]
listen = "127.0.0.1:%d"
handler = "handler.lua"
]]):format(n, extra or "", proc.free_port()))
  return dir, config, handler
end

--- Starts PID_HANDLER with two workers: `gsockd serve` (workers = 2 in the config) or
--- `gsockd run --workers 2`; returns the process and its address.
local function start_two_workers(mode, source)
  if mode == "serve" then
    local dir, config, handler = config_with_workers(2, nil, source)
    local p = proc.start({ "serve", config }, { cwd = dir })
    return p, p:listening()[1].address, handler
  end
  local dir = proc.tmpdir()
  local handler = proc.write(dir, "handler.lua", source or PID_HANDLER)
  local p = proc.start({ "run", handler, "--listen", "127.0.0.1:" .. proc.free_port(), "--workers", "2",
                         "--shutdown-timeout", "3" }, { cwd = dir })
  return p, p:listening()[1].address, handler
end

for _, mode in ipairs({ "serve", "run" }) do
describe("workers (" .. mode .. ")", function()
  it("two workers are two processes, children of gsockd, both serving", function()
    local p, address = start_two_workers(mode)
    local kids = wait_children(p, 2)
    local seen = pids_seen(address, 2, 400)
    local kidset = set_of(kids)
    assert.equals(2, count(seen), "only these pids answered: " .. table.concat((function()
      local t = {} for k in pairs(seen) do t[#t + 1] = tostring(k) end return t end)(), " "))
    for pid in pairs(seen) do
      assert.is_true(kidset[pid] ~= nil, ("pid %d answered but is not a child of gsockd %d (children: %s)"):format(
        pid, p.pid, table.concat(kids, " ")))
    end
  end)

  it("kill -9 of one worker: it is restarted and requests made after its death all succeed", function()
    local p, address = start_two_workers(mode)
    local kids = wait_children(p, 2)
    local victim, survivor = kids[1], kids[2]
    local stop = false
    local results = {}          -- { started = t, ok = bool, err = string }
    local clients = {}
    local FIBERS = 6
    for i = 1, FIBERS do
      clients[i] = proc.spawn(function()
        while not stop do
          local started = proc.now()
          local reply, err = proc.request(address, "pid", 3)
          results[#results + 1] = { started = started, ok = reply ~= nil and tonumber(reply) ~= nil,
                                    err = tostring(err), reply = reply }
          gsock.sleep(0.005)
        end
      end)
    end
    gsock.sleep(0.5)
    local t_kill = proc.now()
    os.execute("kill -9 " .. victim)
    -- wait until the victim is really gone (dead or a zombie: its sockets are closed)
    local deadline = t_kill + 2
    while proc.running(victim) and proc.now() < deadline do gsock.sleep(0.005) end
    assert.is_false(proc.running(victim), "the killed worker is still running")
    local t_dead = proc.now()
    -- a new worker appears
    local newpid
    deadline = proc.now() + 3
    while not newpid and proc.now() < deadline do
      for _, c in ipairs(p:children()) do
        if c ~= victim and c ~= survivor and proc.running(c) then newpid = c end
      end
      if not newpid then gsock.sleep(0.05) end
    end
    gsock.sleep(0.8)
    stop = true
    gsock.joinall(clients, 5)
    local before, after, failed_after, failed_before = 0, 0, {}, 0
    for _, r in ipairs(results) do
      if r.started >= t_dead then
        after = after + 1
        if not r.ok then failed_after[#failed_after + 1] = r.err end
      else
        before = before + 1
        if not r.ok then failed_before = failed_before + 1 end
      end
    end
    local summary = ("%d requests before the death, %d failed; %d after, %d failed (%s)"):format(
      before, failed_before, after, #failed_after, table.concat(failed_after, "; "):sub(1, 300))
    assert.is_not_nil(newpid, "no new worker was started after kill -9 " .. victim .. "\n" .. summary
      .. "\n" .. p:describe())
    assert.is_true(p:alive(), "gsockd itself died\n" .. p:describe())
    assert.equals(0, #failed_after, summary)
    assert.is_true(failed_before <= FIBERS, "more requests failed than were in flight on the killed worker: " .. summary)
    assert.is_true(after >= 50, "too few requests after the kill to mean anything: " .. summary)
    -- the new worker serves too
    local seen = {}
    deadline = proc.now() + 2
    while not seen[newpid] and proc.now() < deadline do
      local reply = proc.request(address, "pid", 2)
      if reply and tonumber(reply) then seen[math.tointeger(tonumber(reply))] = true end
    end
    assert.is_true(seen[newpid] ~= nil, "the restarted worker " .. newpid .. " never answered")
    assert.is_nil(seen[victim])
  end)

  it("SIGTERM stops gsockd and all its workers, exit 0", function()
    local p, address = start_two_workers(mode)
    local kids = wait_children(p, 2)
    assert.is_not_nil(proc.request(address, "pid"))
    p:signal("TERM")
    assert.equals(0, p:wait_exit(5), p:describe())
    local deadline = proc.now() + 2
    local alive
    repeat
      alive = {}
      for _, k in ipairs(kids) do if proc.running(k) then alive[#alive + 1] = k end end
      if #alive > 0 then gsock.sleep(0.05) end
    until #alive == 0 or proc.now() > deadline
    assert.equals(0, #alive, "workers outlived gsockd: " .. table.concat(alive, " "))
  end)


  it("SIGHUP: afterwards every worker serves the new code", function()
    local function v(tag)
      return ([[return function(sock) if sock:receive("*l") then sock:send(%q .. "\n") end end]]):format(tag)
    end
    local p, address, handler = start_two_workers(mode, v("v1"))
    wait_children(p, 2)
    assert.equals("v1", proc.request(address, "x"))
    local f = assert(io.open(handler .. ".new", "w"))
    f:write(v("v2"))
    f:close()
    assert(os.rename(handler .. ".new", handler))
    p:signal("HUP")
    assert.equals("v2", proc.request_until(address, "x", "v2", 4), p:describe())
    gsock.sleep(1)
    local replies = {}
    for i = 1, 30 do replies[i] = tostring(proc.request(address, "x", 2)) end
    for i = 1, 30 do
      assert.equals("v2", replies[i], "request " .. i .. " after the reload: " .. table.concat(replies, " "))
    end
  end)
end)
end
