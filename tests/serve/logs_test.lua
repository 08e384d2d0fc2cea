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
