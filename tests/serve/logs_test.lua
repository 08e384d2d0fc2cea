-- Logs (SPEC §9): one line per event on stderr with a millisecond timestamp, the level,
-- service, worker (when there are several), fiber and peer; `--log-format json` (or
-- log_format in the config) writes one JSON object per line; `--log-level` on every
-- command; gsock.log(level, message [, fields]) for Lua code.
local gsock = require "gsock"
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/serve/"
local proc = dofile(here .. "support/proc.lua")

after_each(proc.cleanup)

local HANDLER = [[
local gsock = require "gsock"
return function(sock)
  local line = sock:receive("*l")
  if line == "raise" then error("boom-7d1") end
  gsock.log("info", "handled " .. tostring(line), { user = "ada", count = 3 })
  gsock.log("debug", "debug-detail-2b4")
  sock:send("ok\n")
end
]]

--- The JSON objects of `text`'s lines, decoded by python3's json (a real parser);
--- raises naming a line that is not one.
local function json_lines(text)
  local path = os.tmpname()
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  local p = assert(io.popen(("python3 -c %s %s"):format(proc.quote([[
import json, sys
for n, line in enumerate(open(sys.argv[1], encoding="utf-8"), 1):
    line = line.rstrip("\n")
    if not line or not line.startswith("{"):
        continue
    try:
        o = json.loads(line)
    except ValueError as e:
        print("BAD %d %s" % (n, e)); continue
    print("\t".join("%s=%s" % (k, str(o[k]).replace("\n", "\\n").replace("\t", "\\t")) for k in sorted(o)))
]]), proc.quote(path))))
  local out = p:read("a")
  p:close()
  os.remove(path)
  local objects = {}
  for line in out:gmatch("[^\n]+") do
    assert(not line:find("^BAD"), "a log line is not JSON: " .. line)
    local o = {}
    for k, v in line:gmatch("([^=\t]+)=([^\t]*)") do o[k] = v end
    objects[#objects + 1] = o
  end
  return objects
end

local function find(objects, field, pattern)
  for _, o in ipairs(objects) do
    if o[field] and o[field]:find(pattern) then return o end
  end
end

--- Serves HANDLER with `gsockd run` and `args`, makes a request that logs and one that
--- raises, drains; returns what it wrote on stderr.
local function serve_two_requests(args)
  local dir = proc.tmpdir()
  local file = proc.write(dir, "h.lua", HANDLER)
  local argv = { "run", file, "--listen", "127.0.0.1:0" }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local p = proc.start(argv, { cwd = dir })
  local address = p:listening()[1].address
  assert.equals("ok", proc.request(address, "x"))
  proc.request(address, "raise")
  assert.is_truthy(p:wait_stderr("boom%-7d1", 3), p:describe())
  p:signal("TERM")
  assert.equals(0, p:wait_exit(5), p:describe())
  return p:stderr()
end

describe("log lines", function()
  it("text: millisecond timestamps, level, the fields, then the message; a traceback on its own lines", function()
    local err = serve_two_requests({})
    assert.matches("\n?%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ info service=h fiber=%d+ listening on 127%.0%.0%.1:%d+\n", err)
    assert.matches("%.%d%d%dZ info service=h fiber=%d+ peer=127%.0%.0%.1:%d+ count=3 user=ada handled x\n", err)
    assert.matches("%.%d%d%dZ error service=h fiber=%d+ peer=127%.0%.0%.1:%d+ handler failed: [^\n]*h%.lua:4: boom%-7d1\n"
      .. "stack traceback:\n\t%[C%]: in function 'error'\n", err)
    assert.is_nil(err:find("debug-detail-2b4", 1, true), "a debug line at --log-level info")
    assert.is_nil(err:find("[GSock]", 1, true), err)
    assert.is_nil(err:find("h: handler failed", 1, true), "the service named twice")
  end)

  it("json (--log-format json): one object per line with ts, level, msg, service, fiber, peer, traceback and the fields given", function()
    local err = serve_two_requests({ "--log-format", "json", "--log-level", "debug" })
    local objects = json_lines(err)
    local handled = assert(find(objects, "msg", "^handled x$"), err)
    assert.equals("info", handled.level)
    assert.equals("ada", handled.user)
    assert.equals("h", handled.service)
    assert.matches("^127%.0%.0%.1:%d+$", handled.peer)
    assert.equals("3", handled.count)
    assert.matches("^%d+$", handled.fiber)
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$", handled.ts)
    assert.is_truthy(find(objects, "msg", "^debug%-detail%-2b4$"), "--log-level debug shows debug lines")
    local failed = assert(find(objects, "msg", "^handler failed: .*h%.lua:4: boom%-7d1$"), err)
    assert.equals("error", failed.level)
    assert.equals("h", failed.service)
    assert.matches("^127%.0%.0%.1:%d+$", failed.peer)
    assert.matches("^stack traceback:\\n\\t%[C%]: in function 'error'", failed.traceback)
  end)

  it("workers: each worker's lines carry its number", function()
    local dir = proc.tmpdir()
    proc.write(dir, "h.lua", HANDLER)
    local config = proc.write(dir, "gsockd.toml", ([[
workers = 2
log_format = "json"
[services.w]
listen = "127.0.0.1:%d"
handler = "h.lua"
]]):format(proc.free_port()))
    local p = proc.start({ "serve", config }, { cwd = dir })
    p:listening()
    local deadline = proc.now() + 5
    local seen = {}
    repeat
      gsock.sleep(0.1)
      for _, o in ipairs(json_lines(p:stderr())) do
        if o.msg and o.msg:find("^listening on") then seen[o.worker or "none"] = true end
      end
    until (seen["1"] and seen["2"]) or proc.now() > deadline
    assert.is_true(seen["1"] and seen["2"], "listening lines of workers 1 and 2\n" .. p:describe())
  end)

  it("an unknown --log-format or --log-level is bad usage on every command, exit 2 naming it", function()
    for _, argv in ipairs({ { "run", "x.lua", "--log-format", "xml" }, { "serve", "--log-format", "xml" },
                            { "check", "--log-level", "loud" }, { "test", "--log-level", "loud" } }) do
      local p = proc.start(argv, { cwd = proc.tmpdir() })
      assert.equals(2, p:wait_exit(5), p:describe())
      assert.matches("%-%-log%-%a+ must be", p:stderr())
    end
  end)

  it("a bad log_format in a config is a config error naming the key", function()
    local dir = proc.tmpdir()
    proc.write(dir, "h.lua", HANDLER)
    local config = proc.write(dir, "gsockd.toml", 'log_format = "xml"\n[services.w]\nlisten = "127.0.0.1:1"\nhandler = "h.lua"\n')
    local p = proc.start({ "check", config }, { cwd = dir })
    assert.equals(2, p:wait_exit(5), p:describe())
    assert.matches("log_format", p:stderr())
  end)
end)

-- Handlers whose errors are logged: a runtime error in a helper (no error() call), error()
-- itself, and an HTTP handler's.
local FAILING = [[
local function helper(line)
  if line == "raise" then error("raised-5e2") end
  local t = nil
  return t.field
end
return function(sock)
  local line = sock:receive("*l")
  helper(line)
end
]]
local FAILING_HTTP = [[
return { protocol = "http", handle = function(req, res)
  local t = nil
  return t.http_field
end }
]]

--- The "stack traceback:" lines that follow the log line matching `pattern` in `err`.
local function traceback_after(err, pattern)
  local at = assert(err:find(pattern), "no log line matching " .. pattern .. "\n" .. err)
  local lines = {}
  local rest = err:sub(at):match("\nstack traceback:\n(.-)\n%d%d%d%d%-") or err:sub(at):match("\nstack traceback:\n(.*)$")
  for line in assert(rest, "no traceback after " .. pattern .. "\n" .. err):gmatch("[^\n]+") do
    lines[#lines + 1] = line
  end
  return lines
end

describe("tracebacks and the drain line", function()
  it("a handler's error: the traceback's first frame is the handler's file and line (TCP and HTTP), and no frame is gsockd's own Lua", function()
    local dir = proc.tmpdir()
    local tcp, http = proc.write(dir, "tcp.lua", FAILING), proc.write(dir, "web.lua", FAILING_HTTP)
    local a, b = proc.free_port(), proc.free_port()
    local config = proc.write(dir, "gsockd.toml", ([[
[services.tcp]
listen = "127.0.0.1:%d"
handler = "tcp.lua"
[services.web]
listen = "127.0.0.1:%d"
handler = "web.lua"
protocol = "http"
]]):format(a, b))
    local p = proc.start({ "serve", config }, { cwd = dir })
    p:listening(2)
    proc.request("127.0.0.1:" .. a, "x")
    proc.request("127.0.0.1:" .. a, "raise")
    assert.equals(500, (proc.http_get("127.0.0.1:" .. b, "/")))
    assert.truthy(p:wait_stderr("web%.lua:3: attempt", 3), p:describe())
    assert.truthy(p:wait_stderr("raised%-5e2", 3), p:describe())
    p:signal("TERM")
    assert.equals(0, p:wait_exit(5), p:describe())
    local err = p:stderr()
    local runtime = traceback_after(err, "handler failed: [^\n]*tcp%.lua:4: attempt to index")
    assert.equals("\t" .. tcp .. ":4: in upvalue 'helper'", runtime[1], err)
    assert.equals("\t" .. tcp .. ":8: in function <" .. tcp .. ":6>", runtime[2], err)
    assert.equals(2, #runtime, err)
    -- error() is a C function the handler called: its frame, then the handler's line
    local raised = traceback_after(err, "handler failed: [^\n]*tcp%.lua:2: raised%-5e2")
    assert.equals("\t[C]: in function 'error'", raised[1], err)
    assert.equals("\t" .. tcp .. ":2: in upvalue 'helper'", raised[2], err)
    local web = traceback_after(err, "handler failed: [^\n]*web%.lua:3: attempt to index")
    assert.matches("^\t" .. proc.lit(http) .. ":3: in ", web[1], err)
    for _, tb in ipairs({ runtime, raised, web }) do
      for _, line in ipairs(tb) do
        assert.is_nil(line:find("server%.lua") or line:find("serve%.lua") or line:find("http%.lua"),
          "a frame of gsockd's own Lua: " .. line)
      end
    end
  end)

  it("an HTTP handler's failure names the request, also when the handler is a callable table or replaced its arguments", function()
    local dir = proc.tmpdir()
    local web = proc.write(dir, "web.lua", [[
local callable = setmetatable({}, { __call = function(self, req, res)
  error("table handler broke")
end })
return { protocol = "http", handle = function(req, res)
  if req.path == "/table" then return callable(req, res) end
  if req.path == "/replaced" then
    req, res = nil, nil
    error("arguments gone")
  end
  return 200, "fine"
end }
]])
    local tabled = proc.write(dir, "tabled.lua", [[
return { protocol = "http", handle = setmetatable({}, { __call = function(self, req, res)
  if req.path == "/raise" then error("callable handler broke") end
  return 200, "called"
end }) }
]])
    local p = proc.start({ "run", web, "--listen", "127.0.0.1:0" }, { cwd = dir })
    local address = p:listening()[1].address
    local q = proc.start({ "run", tabled, "--listen", "127.0.0.1:0" }, { cwd = dir })
    local qaddress = q:listening()[1].address
    assert.equals(500, (proc.http_get(address, "/table")))
    assert.equals(500, (proc.http_get(address, "/replaced")))
    assert.equals(500, (proc.http_get(qaddress, "/raise")))
    assert.equals("called", select(2, proc.http_get(qaddress, "/")))
    assert.equals("fine", select(2, proc.http_get(address, "/")))
    assert.truthy(p:wait_stderr("arguments gone", 3), p:describe())
    assert.truthy(q:wait_stderr("callable handler broke", 3), q:describe())
    local err, qerr = p:stderr(), q:stderr()
    assert.matches('request="GET /table HTTP/1%.0" handler failed: [^\n]*web%.lua:2: table handler broke', err)
    assert.matches('request="GET /raise HTTP/1%.0" handler failed: [^\n]*tabled%.lua:2: callable handler broke', qerr)
    -- its arguments gone, the request is not named, but the error and its traceback are
    assert.matches('peer=127%.0%.0%.1:%d+ handler failed: [^\n]*web%.lua:8: arguments gone', err)
    local replaced = traceback_after(err, "web%.lua:8: arguments gone")
    assert.equals("\t[C]: in function 'error'", replaced[1], err)
    assert.matches("^\t" .. proc.lit(web) .. ":8: in ", replaced[2], err)
  end)

  local DRAINING = [[
local gsock = require "gsock"
return function(sock)
  local line = sock:receive("*l")
  sock:send("started\n")
  if line == "nap" then gsock.sleep(0.5) else gsock.sleep(30) end
  sock:send("done\n")
end
]]

  it("a drain ends with one line: connections finished and killed, over every service", function()
    local dir = proc.tmpdir()
    proc.write(dir, "d.lua", DRAINING)
    local config = proc.write(dir, "gsockd.toml", ([[
shutdown_timeout = 1
[services.one]
listen = "127.0.0.1:%d"
handler = "d.lua"
[services.two]
listen = "127.0.0.1:%d"
handler = "d.lua"
]]):format(proc.free_port(), proc.free_port()))
    local p = proc.start({ "serve", config }, { cwd = dir })
    local l = p:listening(2)
    local clients = {}
    for _, want in ipairs({ { l[1], "nap" }, { l[1], "hang" }, { l[2], "hang" } }) do
      local c = assert(proc.connect(want[1], 5))
      c:send(want[2] .. "\n")
      assert.equals("started", c:receive("*l"))
      clients[#clients + 1] = c
    end
    p:signal("TERM")
    assert.equals("done", clients[1]:receive("*l"))
    assert.equals(0, p:wait_exit(5), p:describe())
    local err = p:stderr()
    local _, lines = err:gsub("drained:", "")
    assert.equals(1, lines, "one drain line\n" .. err)
    assert.matches("notice [^\n]*drained: 1 connection%(s%) finished, 2 killed[^\n]*\n", err)
    assert.matches("drained: [^\n]*one: 1 finished, 1 killed; two: 0 finished, 1 killed", err)
  end)

  it("a drain with no connection open ends with its line too", function()
    local dir = proc.tmpdir()
    proc.write(dir, "d.lua", DRAINING)
    local config = proc.write(dir, "gsockd.toml", ([[
[services.one]
listen = "127.0.0.1:%d"
handler = "d.lua"
]]):format(proc.free_port()))
    local p = proc.start({ "serve", config }, { cwd = dir })
    p:listening()
    p:signal("TERM")
    assert.equals(0, p:wait_exit(5), p:describe())
    assert.matches("notice [^\n]*drained: 0 connection%(s%) finished, 0 killed", p:stderr())
  end)
end)
