-- systemd's notifications (SPEC §9): with NOTIFY_SOCKET set, gsockd sends READY=1 once
-- it serves, RELOADING=1 then READY=1 around SIGHUP, STOPPING=1 when it drains, STATUS=
-- lines, and WATCHDOG=1 from the loop when WATCHDOG_USEC is set. The test owns the
-- unix datagram socket systemd would have.
local gsock = require "gsock"
local unix = require "socket.unix"
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/serve/"
local proc = dofile(here .. "support/proc.lua")

after_each(proc.cleanup)

--- A bound datagram socket standing in for systemd's; returns it and its path.
local function notify_socket()
  local dir = proc.tmpdir()
  local path = proc.unix_path(dir, "notify")
  local s = proc.track(assert(unix.dgram()))
  assert(s:bind(path))
  return s, path
end

--- Receives datagrams until one contains `want` (plain) or `limit` seconds pass; returns
--- every datagram seen, and whether `want` was.
local function until_message(s, want, limit, seen)
  seen = seen or {}
  local deadline = proc.now() + (limit or 3)
  while proc.now() < deadline do
    s:settimeout(math.max(0.01, deadline - proc.now()))
    local d = s:receive()
    if d then
      seen[#seen + 1] = d
      if d:find(want, 1, true) then return seen, true end
    end
  end
  return seen, false
end

local function start(extra_env)
  local s, path = notify_socket()
  local dir = proc.tmpdir()
  local file = proc.write(dir, "echo.lua", proc.ECHO)
  local env = { NOTIFY_SOCKET = path }
  for k, v in pairs(extra_env or {}) do env[k] = v end
  local p = proc.start({ "run", file, "--listen", "127.0.0.1:0" }, { cwd = dir, env = env })
  return p, s
end

describe("NOTIFY_SOCKET", function()
  it("READY=1 with a STATUS once serving; RELOADING=1 (with MONOTONIC_USEC) then READY=1 on SIGHUP; STOPPING=1 on SIGTERM", function()
    local p, s = start()
    local seen, ok = until_message(s, "READY=1", 5)
    assert.is_true(ok, "no READY=1: " .. table.concat(seen, " | ") .. "\n" .. p:describe())
    assert.matches("STATUS=serving 1 service%(s%)", seen[#seen])
    -- it is serving when it says so
    local address = p:listening()[1].address
    assert.equals("hi", proc.request(address, "hi"))
    p:signal("HUP")
    seen, ok = until_message(s, "RELOADING=1", 3, {})
    assert.is_true(ok, table.concat(seen, " | "))
    assert.matches("MONOTONIC_USEC=%d+", seen[#seen])
    seen, ok = until_message(s, "READY=1", 3, {})
    assert.is_true(ok, "no READY=1 after the reload: " .. table.concat(seen, " | "))
    p:signal("TERM")
    seen, ok = until_message(s, "STOPPING=1", 3, {})
    assert.is_true(ok, table.concat(seen, " | "))
    assert.equals(0, p:wait_exit(5), p:describe())
  end)

  it("WATCHDOG=1 pings at least twice per WATCHDOG_USEC", function()
    local p, s = start({ WATCHDOG_USEC = "400000" })
    assert.is_true(select(2, until_message(s, "READY=1", 5)), p:describe())
    local t0, pings = proc.now(), 0
    local seen = {}
    while proc.now() - t0 < 1.2 do
      local got = until_message(s, "WATCHDOG=1", 1.3 - (proc.now() - t0), {})
      for _, d in ipairs(got) do if d:find("WATCHDOG=1", 1, true) then pings = pings + 1 end seen[#seen + 1] = d end
    end
    -- 1.2 s at one ping per 0.2 s: about 6; fewer than 4 means it does not keep up
    assert.is_true(pings >= 4, ("%d WATCHDOG=1 pings in 1.2 s: %s"):format(pings, table.concat(seen, " | ")))
  end)

  it("WATCHDOG=1 comes from the loop: a fiber that blocks it stops the pings", function()
    local s, path = notify_socket()
    local dir = proc.tmpdir()
    local file = proc.write(dir, "spin.lua", [[
return function(sock)
  if sock:receive("*l") == "spin" then
    local t = os.clock()
    while os.clock() - t < 1.2 do end
    sock:send("spun\n")
  end
end
]])
    local p = proc.start({ "run", file, "--listen", "127.0.0.1:0", "--max-run-time", "5" },
                         { cwd = dir, env = { NOTIFY_SOCKET = path, WATCHDOG_USEC = "200000" } })
    assert.is_true(select(2, until_message(s, "READY=1", 5)), p:describe())
    local c = assert(proc.connect(p:listening()[1].address, 5))
    local times = {}
    local reader = proc.spawn(function()
      local deadline = proc.now() + 2.5
      while proc.now() < deadline do
        s:settimeout(0.05)
        local d = s:receive()
        if d and d:find("WATCHDOG=1", 1, true) then times[#times + 1] = proc.now() end
      end
    end)
    gsock.sleep(0.3)
    c:send("spin\n")
    assert.equals("spun", c:receive("*l"))
    reader:join(3)
    local gap = 0
    for i = 2, #times do gap = math.max(gap, times[i] - times[i - 1]) end
    assert.is_true(gap >= 1.0, ("the longest gap between pings was %.2f s while the loop was blocked 1.2 s"):format(gap))
  end)

  it("a WATCHDOG_PID for another process means no pings", function()
    local p, s = start({ WATCHDOG_USEC = "200000", WATCHDOG_PID = "1" })
    assert.is_true(select(2, until_message(s, "READY=1", 5)), p:describe())
    local seen, pinged = until_message(s, "WATCHDOG=1", 0.6, {})
    assert.is_false(pinged, table.concat(seen, " | "))
  end)

  it("without NOTIFY_SOCKET nothing is sent and serving is unchanged", function()
    local dir = proc.tmpdir()
    local file = proc.write(dir, "echo.lua", proc.ECHO)
    local p = proc.start({ "run", file, "--listen", "127.0.0.1:0" }, { cwd = dir, env = { WATCHDOG_USEC = "100000" } })
    assert.equals("hi", proc.request(p:listening()[1].address, "hi"))
    p:signal("TERM")
    assert.equals(0, p:wait_exit(5), p:describe())
  end)
end)

describe("NOTIFY_SOCKET with workers", function()
  it("the supervisor speaks for the group: one READY=1 once both workers serve, RELOADING=1/READY=1, STOPPING=1", function()
    local s, path = notify_socket()
    local dir = proc.tmpdir()
    local file = proc.write(dir, "echo.lua", proc.ECHO)
    local p = proc.start({ "run", file, "--listen", "127.0.0.1:0", "--workers", "2" },
                         { cwd = dir, env = { NOTIFY_SOCKET = path, WATCHDOG_USEC = "400000" } })
    local seen, ok = until_message(s, "READY=1", 5)
    assert.is_true(ok, "no READY=1: " .. table.concat(seen, " | ") .. "\n" .. p:describe())
    assert.matches("STATUS=serving with 2 workers", seen[#seen])
    -- the supervisor sent it, after both workers said they serve
    assert.is_not_nil(p:stderr():find("all 2 workers serve", 1, true), p:describe())
    local address = p:listening()[1].address
    assert.equals("hi", proc.request(address, "hi"))
    seen = until_message(s, "no such message", 1, {})
    local readies, pings = 0, 0
    for _, d in ipairs(seen) do
      if d:find("READY=1", 1, true) then readies = readies + 1 end
      if d:find("WATCHDOG=1", 1, true) then pings = pings + 1 end
    end
    assert.equals(0, readies, "READY=1 again without a reload: " .. table.concat(seen, " | "))
    assert.is_true(pings >= 3, ("%d WATCHDOG=1 pings in 1 s: %s"):format(pings, table.concat(seen, " | ")))
    p:signal("HUP")
    seen, ok = until_message(s, "RELOADING=1", 3, {})
    assert.is_true(ok, table.concat(seen, " | "))
    seen, ok = until_message(s, "READY=1", 3, {})
    assert.is_true(ok, "no READY=1 after the workers reloaded: " .. table.concat(seen, " | "))
    p:signal("TERM")
    seen, ok = until_message(s, "STOPPING=1", 3, {})
    assert.is_true(ok, table.concat(seen, " | "))
    assert.equals(0, p:wait_exit(5), p:describe())
  end)
end)
