-- Workers (SPEC §6): `workers = N` processes share one socket per listener; they
-- are children of the gsockd process; a worker that dies is restarted, and the others
-- keep serving meanwhile.
local gsock = require "gsock"
local socket = require "socket"
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/serve/"
local proc = dofile(here .. "support/proc.lua")

after_each(proc.cleanup)

-- Answers each connection with the pid of the process that served it. "block" and
-- "stall" first block the whole process (os.execute), for 0.6 s and for 4 s.
local PID_HANDLER = [[
local function mypid()
  local f = assert(io.open("/proc/self/stat", "r"))
  local s = f:read("a")
  f:close()
  return s:match("^(%d+)")
end
return function(sock)
  local line = sock:receive("*l")
  if line == "block" then os.execute("sleep 0.6") end
  if line == "stall" then
    io.stderr:write("STALLED " .. mypid() .. "\n")
    io.stderr:flush()
    os.execute("sleep 4")
  end
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

--- Waits up to `limit` seconds for the processes `pids` to end; returns those still running.
local function still_running(pids, limit)
  local deadline = proc.now() + limit
  local alive
  repeat
    alive = {}
    for _, k in ipairs(pids) do if proc.running(k) then alive[#alive + 1] = k end end
    if #alive > 0 then gsock.sleep(0.05) end
  until #alive == 0 or proc.now() > deadline
  return alive
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
    local alive = still_running(kids, 2)
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

-- One socket per listener, shared by every worker (SPEC §6: bind once, share). A worker
-- blocked in a handler (os.execute: the whole process waits) leaves the next connection
-- to another worker; with a socket per worker (SO_REUSEPORT) it would wait in the
-- blocked worker's own queue and die with it.

--- Starts PID_HANDLER on `listen` with `gsockd run --workers 2`; waits until both serve.
local function start_blocking(listen, extra)
  local dir = proc.tmpdir()
  local handler = proc.write(dir, "handler.lua", PID_HANDLER)
  local argv = { "run", handler, "--listen", listen, "--workers", "2", "--shutdown-timeout", "2" }
  for _, a in ipairs(extra or {}) do argv[#argv + 1] = a end
  local p = proc.start(argv, { cwd = dir })
  local address = p:listening()[1].address
  p:wait_stderr("all 2 workers serve", 5)   -- (not asserted: the same tests show builds without the line failing)
  return p, address, dir
end

--- Two requests that block their worker, the second made while the first blocks: they
--- are answered by two different workers. Returns the two pids.
local function both_workers_answer(p, address)
  local replies = {}
  local first = proc.spawn(function() replies[1] = { proc.request(address, "block", 3) } end)
  gsock.sleep(0.25)
  replies[2] = { proc.request(address, "block", 3) }
  gsock.joinall({ first }, 4)
  for i = 1, 2 do
    assert.is_not_nil(tonumber(replies[i][1]), ("request %d: %s\n%s"):format(i, tostring(replies[i][2]), p:describe()))
  end
  assert.are_not.equal(replies[1][1], replies[2][1], "one worker answered both: the other did not accept\n" .. p:describe())
  return tonumber(replies[1][1]), tonumber(replies[2][1])
end

describe("workers share one socket per listener", function()
  it("a unix: listener with two workers: both accept on it (it failed with 'address already in use')", function()
    local dir = proc.tmpdir()
    local path = proc.unix_path(dir, "w")
    local p, address = start_blocking("unix:" .. path)
    assert.equals("unix:" .. path, address)
    both_workers_answer(p, address)
    p:signal("TERM")
    assert.equals(0, p:wait_exit(5), p:describe())
    assert.is_nil(io.open(path, "r"), "the socket file outlived gsockd")
  end)

  it("a unix: listener in a config with workers = 2 (the README's sample shape)", function()
    local dir = proc.tmpdir()
    local path = proc.unix_path(dir, "c")
    proc.write(dir, "handler.lua", PID_HANDLER)
    local config = proc.write(dir, "gsockd.toml", ([[
workers = 2
shutdown_timeout = 2
[services.echo]
listen = "unix:%s"
handler = "handler.lua"
]]):format(path))
    local p = proc.start({ "serve", config }, { cwd = dir })
    p:listening()
    p:wait_stderr("all 2 workers serve", 5)
    both_workers_answer(p, "unix:" .. path)
  end)

  it("port 0 with two workers: one port, both workers accept on it", function()
    local p, address = start_blocking("127.0.0.1:0")
    assert.is_not_nil(address:match(":(%d+)$"))
    assert.are_not.equal("0", address:match(":(%d+)$"))
    both_workers_answer(p, address)
  end)

  it("IPv6 with two workers", function()
    local probe = socket.tcp6()
    local v6 = probe:bind("::1", 0)
    probe:close()
    if not v6 then pending("no IPv6 loopback here") return end
    local p, address = start_blocking("[::1]:" .. proc.free_port())
    both_workers_answer(p, address)
  end)

  it("kill -9 of a stalled worker loses none of the connections that were waiting: another worker took them",
     function()
    local p, address = start_blocking("127.0.0.1:" .. proc.free_port())
    local stall = proc.spawn(function() return proc.request(address, "stall", 6) end)
    local at = p:wait_stderr("STALLED (%d+)", 3)
    assert.is_not_nil(at, p:describe())
    local stalled = math.tointeger(tonumber(p:stderr():match("STALLED (%d+)")))
    local results, clients = {}, {}
    for i = 1, 12 do
      clients[i] = proc.spawn(function() results[i] = { proc.request(address, "pid", 3) } end)
    end
    gsock.sleep(0.5)
    os.execute("kill -9 " .. stalled)
    gsock.joinall(clients, 5)
    gsock.joinall({ stall }, 5)
    local failed = {}
    for i = 1, 12 do
      local r = results[i] or {}
      if not tonumber(r[1]) then failed[#failed + 1] = ("%d: %s"):format(i, tostring(r[2])) end
      if tonumber(r[1]) == stalled then failed[#failed + 1] = i .. ": answered by the stalled worker" end
    end
    assert.equals(0, #failed, table.concat(failed, "; ") .. "\n" .. p:describe())
    assert.is_not_nil(p:wait_stderr("worker %d %(pid " .. stalled .. "%) was killed by signal 9; restarting it", 3),
      p:describe())
    assert.is_true(p:alive(), p:describe())
  end)

  it("SIGKILL of the supervisor: the workers stop too instead of serving orphaned", function()
    local p, address = start_blocking("127.0.0.1:" .. proc.free_port())
    local kids = wait_children(p, 2)
    assert.is_not_nil(tonumber(proc.request(address, "pid")))
    os.execute("kill -9 " .. p.pid)
    local alive = still_running(kids, 5)
    assert.equals(0, #alive, "workers outlived their killed supervisor: " .. table.concat(alive, " "))
    assert.is_nil(proc.request(address, "pid", 1), "the port is still served")
  end)

  it("a worker whose restart fails (a broken handler left by a failed reload) is retried; the other serves", function()
    local dir = proc.tmpdir()
    local handler = proc.write(dir, "handler.lua", PID_HANDLER)
    local config = proc.write(dir, "gsockd.toml", ([[
workers = 2
shutdown_timeout = 2
[services.pids]
listen = "127.0.0.1:%d"
handler = "handler.lua"
]]):format(proc.free_port()))
    local p = proc.start({ "serve", config }, { cwd = dir })
    local address = p:listening()[1].address
    p:wait_stderr("all 2 workers serve", 5)
    proc.write(dir, "handler.lua", "return function(sock) sock:send('x')\n")   -- does not compile
    p:signal("HUP")
    assert.is_not_nil(p:wait_stderr("reload failed", 3), p:describe())
    local kids = wait_children(p, 2)
    os.execute("kill -9 " .. kids[1])
    assert.is_not_nil(p:wait_stderr("exited with status 2; restarting it in", 4), p:describe())
    for i = 1, 10 do
      assert.is_not_nil(tonumber(proc.request(address, "pid", 2)), "request " .. i .. "\n" .. p:describe())
    end
    assert.is_true(p:alive(), "one failed restart stopped every worker\n" .. p:describe())
    proc.write(dir, "handler.lua", PID_HANDLER)
    local from = #p:stderr()
    assert.is_not_nil(p:wait_stderr("worker %d started", 8, from), p:describe())
    wait_children(p, 2, 8)
    p:signal("TERM")
    assert.equals(0, p:wait_exit(5), p:describe())
  end)
end)
