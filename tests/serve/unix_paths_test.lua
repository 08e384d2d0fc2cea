-- unix: listeners and what is at their path (SPEC §6): a socket file nobody listens on
-- is replaced; anything else is an error that names it, and nothing of the user's is
-- ever deleted: not a regular file, not a directory, not a live socket, not a socket
-- file that replaced ours while we served.
local gsock = require "gsock"
local unix = require "socket.unix"
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/serve/"
local proc = dofile(here .. "support/proc.lua")

after_each(proc.cleanup)

local function run_on(path)
  local dir = proc.tmpdir()
  local file = proc.write(dir, "echo.lua", proc.ECHO)
  return proc.start({ "run", file, "--listen", "unix:" .. path }, { cwd = dir })
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return os.execute("test -e " .. proc.quote(path)) == true
end

describe("a unix: listen path", function()
  it("holding a regular file: exit 1 naming it, the file and its data left as they were", function()
    local dir = proc.tmpdir()
    local path = proc.write(dir, "data.sock", "precious data\n")
    local p = run_on(path)
    assert.equals(1, p:wait_exit(5), p:describe())
    assert.matches("unix:" .. proc.lit(path) .. ": a regular file is there, not a socket", p:stderr())
    assert.equals("precious data\n", proc.slurp(path))
  end)

  it("holding a directory: exit 1 naming it, the directory left", function()
    local dir = proc.tmpdir()
    local path = dir .. "/adir"
    os.execute("mkdir " .. proc.quote(path))
    local p = run_on(path)
    assert.equals(1, p:wait_exit(5), p:describe())
    assert.matches("unix:" .. proc.lit(path) .. ": a directory is there, not a socket", p:stderr())
    assert.is_true(os.execute("test -d " .. proc.quote(path)) == true)
  end)

  it("in a directory that does not exist: exit 1 saying which", function()
    local dir = proc.tmpdir()
    local path = dir .. "/missing/x.sock"
    local p = run_on(path)
    assert.equals(1, p:wait_exit(5), p:describe())
    assert.matches("the directory " .. proc.lit(dir .. "/missing") .. " does not exist", p:stderr())
  end)

  it("holding a live socket: exit 1 'in use', the other listener keeps serving", function()
    local path = proc.unix_path(proc.tmpdir(), "live")
    local other = proc.track(unix.stream())
    assert(other:bind(path))
    assert(other:listen(8))
    local p = run_on(path)
    assert.equals(1, p:wait_exit(5), p:describe())
    assert.matches("address already in use", p:stderr())
    local c = proc.track(unix.stream())
    c:settimeout(2)
    assert.is_truthy(c:connect(path), "the other process's socket file was removed")
    local accepted = other:accept()
    assert.is_not_nil(accepted)
    accepted:close()
  end)

  it("holding a socket file nobody listens on (a dead server's): replaced and served; removed at exit", function()
    local path = proc.unix_path(proc.tmpdir(), "stale")
    local dead = unix.stream()
    assert(dead:bind(path))
    dead:close()
    assert.is_true(exists(path))
    local p = run_on(path)
    local l = p:listening()
    assert.equals("hi", proc.request(l[1].address, "hi"))
    p:signal("TERM")
    assert.equals(0, p:wait_exit(5), p:describe())
    assert.is_false(exists(path), "gsockd left its socket file behind")
  end)

  it("replaced while serving by another's socket: that socket is not removed at exit", function()
    local path = proc.unix_path(proc.tmpdir(), "swap")
    local p = run_on(path)
    p:listening()
    os.remove(path)
    local other = proc.track(unix.stream())
    assert(other:bind(path))
    assert(other:listen(8))
    p:signal("TERM")
    assert.equals(0, p:wait_exit(5), p:describe())
    assert.is_true(exists(path), "gsockd removed a socket file that was not its own")
  end)
end)
