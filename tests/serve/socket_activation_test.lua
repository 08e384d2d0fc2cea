-- Socket activation (SPEC §9): listeners passed in LISTEN_FDS / LISTEN_PID, matched to
-- services by LISTEN_FDNAMES (the service's name) or else by the address they are bound
-- to, are used instead of binding, in one process and with workers. Driven by Debian's
-- systemd-socket-activate, which binds, waits for the first connection and then execs
-- gsockd with the descriptors (the pid stays: the process the tests watch is gsockd).
-- Descriptors of the wrong kind, names no service has and the like are a start error
-- (exit 2) that names the descriptor; LISTEN_PID for another process is ignored, as
-- sd_listen_fds ignores it.
local gsock = require "gsock"
local socket = require "socket"
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/serve/"
local proc = dofile(here .. "support/proc.lua")

after_each(proc.cleanup)

local activate_bin = "systemd-socket-activate"
local have_activate = os.execute("command -v " .. activate_bin .. " >/dev/null 2>&1")
local have_python = os.execute("command -v python3 >/dev/null 2>&1")

-- An echo that also answers "env" with LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES/GSOCKD_LISTEN
-- as the handler sees them, and "fd3" with what a child process has as its fd 3.
local HANDLER = [[
return function(sock)
  while true do
    local line = sock:receive("*l")
    if not line then return end
    if line == "env" then
      local vars = {}
      for _, name in ipairs({ "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "GSOCKD_LISTEN" }) do
        vars[#vars + 1] = name .. "=" .. tostring(os.getenv(name))
      end
      line = table.concat(vars, " ")
    elseif line == "fd3" then
      local f = io.popen("readlink /proc/$$/fd/3 || echo none")
      line = "child fd3: " .. (f:read("l") or "none")
      f:close()
    end
    sock:send(line .. "\n")
  end
end
]]

--- A config with one service `echo` on `listen` (a string or list) and `extra` lines on top.
local function config(dir, listen, extra)
  local list = type(listen) == "table" and listen or { listen }
  local quoted = {}
  for i, a in ipairs(list) do quoted[i] = ("%q"):format(a) end
  proc.write(dir, "echo.lua", HANDLER)
  return proc.write(dir, "gsockd.toml", (extra or "") .. "\nshutdown_timeout = 2\n[services.echo]\nlisten = ["
    .. table.concat(quoted, ", ") .. "]\nhandler = \"echo.lua\"\n")
end

--- Starts `systemd-socket-activate ARGS... gsockd serve CONFIG` and waits until it listens
--- (it says "Listening on ... as N." once per socket).
local function activated(dir, file, args)
  local exec = { activate_bin }
  for _, a in ipairs(args) do exec[#exec + 1] = a end
  local p = proc.start({ "serve", file }, { cwd = dir, exec = exec })
  local n = 0
  for _, a in ipairs(args) do if a == "-l" then n = n + 1 end end
  local deadline = proc.now() + 5
  while select(2, p:stderr():gsub("Listening on ", "")) < n do
    assert(proc.now() < deadline and p:alive(), "systemd-socket-activate did not listen\n" .. p:describe())
    gsock.sleep(0.02)
  end
  return p
end

--- One request on a new connection, waiting for the reply long enough for gsockd to be
--- started by this very connection.
local function ask(address, line)
  return proc.request(address, line, 5)
end

local function refused(address)
  local c, err = proc.connect(address, 1)
  if c then c:close() return false end
  return err
end

local function skip_without_activate()
  if not have_activate then
    pending("systemd-socket-activate is not installed (Debian's systemd package; scripts/setup installs it)")
    return true
  end
end

describe("socket activation with systemd-socket-activate", function()
  it("--fdname=SERVICE: serves on the passed socket and binds nothing of its own, also after SIGHUP; the variables are unset and the descriptor close-on-exec", function()
    if skip_without_activate() then return end
    local dir = proc.tmpdir()
    local own, passed = proc.free_port(), proc.free_port()
    local file = config(dir, "127.0.0.1:" .. own)
    local p = activated(dir, file, { "-l", "127.0.0.1:" .. passed, "--fdname=echo" })
    local address = "127.0.0.1:" .. passed
    assert.equals("hi", ask(address, "hi"), p:describe())
    local l = p:listening()
    assert.equals(1, #l, p:describe())
    assert.equals(address, l[1].address)
    assert.equals("echo", l[1].name)
    assert.truthy(refused("127.0.0.1:" .. own), "the config's own port listens\n" .. p:describe())
    assert.truthy(p:stderr():find("service echo: listening on the socket systemd passed, fd 3 ("
      .. address .. "), named echo", 1, true), p:describe())
    assert.equals("LISTEN_FDS=nil LISTEN_PID=nil LISTEN_FDNAMES=nil GSOCKD_LISTEN=nil", ask(address, "env"))
    local listener = proc.sh("readlink /proc/" .. p.pid .. "/fd/3"):match("socket:%[%d+%]")
    assert.truthy(listener, "gsockd's fd 3 is no socket\n" .. p:describe())
    local child = ask(address, "fd3")
    assert.truthy(child and child:find("^child fd3: "), child)
    assert.is_nil(child:find(listener, 1, true), "a child process inherited the listener: " .. child)
    -- a reload keeps the passed socket and binds nothing
    p:signal("HUP")
    assert.truthy(p:wait_stderr("reloaded 1 service", 5), p:describe())
    assert.equals("again", ask(address, "again"))
    assert.truthy(refused("127.0.0.1:" .. own), "the config's own port listens after a reload\n" .. p:describe())
    p:signal("TERM")
    assert.equals(0, p:wait_exit(5), p:describe())
  end)

  it("without names: each descriptor replaces the listen address it is bound to", function()
    if skip_without_activate() then return end
    local dir = proc.tmpdir()
    local a, b = proc.free_port(), proc.free_port()
    -- b is the service's too but not passed: gsockd binds that one itself
    local file = config(dir, { "127.0.0.1:" .. a, "127.0.0.1:" .. b })
    local p = activated(dir, file, { "-l", "127.0.0.1:" .. a })
    assert.equals("one", ask("127.0.0.1:" .. a, "one"), p:describe())
    assert.equals(2, #p:listening(2), p:describe())
    assert.equals("two", ask("127.0.0.1:" .. b, "two"), p:describe())
    assert.truthy(p:stderr():find("fd 3 (127.0.0.1:" .. a .. "), matched by address", 1, true), p:describe())
    p:signal("TERM")
    assert.equals(0, p:wait_exit(5), p:describe())
  end)

  it("systemd's default name (the socket unit's, NAME.socket) is no name: matched by address", function()
    if skip_without_activate() then return end
    local dir = proc.tmpdir()
    local port = proc.free_port()
    local p = activated(dir, config(dir, "127.0.0.1:" .. port), { "-l", "127.0.0.1:" .. port, "--fdname=gsockd.socket" })
    assert.equals("hi", ask("127.0.0.1:" .. port, "hi"), p:describe())
    assert.truthy(p:stderr():find("fd 3 (127.0.0.1:" .. port .. "), matched by address", 1, true), p:describe())
    p:signal("TERM")
    assert.equals(0, p:wait_exit(5), p:describe())
  end)

  it("ListenStream=PORT's socket ([::]:PORT, taking IPv4 too) stands for a service on :PORT (all interfaces)", function()
    if skip_without_activate() then return end
    local dir = proc.tmpdir()
    local port = proc.free_port()
    local p = proc.start({ "serve", config(dir, ":" .. port) }, { cwd = dir, exec = { activate_bin, "-l", tostring(port) } })
    if not p:wait_stderr("Listening on %[::%]:" .. port, 3) then
      pending("no IPv6 here: " .. p:stderr())
      return
    end
    assert.equals("hi", ask("127.0.0.1:" .. port, "hi"), p:describe())
    assert.equals("[::]:" .. port, p:listening()[1].address)
    assert.truthy(p:stderr():find("fd 3 ([::]:" .. port .. "), matched by address", 1, true), p:describe())
    p:signal("TERM")
    assert.equals(0, p:wait_exit(5), p:describe())
  end)

  it("workers = 2: the supervisor holds the passed sockets (TCP and unix, named) and both workers serve on them, a restarted one too; the unix socket's file is left to systemd", function()
    if skip_without_activate() then return end
    local dir = proc.tmpdir()
    local own, passed = proc.free_port(), proc.free_port()
    local path = proc.unix_path(dir, "echo")
    local file = config(dir, { "127.0.0.1:" .. own, "unix:" .. path }, "workers = 2")
    -- a name applies to every descriptor: name both "echo", so both replace the config's list
    local p = activated(dir, file, { "-l", "127.0.0.1:" .. passed, "-l", path, "--fdname=echo:echo" })
    local address = "127.0.0.1:" .. passed
    assert.equals("hi", ask(address, "hi"), p:describe())
    assert.truthy(p:wait_stderr("all 2 workers serve", 10), p:describe())
    for w = 1, 2 do
      for _, at in ipairs({ address, "unix:" .. path }) do
        assert.truthy(p:stderr():find("worker=" .. w .. " fiber=%d+ listening on " .. proc.lit(at)),
          "worker " .. w .. " does not listen on " .. at .. "\n" .. p:describe())
      end
    end
    assert.truthy(refused("127.0.0.1:" .. own), "the config's own port listens\n" .. p:describe())
    assert.equals("u", ask("unix:" .. path, "u"), p:describe())
    assert.equals("LISTEN_FDS=nil LISTEN_PID=nil LISTEN_FDNAMES=nil GSOCKD_LISTEN=nil", ask(address, "env"))
    -- several connections: each worker accepts from the one passed socket
    for i = 1, 10 do assert.equals("n" .. i, ask(address, "n" .. i)) end
    -- a worker that dies is restarted on the same sockets (it asks the supervisor, binds nothing)
    local pid = assert(tonumber(p:stderr():match("worker 2 started %(pid (%d+)%)")), p:describe())
    local before = #p:stderr()
    os.execute("kill -9 " .. math.tointeger(pid))
    assert.truthy(p:wait_stderr("worker=2 fiber=%d+ listening on unix:" .. proc.lit(path), 10, before), p:describe())
    assert.is_nil(p:stderr():find("in use", before, true), p:describe())
    for i = 1, 10 do assert.equals("r" .. i, ask(address, "r" .. i)) end
    p:signal("TERM")
    assert.equals(0, p:wait_exit(8), p:describe())
    assert.equals("socket", proc.sh("stat -c %F " .. proc.quote(path)):match("socket"),
      "gsockd removed systemd's socket file")
  end)

  it("a unix socket passed by name; its file outlives gsockd, and the config's own path is never made", function()
    if skip_without_activate() then return end
    local dir = proc.tmpdir()
    local passed, own = proc.unix_path(dir, "passed"), proc.unix_path(dir, "own")
    local file = config(dir, "unix:" .. own)
    local p = activated(dir, file, { "-l", passed, "--fdname=echo" })
    assert.equals("hi", ask("unix:" .. passed, "hi"), p:describe())
    assert.equals("unix:" .. passed, p:listening()[1].address)
    assert.is_nil(io.open(own, "r"), "gsockd bound its own unix path")
    p:signal("TERM")
    assert.equals(0, p:wait_exit(5), p:describe())
    assert.equals("socket", proc.sh("stat -c %F " .. proc.quote(passed)):match("socket"),
      "gsockd removed systemd's socket file")
  end)
end)

describe("socket activation: bad descriptors", function()
  --- Runs `trigger` (the connection that makes systemd-socket-activate exec gsockd), then
  --- returns gsockd's exit status and stderr once it ended.
  local function failing(p, trigger)
    if trigger then trigger() end
    local status = p:wait_exit(8)
    return status, p:stderr(), p
  end

  it("a name no service has: exit 2, naming the descriptor and the name", function()
    if skip_without_activate() then return end
    local dir = proc.tmpdir()
    local port = proc.free_port()
    local p = activated(dir, config(dir, "127.0.0.1:" .. proc.free_port()), { "-l", "127.0.0.1:" .. port, "--fdname=nosuch" })
    local status, err = failing(p, function() proc.connect("127.0.0.1:" .. port) end)
    assert.equals(2, status, p:describe())
    assert.matches("fd 3 is named 'nosuch' %(LISTEN_FDNAMES%) but no service has that name %(the services: echo%)", err)
    assert.equals(0, #p:listen_lines())
  end)

  it("a UDP socket for a TCP service: exit 2", function()
    if skip_without_activate() then return end
    local dir = proc.tmpdir()
    local port = proc.free_port()
    local p = activated(dir, config(dir, "127.0.0.1:" .. proc.free_port()), { "-d", "-l", "127.0.0.1:" .. port, "--fdname=echo" })
    local status, err = failing(p, function()
      local u = proc.track(socket.udp())
      u:sendto("wake up", "127.0.0.1", port)
    end)
    assert.equals(2, status, p:describe())
    assert.matches("fd 3 %(named 'echo'%) for service echo is a UDP socket; a service needs a listening TCP or unix stream socket", err)
  end)

  it("a descriptor bound to no service's address and without a name: exit 2", function()
    if skip_without_activate() then return end
    local dir = proc.tmpdir()
    local port = proc.free_port()
    local p = activated(dir, config(dir, "127.0.0.1:" .. proc.free_port()), { "-l", "127.0.0.1:" .. port })
    local status, err = failing(p, function() proc.connect("127.0.0.1:" .. port) end)
    assert.equals(2, status, p:describe())
    assert.matches("fd 3 listens on 127%.0%.0%.1:" .. port .. ", which is no service's listen address", err)
  end)

  it("a descriptor that is not a socket: exit 2", function()
    local dir = proc.tmpdir()
    local own = proc.free_port()
    local p = proc.start({ "serve", config(dir, "127.0.0.1:" .. own) }, { cwd = dir, exec = {
      "sh", "-c", 'export LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=echo; exec "$@" 3</dev/null', "sh" } })
    local status, err = failing(p)
    assert.equals(2, status, p:describe())
    assert.matches("LISTEN_FDS: fd 3 %(named 'echo'%) for service echo is not a socket", err)
    assert.truthy(refused("127.0.0.1:" .. own), "gsockd bound its own address")
  end)

  it("a TCP socket that is not listening: exit 2", function()
    if not have_python then pending("python3 is not installed") return end
    local dir = proc.tmpdir()
    local script = proc.write(dir, "pass.py", [[
import os, socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
if s.fileno() != 3:
    os.dup2(s.fileno(), 3)
os.set_inheritable(3, True)
os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS="1")
os.execv(sys.argv[1], sys.argv[1:])
]])
    local p = proc.start({ "serve", config(dir, "127.0.0.1:" .. proc.free_port()) },
      { cwd = dir, exec = { "python3", script } })
    local status, err = failing(p)
    assert.equals(2, status, p:describe())
    assert.matches("LISTEN_FDS: fd 3 is a TCP socket that is not listening", err)
  end)

  it("LISTEN_FDNAMES with another count than LISTEN_FDS, or a LISTEN_FDS that is no number: exit 2", function()
    for _, case in ipairs({
      { "LISTEN_FDS=1 LISTEN_FDNAMES=echo:other", "LISTEN_FDNAMES names 2 descriptor%(s%) but LISTEN_FDS passes 1" },
      { "LISTEN_FDS=many", "LISTEN_FDS: 'many' is not a number of descriptors" },
    }) do
      local dir = proc.tmpdir()
      local p = proc.start({ "serve", config(dir, "127.0.0.1:" .. proc.free_port()) }, { cwd = dir, exec = {
        "sh", "-c", "export LISTEN_PID=$$ " .. case[1] .. '; exec "$@" 3</dev/null', "sh" } })
      assert.equals(2, p:wait_exit(5), p:describe())
      assert.matches(case[2], p:stderr())
    end
  end)

  it("LISTEN_PID of another process: the descriptors are ignored (as sd_listen_fds does) and the config's addresses bound", function()
    local dir = proc.tmpdir()
    local own = proc.free_port()
    local p = proc.start({ "serve", config(dir, "127.0.0.1:" .. own) }, { cwd = dir, exec = {
      "sh", "-c", 'export LISTEN_PID=1 LISTEN_FDS=1 LISTEN_FDNAMES=echo; exec "$@" 3</dev/null', "sh" } })
    assert.equals("127.0.0.1:" .. own, p:listening()[1].address)
    assert.equals("hi", ask("127.0.0.1:" .. own, "hi"))
    assert.matches("LISTEN_FDS=1 is for pid 1, not this process %(pid %d+%): the descriptors are not used", p:stderr())
    assert.equals("LISTEN_FDS=nil LISTEN_PID=nil LISTEN_FDNAMES=nil GSOCKD_LISTEN=nil", ask("127.0.0.1:" .. own, "env"))
    p:signal("TERM")
    assert.equals(0, p:wait_exit(5), p:describe())
  end)
end)
