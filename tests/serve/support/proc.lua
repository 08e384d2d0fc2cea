-- Runs gsockd servers in the background for the serving tests (tests/serve/*_test.lua),
-- talks to them as a client, and makes sure nothing outlives a test.
--
--   local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/serve/"
--   local proc = dofile(here .. "support/proc.lua")
--   after_each(proc.cleanup)
--
--   local dir = proc.tmpdir()                               -- removed by cleanup()
--   local h = proc.write(dir, "echo.lua", proc.ECHO)        -- returns the full path
--   local p = proc.start({ "run", h, "--listen", "127.0.0.1:0" }, { cwd = dir })
--   local l = p:listening()                                 -- { {address=, name=, host=, port=, path=}, ... }
--   assert.equals("hi", proc.request(l[1].address, "hi"))
--   p:signal("TERM"); assert.equals(0, p:wait_exit(5))
--
-- How a server is started: a small sh wrapper (written into the test's temp dir) runs
--   setsid env --default-signal=INT,QUIT BIN ARGS </dev/null >OUT 2>ERR &
-- records the pid (the gsockd process itself: setsid and env exec, the pid is kept),
-- waits for it and writes its exit status to a file (128+N when killed by signal N).
-- So the exit status is known although PID 1 of a container may never reap, the
-- server gets its own process group (cleanup kills the group, workers included), and
-- SIGINT is not inherited as ignored from the background job. A watchdog kills the
-- group after 120 s in case the test process itself dies before its cleanup.
--
-- The binary: $GSOCKD_SERVE_BIN if set, else $GSOCKD_BIN (set by `gsockd test` to
-- itself), else /work/main/.build/debug/gsockd.
local gsock = require "gsock"
local socket = require "socket"
local unix = require "socket.unix"

local M = {}

M.TICKS = 100   -- USER_HZ (getconf CLK_TCK), the unit of utime/stime in /proc/PID/stat

local started, dirs = {}, {}
local tracked_sockets, tracked_fibers = {}, {}

-- Shell and files ----------------------------------------------------------------------

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
M.quote = q

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end
M.slurp = slurp

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>/dev/null", "r"))
  local out = p:read("a")
  p:close()
  return out
end
M.sh = sh

function M.bin()
  local b = os.getenv("GSOCKD_SERVE_BIN")          -- to try these tests on another build
  if b and b ~= "" then return b end
  b = os.getenv("GSOCKD_BIN")
  if b and b ~= "" then return b end
  return "/work/main/.build/debug/gsockd"
end

--- A fresh empty directory under /tmp, removed by cleanup().
function M.tmpdir()
  local base = os.tmpname()
  os.remove(base)
  local dir = base .. "-gsockd-serve"
  assert(os.execute("mkdir -p " .. q(dir)), "cannot create " .. dir)
  dirs[#dirs + 1] = dir
  return dir
end

--- The lines of `text`, without their newlines (empty lines left out).
function M.lines(text)
  local lines = {}
  for line in text:gmatch("[^\n]+") do lines[#lines + 1] = line end
  return lines
end

--- Writes `text` to dir/name (creating subdirectories); returns the full path.
function M.write(dir, name, text)
  local path = dir .. "/" .. name
  local parent = path:match("^(.*)/[^/]*$")
  if parent and parent ~= dir then os.execute("mkdir -p " .. q(parent)) end
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  return path
end

--- A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then closed).
function M.free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return assert(tonumber(port))
end

--- A fresh path for a unix socket (short enough for sun_path).
function M.unix_path(dir, tag)
  return dir .. "/" .. (tag or "s") .. ".sock"
end

--- Escapes Lua pattern magic characters so that `s` matches literally.
function M.lit(s) return (tostring(s):gsub("%p", "%%%0")) end

--- The last component of a path.
function M.base(path) return (path:match("[^/]+$")) end

-- Processes -----------------------------------------------------------------------------

local Proc = {}
Proc.__index = Proc

local function now()
  gsock.sleep(0)
  return gsock.now()
end
M.now = now

--- Starts BIN with the argument list `argv` in the background.
--- opts: cwd (default: a new tmpdir), nofile (ulimit -n for the server), env (table of
--- NAME = value added to its environment), wait_pid (seconds, default 3), exec (a list
--- of words run instead, with BIN and `argv` as their last arguments: a program that
--- execs gsockd in the end, as systemd-socket-activate does, keeps the pid).
function M.start(argv, opts)
  opts = opts or {}
  local dir = opts.cwd or M.tmpdir()
  local rundir = M.tmpdir()                                -- wrapper files live apart from the test's files
  local p = setmetatable({
    dir = dir, rundir = rundir, argv = argv,
    out = rundir .. "/stdout", err = rundir .. "/stderr",
    pidfile = rundir .. "/pid", rcfile = rundir .. "/rc", dogfile = rundir .. "/watchdog",
  }, Proc)
  local args = {}
  for _, a in ipairs(argv) do args[#args + 1] = q(a) end
  local envs = {}
  for k, v in pairs(opts.env or {}) do envs[#envs + 1] = k .. "=" .. q(v) end
  local exec = {}
  for _, w in ipairs(opts.exec or {}) do exec[#exec + 1] = q(w) end
  local lines = {
    "cd " .. q(dir) .. " || { echo 97 > " .. q(p.rcfile) .. "; exit 97; }",
    opts.nofile and ("ulimit -n " .. math.tointeger(opts.nofile)) or "",
    ("setsid env --default-signal=INT,QUIT %s %s %s %s </dev/null >%s 2>%s &"):format(
      table.concat(envs, " "), table.concat(exec, " "), q(M.bin()), table.concat(args, " "), q(p.out), q(p.err)),
    "pid=$!",
    -- the watchdog: only if the test process died before its cleanup (cleanup kills it)
    "( sleep 120; [ \"$(cat /proc/$pid/comm 2>/dev/null)\" = gsockd ] && kill -9 -$pid $pid ) >/dev/null 2>&1 </dev/null &",
    "echo $! > " .. q(p.dogfile),
    "echo $pid > " .. q(p.pidfile .. ".tmp") .. " && mv " .. q(p.pidfile .. ".tmp") .. " " .. q(p.pidfile),
    "wait $pid",
    "echo $? > " .. q(p.rcfile .. ".tmp") .. " && mv " .. q(p.rcfile .. ".tmp") .. " " .. q(p.rcfile),
  }
  local wrapper = M.write(rundir, "wrapper.sh", table.concat(lines, "\n") .. "\n")
  started[#started + 1] = p
  assert(os.execute("sh " .. q(wrapper) .. " >/dev/null 2>&1 </dev/null &"))
  local deadline = now() + (opts.wait_pid or 3)
  while true do
    local s = slurp(p.pidfile)
    if s and tonumber(s) then p.pid = math.tointeger(tonumber(s)) break end
    if now() > deadline then error("the gsockd process did not start: " .. table.concat(argv, " "), 2) end
    gsock.sleep(0.005)
  end
  p.watchdog = tonumber(slurp(p.dogfile) or "")
  return p
end

function Proc:stdout() return slurp(self.out) or "" end
function Proc:stderr() return slurp(self.err) or "" end

--- The exit status once the process has ended, else nil.
function Proc:status()
  local s = slurp(self.rcfile)
  return s and tonumber(s) or nil
end

function Proc:alive() return self:status() == nil end

--- Text describing the process for assertion messages.
function Proc:describe()
  return ("gsockd %s\nstatus: %s\n--- stdout ---\n%s\n--- stderr ---\n%s"):format(
    table.concat(self.argv, " "), tostring(self:status()), self:stdout(), self:stderr():sub(-6000))
end

--- Sends a signal ("TERM", "HUP", "USR1", "KILL", ...) to the gsockd process.
function Proc:signal(name)
  return os.execute(("kill -%s %d 2>/dev/null"):format(name, self.pid))
end

--- Waits up to `limit` seconds for the process to end; returns its status or nil.
function Proc:wait_exit(limit)
  local deadline = now() + (limit or 5)
  while true do
    local s = self:status()
    if s then return s end
    if now() > deadline then return nil end
    gsock.sleep(0.01)
  end
end

--- Parses the `listening on ADDRESS (NAME)` lines printed so far.
function Proc:listen_lines()
  local list = {}
  for line in self:stdout():gmatch("[^\n]+") do
    local address, name = line:match("listening on (%S+) %((.-)%)%s*$")
    if not address then address = line:match("listening on (%S+)") end
    if address then
      local e = { address = address, name = name, line = line }
      local path = address:match("^unix:(.+)$")
      if path then
        e.path = path
      else
        local h, port = address:match("^%[(.+)%]:(%d+)$")
        if not h then h, port = address:match("^(.*):(%d+)$") end
        e.host, e.port = h, tonumber(port)
      end
      list[#list + 1] = e
    end
  end
  return list
end

--- Waits until `n` (default 1) listening lines were printed; returns them.
--- Raises (with stdout/stderr) if the process exits first or `limit` seconds pass.
function Proc:listening(n, limit)
  n = n or 1
  local deadline = now() + (limit or 5)
  while true do
    local list = self:listen_lines()
    if #list >= n then return list end
    if not self:alive() then
      error("gsockd exited before printing " .. n .. " 'listening on' line(s)\n" .. self:describe(), 2)
    end
    if now() > deadline then
      error("no 'listening on' line after " .. (limit or 5) .. " s\n" .. self:describe(), 2)
    end
    gsock.sleep(0.02)
  end
end

--- Waits until stderr matches the Lua pattern `pattern` (from byte `from`, default 1);
--- returns the match position or nil after `limit` seconds.
function Proc:wait_stderr(pattern, limit, from)
  local deadline = now() + (limit or 3)
  while true do
    local e = self:stderr()
    local i = e:find(pattern, from or 1)
    if i then return i end
    if now() > deadline then return nil end
    gsock.sleep(0.02)
  end
end

--- The pids of the direct children of `pid` (default: this process).
local function children(pid)
  local list = {}
  for n in sh("pgrep -P " .. math.tointeger(pid)):gmatch("%d+") do list[#list + 1] = math.tointeger(tonumber(n)) end
  return list
end
M.children = children

function Proc:children() return children(self.pid) end

--- The process and all its descendants.
local function tree(pid)
  local all, todo = {}, { pid }
  while #todo > 0 do
    local p = table.remove(todo)
    all[#all + 1] = p
    if #all > 200 then break end
    for _, c in ipairs(children(p)) do todo[#todo + 1] = c end
  end
  return all
end
M.tree = tree

--- utime + stime of `pid` in seconds, or nil if it is gone.
local function cpu(pid)
  local s = slurp("/proc/" .. math.tointeger(pid) .. "/stat")
  if not s then return nil end
  local rest = s:match("%) (.*)$")
  local fields = {}
  for f in rest:gmatch("%S+") do fields[#fields + 1] = f end
  -- rest starts at field 3 (state); utime is field 14, stime field 15
  return (tonumber(fields[12]) + tonumber(fields[13])) / M.TICKS
end
M.cpu = cpu

--- The CPU seconds used so far by the process and its descendants (live ones).
function Proc:cpu()
  local total = 0
  for _, pid in ipairs(tree(self.pid)) do total = total + (cpu(pid) or 0) end
  return total
end

--- The state letter of `pid` (R, S, Z, ...) or nil when it is gone.
local function state(pid)
  local s = slurp("/proc/" .. math.tointeger(pid) .. "/stat")
  return s and s:match("%) (%a)") or nil
end
M.state = state

--- True when `pid` is running (not gone and not a zombie).
function M.running(pid)
  local st = state(pid)
  return st ~= nil and st ~= "Z" and st ~= "X"
end

--- Kills the process, its process group and every descendant, at once (SIGKILL).
function Proc:kill()
  if not self.pid then return end
  if self:alive() then
    os.execute(("kill -STOP %d 2>/dev/null"):format(self.pid))       -- no more restarts while we collect
    local all = tree(self.pid)
    os.execute(("kill -9 -%d 2>/dev/null"):format(self.pid))
    for _, pid in ipairs(all) do os.execute(("kill -9 %d 2>/dev/null"):format(pid)) end
    os.execute(("kill -CONT %d 2>/dev/null"):format(self.pid))
  else
    os.execute(("kill -9 -%d 2>/dev/null"):format(self.pid))        -- orphaned workers, if any
  end
  if self.watchdog then
    for _, c in ipairs(children(self.watchdog)) do os.execute(("kill -9 %d 2>/dev/null"):format(c)) end
    os.execute(("kill -9 %d 2>/dev/null"):format(self.watchdog))
  end
end

-- Clients -------------------------------------------------------------------------------

--- Registers sockets to be closed by cleanup(); returns them.
function M.track(...)
  for i = 1, select("#", ...) do
    local s = select(i, ...)
    if s ~= nil then tracked_sockets[#tracked_sockets + 1] = s end
  end
  return ...
end

--- Spawns fn(...) in a fiber killed by cleanup() if it is still running.
function M.spawn(fn, ...)
  local f = gsock.spawn(fn, ...)
  tracked_fibers[#tracked_fibers + 1] = f
  return f
end

--- Connects to "HOST:PORT", "unix:/path", or a listen line entry; returns the client
--- (tracked, with `timeout` as its timeout, default 3 s) or nil, err.
function M.connect(address, timeout)
  if type(address) == "table" then address = address.address end
  timeout = timeout or 3
  local path = address:match("^unix:(.+)$")
  local c
  if path then
    c = unix.stream()
    c:settimeout(timeout)
    local ok, err = c:connect(path)
    if not ok then c:close() return nil, err end
  else
    local h, port = address:match("^%[(.+)%]:(%d+)$")
    if not h then h, port = address:match("^(.*):(%d+)$") end
    if h == "" or h == "0.0.0.0" then h = "127.0.0.1" end
    c = h:find(":", 1, true) and socket.tcp6() or socket.tcp()
    c:settimeout(timeout)
    local ok, err = c:connect(h, tonumber(port))
    if not ok then c:close() return nil, err end
  end
  M.track(c)
  return c
end

--- One request on a fresh connection: sends `line` .. "\n", reads one line back,
--- closes. Returns the line, or nil and an error ("connect: ...", "receive: ...").
function M.request(address, line, timeout)
  local c, err = M.connect(address, timeout)
  if not c then return nil, "connect: " .. tostring(err) end
  local ok, serr = c:send(line .. "\n")
  if not ok then c:close() return nil, "send: " .. tostring(serr) end
  local reply, rerr = c:receive("*l")
  c:close()
  if not reply then return nil, "receive: " .. tostring(rerr) end
  return reply
end

--- An HTTP/1.0 GET on a fresh connection; returns status code, body, head (or nil, err).
function M.http_get(address, path, timeout)
  local c, err = M.connect(address, timeout)
  if not c then return nil, "connect: " .. tostring(err) end
  c:send(("GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n"):format(path or "/"))
  local all, rerr, partial = c:receive("*a")
  c:close()
  all = all or partial
  if not all or all == "" then return nil, "receive: " .. tostring(rerr) end
  local head, body = all:match("^(.-)\r\n\r\n(.*)$")
  if not head then return nil, "no HTTP head in " .. ("%q"):format(all) end
  return tonumber(head:match("^HTTP/1%.%d (%d%d%d)")), body, head
end

--- Retries M.request until it returns a reply (or `limit` seconds pass); returns the
--- last reply/error pair.
function M.request_until(address, line, want, limit)
  local deadline = now() + (limit or 3)
  local reply, err
  repeat
    reply, err = M.request(address, line, 1)
    if reply ~= nil and (want == nil or reply == want) then return reply end
    gsock.sleep(0.05)
  until now() > deadline
  return reply, err
end

-- Handlers used by several tests ---------------------------------------------------------

--- A line echo handler (a function, the simplest handler form).
M.ECHO = [[
return function(sock, peer)
  while true do
    local line, err = sock:receive("*l")
    if not line then return end
    sock:send(line .. "\n")
  end
end
]]

--- An HTTP/1.0 hello: answers every request with 200 and BODY, then closes.
function M.http_hello(body)
  return ([[
local body = %q
return function(sock, peer)
  while true do
    local line = sock:receive("*l")
    if not line then return end
    if line == "" then break end
  end
  sock:send("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " .. #body
    .. "\r\nConnection: close\r\n\r\n" .. body)
end
]]):format(body)
end

-- Cleanup -------------------------------------------------------------------------------

--- Kills every process started by the test and everything they started, closes the
--- client sockets, kills the client fibers and removes the temp dirs.
function M.cleanup()
  local fibers = tracked_fibers
  tracked_fibers = {}
  local alive = {}
  for _, f in ipairs(fibers) do if not f:dead() then alive[#alive + 1] = f end end
  if #alive > 0 then pcall(gsock.killall, alive, nil, 2) end
  local socks = tracked_sockets
  tracked_sockets = {}
  for i = #socks, 1, -1 do pcall(function() socks[i]:close() end) end
  local procs = started
  started = {}
  for _, p in ipairs(procs) do pcall(Proc.kill, p) end
  -- wait (bounded) for the wrappers to record the deaths, so no process outlives the test
  local deadline = gsock.now() + 2
  for _, p in ipairs(procs) do
    while p.pid and p:alive() and gsock.now() < deadline do gsock.sleep(0.01) end
  end
  local list = dirs
  dirs = {}
  for _, d in ipairs(list) do
    if d:match("^/tmp/") then os.execute("rm -rf " .. q(d)) end
  end
end

return M
