-- Limits (SPEC §5, §9): descriptor exhaustion (EMFILE) backs off without spinning,
-- max_run_time reports or stops a runaway fiber, memory_limit fails only the fiber that
-- went past it, max_connections holds extra clients in the backlog, idle_timeout closes
-- silent connections, a raising handler is logged and the server goes on.
local gsock = require "gsock"
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/serve/"
local proc = dofile(here .. "support/proc.lua")

after_each(proc.cleanup)

--- `gsockd run handler.lua --listen 127.0.0.1:0 [extra options]`; returns p, address, file.
local function run_handler(source, opts)
  local dir = proc.tmpdir()
  local file = proc.write(dir, "handler.lua", source)
  local argv = { "run", file, "--listen", "127.0.0.1:0" }
  for _, a in ipairs(opts and opts.args or {}) do argv[#argv + 1] = a end
  local p = proc.start(argv, { cwd = dir, nofile = opts and opts.nofile })
  return p, p:listening()[1].address, file
end

local function serve_one(source, top, service_extra)
  local dir = proc.tmpdir()
  local file = proc.write(dir, "handler.lua", source)
  local config = proc.write(dir, "gsockd.toml", (top or "") .. ([[

[services.lim]
listen = "127.0.0.1:0"
handler = "handler.lua"
%s
]]):format(service_extra or ""))
  local p = proc.start({ "serve", config }, { cwd = dir })
  return p, p:listening()[1].address, file
end

describe("out of descriptors (ulimit -n 64)", function()
  it("200 clients held open: the server stays up, uses little CPU, and serves again once they close", function()
    local p, address = run_handler(proc.ECHO, { nofile = 64 })
    assert.equals("warm", proc.request(address, "warm"))
    local held = {}
    for i = 1, 200 do
      local c, err = proc.connect(address, 3)
      assert.is_not_nil(c, "client " .. i .. " could not connect: " .. tostring(err))
      held[i] = c
    end
    gsock.sleep(0.5)                          -- the server has run out of descriptors by now
    assert.is_true(p:alive(), p:describe())
    local log_before = select(2, p:stderr():gsub("\n", ""))
    local cpu0 = p:cpu()
    gsock.sleep(2)
    local used = p:cpu() - cpu0
    local log_lines = select(2, p:stderr():gsub("\n", "")) - log_before
    assert.is_true(p:alive(), p:describe())
    assert.is_true(used < 0.5, ("the server used %.2f s of CPU in 2 s while out of descriptors (spinning?)"):format(used))
    assert.is_true(log_lines <= 6, ("%d log lines in 2 s while out of descriptors (at most one a second)"):format(log_lines))
    for _, c in ipairs(held) do c:close() end
    assert.equals("again", proc.request_until(address, "again", "again", 4),
      "not serving after the clients closed\n" .. p:describe())
  end)
end)

describe("max_run_time", function()
  local RUNAWAY = [[
return function(sock)
  while true do
    local line = sock:receive("*l")
    if not line then return end
    if line == "spin" then
      while true do end
    end
    sock:send(line .. "\n")
  end
end
]]

  local function check_runaway_stopped(p, address)
    local bystander = assert(proc.connect(address, 5))
    assert(bystander:send("one\n"))
    assert.equals("one", bystander:receive("*l"))
    local runaway = assert(proc.connect(address, 5))
    assert(runaway:send("spin\n"))
    gsock.sleep(0.05)
    -- other clients, the open one and new ones, are served
    local t0 = proc.now()
    assert(bystander:send("two\n"))
    assert.equals("two", bystander:receive("*l"))
    assert.equals("fresh", proc.request(address, "fresh", 3))
    assert.is_true(proc.now() - t0 < 2.5, "the runaway froze the server for " .. (proc.now() - t0) .. " s")
    -- the runaway's connection is closed
    local data, err = runaway:receive("*l")
    assert.is_nil(data)
    assert.are_not.equal("timeout", err, "the runaway's connection was not closed")
    assert.is_true(p:alive(), p:describe())
    for i = 1, 3 do assert.equals("later" .. i, proc.request(address, "later" .. i)) end
  end

  it("with max_run_time_action = \"error\" (config) a while-true handler is stopped: others are served, its client sees the close", function()
    check_runaway_stopped(serve_one(RUNAWAY, 'max_run_time = 0.2\nmax_run_time_action = "error"\nworkers = 1\n'))
  end)

  it("with --max-run-time-action error (gsockd run) a while-true handler is stopped: others are served, its client sees the close", function()
    check_runaway_stopped(run_handler(RUNAWAY, { args = { "--max-run-time", "0.2", "--max-run-time-action", "error" } }))
  end)

  it("a runaway that catches the max_run_time error with pcall and spins on is stopped: 20 other clients are served", function()
    local p, address = run_handler([[
return function(sock)
  local line = sock:receive("*l")
  if line == "spin" then
    while true do pcall(function() while true do end end) end
  end
  sock:send(tostring(line) .. "\n")
end
]], { args = { "--max-run-time", "0.2", "--max-run-time-action", "error" } })
    local runaway = assert(proc.connect(address, 5))
    assert(runaway:send("spin\n"))
    gsock.sleep(0.05)
    local t0, served = proc.now(), 0
    for i = 1, 20 do
      if proc.request(address, "c" .. i, 3) == "c" .. i then served = served + 1 end
      if proc.now() - t0 > 6 then break end
    end
    assert.equals(20, served, ("%d of 20 clients served in %.1f s\n%s"):format(served, proc.now() - t0, p:describe()))
    assert.is_true(proc.now() - t0 < 4, "the clients waited " .. (proc.now() - t0) .. " s")
    local data, err = runaway:receive("*l")
    assert.is_nil(data)
    assert.are_not.equal("timeout", err, "the runaway's connection was not closed")
    assert.is_true(p:alive(), p:describe())
  end)

  local BUSY = [[
local function busy_loop_5e2(seconds)
  local stop = os.clock() + seconds
  while os.clock() < stop do end
  return true
end
return function(sock)
  local line = sock:receive("*l")
  if line == "busy" then busy_loop_5e2(0.6) end
  sock:send("done " .. tostring(line) .. "\n")
end
]]

  local function check_runaway_logged(p, address)
    assert.equals("done busy", proc.request(address, "busy", 5), "a logged-only runaway must finish")
    assert.is_not_nil(p:wait_stderr("busy_loop_5e2", 2), "the long run is not reported with a traceback\n" .. p:describe())
    assert.equals("done quick", proc.request(address, "quick"))
  end

  it("with the default action (\"log\", config) a long run without yielding is reported with its traceback, not stopped", function()
    check_runaway_logged(serve_one(BUSY, "max_run_time = 0.2\nworkers = 1\n"))
  end)

  it("with --max-run-time 0.2 (gsockd run, default action) a long run is reported with its traceback, not stopped", function()
    check_runaway_logged(run_handler(BUSY, { args = { "--max-run-time", "0.2" } }))
  end)
end)

describe("memory_limit", function()
  local HOG = [[
return function(sock)
  while true do
    local line = sock:receive("*l")
    if not line then return end
    if line == "big" then
      local t = {}
      for i = 1, 1500000 do t[i] = ("x"):rep(64) .. i end   -- ~150 MB, far past the limit
      sock:send("survived " .. #t .. "\n")
    else
      sock:send(line .. "\n")
    end
  end
end
]]

  local function check_hog(p, address)
    local other = assert(proc.connect(address, 5))
    assert(other:send("before\n"))
    assert.equals("before", other:receive("*l"))
    local hog = assert(proc.connect(address, 8))
    assert(hog:send("big\n"))
    local data, err = hog:receive("*l")
    assert.is_nil(data, "the huge table was built: memory_limit not enforced")
    assert.are_not.equal("timeout", err)
    assert.is_true(p:alive(), p:describe())
    assert.is_not_nil(p:wait_stderr("not enough memory", 2), p:describe())
    -- the open connection and new ones are served
    assert(other:send("after\n"))
    assert.equals("after", other:receive("*l"))
    for i = 1, 3 do assert.equals("new" .. i, proc.request(address, "new" .. i)) end
  end

  it("a handler that builds a huge table fails alone; the others are served (config memory_limit)", function()
    check_hog(serve_one(HOG, 'memory_limit = "64M"\nworkers = 1\n'))
  end)

  it("a handler that builds a huge table fails alone; the others are served (gsockd run --memory-limit)", function()
    check_hog(run_handler(HOG, { args = { "--memory-limit", "64M" } }))
  end)
end)

describe("memory_limit and receive buffers", function()
  local function rss_kib(pid)
    local f = io.open("/proc/" .. pid .. "/status")
    if not f then return nil end
    local kib = tonumber(f:read("a"):match("VmRSS:%s*(%d+)"))
    f:close()
    return kib
  end

  it("a 50 MiB line under memory_limit 32M: receive fails with 'not enough memory', the connection closes, the server serves on", function()
    local p, address = run_handler([[
return function(sock)
  local line, err = sock:receive("*l")
  if line then sock:send("len " .. #line .. "\n") else io.stderr:write("receive failed: " .. tostring(err) .. "\n") end
end
]], { args = { "--memory-limit", "32M" } })
    assert.equals("len 4", proc.request(address, "warm", 2))
    local rss0 = rss_kib(p.pid)
    local c = assert(proc.connect(address, 10))
    gsock.spawn(function()
      local chunk = ("x"):rep(1 << 20)
      for _ = 1, 50 do if not c:send(chunk) then return end end
      c:send("\n")
    end)
    local data, err = c:receive("*l")
    assert.is_nil(data, "the server received the whole 50 MiB line: " .. tostring(data))
    assert.are_not.equal("timeout", err, "the connection was not closed")
    c:close()
    assert.is_not_nil(p:wait_stderr("receive failed: not enough memory", 3), p:describe())
    local grown = rss_kib(p.pid) - rss0
    assert.is_true(grown < 48 * 1024, ("the server's RSS grew by %d MiB"):format(grown // 1024))
    assert.is_true(p:alive(), p:describe())
    local c2 = assert(proc.connect(address, 5))
    assert(c2:send("next\n"))
    assert.equals("len 4", c2:receive("*l"))
    c2:close()
  end)
end)

describe("max_connections", function()
  local function check_third_waits(address)
    local a = assert(proc.connect(address, 5))
    local b = assert(proc.connect(address, 5))
    assert(a:send("a\n")); assert.equals("a", a:receive("*l"))
    assert(b:send("b\n")); assert.equals("b", b:receive("*l"))
    local c, err = proc.connect(address, 5)
    assert.is_not_nil(c, "the third client was refused: " .. tostring(err))
    assert(c:send("c\n"))
    c:settimeout(0.8)
    local data, cerr = c:receive("*l")
    assert.is_nil(data, "the third client was served while two were open")
    assert.equals("timeout", cerr, "the third client was closed instead of waiting")
    a:close()
    c:settimeout(3)
    assert.equals("c", c:receive("*l"), "the third client was not served after a slot freed")
    -- b is still served
    assert(b:send("b2\n")); assert.equals("b2", b:receive("*l"))
  end

  it("from a handler table (gsockd run): the third client waits until one of the first two closes", function()
    local _, address = run_handler([[
return { max_connections = 2, handle = function(sock)
  while true do
    local line = sock:receive("*l")
    if not line then return end
    sock:send(line .. "\n")
  end
end }
]])
    check_third_waits(address)
  end)

  it("from the config (gsockd serve): the third client waits until one of the first two closes", function()
    local _, address = serve_one(proc.ECHO, "workers = 1\n", "max_connections = 2")
    check_third_waits(address)
  end)
end)

describe("idle_timeout", function()
  local function check_idle(address)
    local c = assert(proc.connect(address, 5))
    assert(c:send("hi\n"))
    assert.equals("hi", c:receive("*l"))
    local t0 = proc.now()
    local data, err = c:receive("*l")
    local took = proc.now() - t0
    assert.is_nil(data)
    assert.are_not.equal("timeout", err, "the silent connection was not closed within 5 s")
    assert.is_true(took >= 0.3, ("closed after %.2f s, before idle_timeout = 0.5"):format(took))
    assert.is_true(took <= 2.5, ("closed after %.2f s with idle_timeout = 0.5"):format(took))
  end

  it("closes a silent connection (handler table)", function()
    local _, address = run_handler([[
return { idle_timeout = 0.5, handle = function(sock)
  while true do
    local line = sock:receive("*l")
    if not line then return end
    sock:send(line .. "\n")
  end
end }
]])
    check_idle(address)
  end)

  it("closes a silent connection (config)", function()
    local _, address = serve_one(proc.ECHO, nil, "idle_timeout = 0.5")
    check_idle(address)
  end)

  it("does not close a connection that keeps talking", function()
    local _, address = run_handler([[
return { idle_timeout = 0.5, handle = function(sock)
  while true do
    local line = sock:receive("*l")
    if not line then return end
    sock:send(line .. "\n")
  end
end }
]])
    local c = assert(proc.connect(address, 3))
    for i = 1, 8 do                             -- 1.6 s in all, never 0.5 s silent
      assert(c:send("tick" .. i .. "\n"))
      assert.equals("tick" .. i, c:receive("*l"))
      gsock.sleep(0.2)
    end
  end)
end)

describe("a handler that raises", function()
  it("is logged with its message and traceback; the next connection is served", function()
    local p, address = run_handler([[
local function explode_6b0(what) error("boom-marker-3f9 " .. what) end
return { name = "raiser-svc", handle = function(sock, peer)
  local line = sock:receive("*l")
  if line == "boom" then explode_6b0("now") end
  sock:send(tostring(line) .. "\n")
end }
]])
    local c = assert(proc.connect(address, 3))
    local _, cport = c:getsockname()
    assert(c:send("boom\n"))
    local data, err = c:receive("*l")
    assert.is_nil(data)
    assert.equals("closed", err)
    assert.is_not_nil(p:wait_stderr("boom%-marker%-3f9 now", 2), p:describe())
    assert.is_not_nil(p:wait_stderr("stack traceback", 1), p:describe())
    local e = p:stderr()
    assert.matches("explode_6b0", e)                    -- the traceback goes through the raising function
    assert.matches("handler%.lua:1:", e)                -- and names the file:line
    assert.matches("raiser%-svc", e)                    -- the log names the service
    assert.matches("127%.0%.0%.1:" .. cport, e)          -- and the peer
    assert.equals("next", proc.request(address, "next"))
    assert.is_true(p:alive())
  end)

  it("is logged with the peer even when the handler does not take it and closed the socket", function()
    local p, address = run_handler([[
return { name = "nopeer-svc", handle = function(sock)
  if sock:receive("*l") then sock:close() error("nopeer-marker-e52") end
end }
]])
    local c = assert(proc.connect(address, 3))
    local _, cport = c:getsockname()
    assert(c:send("go\n"))
    assert.is_nil(c:receive("*l"))
    assert.is_not_nil(p:wait_stderr("nopeer%-marker%-e52", 2), p:describe())
    assert.matches("service=nopeer%-svc fiber=%d+ peer=127%.0%.0%.1:" .. cport .. " handler failed", p:stderr())
  end)

  it("is logged on one line with the level, the service, the fiber id and the peer", function()
    local p, address = run_handler([[
return { name = "logline-svc", handle = function(sock, peer)
  if sock:receive("*l") then error("logline-marker-a41") end
end }
]])
    local c = assert(proc.connect(address, 3))
    local _, cport = c:getsockname()
    assert(c:send("go\n"))
    assert.is_nil(c:receive("*l"))
    assert.is_not_nil(p:wait_stderr("logline%-marker%-a41", 2), p:describe())
    local line
    for l in p:stderr():gmatch("[^\n]+") do
      if l:find("logline-marker-a41", 1, true) then line = l break end
    end
    assert.matches("[Ee][Rr][Rr][Oo][Rr]", line)                 -- the level
    assert.matches("logline%-svc", line)                           -- the service
    assert.matches("[Ff]iber%D?%D?%d+", line)                     -- the fiber id
    assert.matches("127%.0%.0%.1:" .. cport, line)                 -- the peer
  end)
end)
