-- Signals (SPEC §6, §9): SIGTERM/SIGINT stop accepting, drain open connections up to
-- shutdown_timeout and exit 0; SIGHUP reloads config and handlers without dropping
-- connections or closing listeners (a bad new config keeps the old one serving);
-- SIGUSR1 (and gsock.dump()) writes every fiber, what it waits on and its traceback.
local gsock = require "gsock"
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/serve/"
local proc = dofile(here .. "support/proc.lua")

after_each(proc.cleanup)

--- Replaces a file atomically (a reload never reads half a file).
local function replace(path, text)
  local tmp = path .. ".new"
  local f = assert(io.open(tmp, "wb"))
  f:write(text)
  f:close()
  assert(os.rename(tmp, path))
end

--- A one-service config serving `handler_name` on 127.0.0.1:0; returns dir, config, handler path.
local function one_service(handler_source, extra_top, handler_name)
  local dir = proc.tmpdir()
  handler_name = handler_name or "handler.lua"
  local handler = proc.write(dir, handler_name, handler_source)
  local config = proc.write(dir, "gsockd.toml", (extra_top or "") .. ([[

[services.svc]
listen = "127.0.0.1:0"
handler = "%s"
]]):format(handler_name))
  return dir, config, handler
end

local SLOW = [[
return function(sock)
  local line = sock:receive("*l")
  if line == "slow" then
    sock:send("started\n")
    gsock.sleep(1.5)
    sock:send(("x"):rep(100000) .. "\nend\n")
  elseif line == "hang" then
    sock:send("started\n")
    gsock.sleep(60)
  elseif line then
    sock:send("pong\n")
  end
end
]]

describe("SIGTERM and SIGINT", function()
  it("SIGTERM on an idle server exits 0 promptly and closes the listener", function()
    local dir = proc.tmpdir()
    local file = proc.write(dir, "echo.lua", proc.ECHO)
    local p = proc.start({ "run", file, "--listen", "127.0.0.1:0" }, { cwd = dir })
    local l = p:listening()
    assert.equals("up", proc.request(l[1].address, "up"))
    p:signal("TERM")
    assert.equals(0, p:wait_exit(3), p:describe())
    local c, err = proc.connect(l[1], 1)
    assert.is_nil(c, "the listener is still open after exit")
    assert.equals("connection refused", err)
  end)

  it("SIGINT on an idle server exits 0", function()
    local dir = proc.tmpdir()
    local file = proc.write(dir, "echo.lua", proc.ECHO)
    local p = proc.start({ "run", file, "--listen", "127.0.0.1:0" }, { cwd = dir })
    local l = p:listening()
    assert.equals("up", proc.request(l[1].address, "up"))
    p:signal("INT")
    assert.equals(0, p:wait_exit(3), p:describe())
  end)

  local function run_slow(shutdown_timeout)
    local dir = proc.tmpdir()
    local file = proc.write(dir, "slow.lua", SLOW)
    return proc.start({ "run", file, "--listen", "127.0.0.1:0", "--shutdown-timeout", tostring(shutdown_timeout) },
                      { cwd = dir })
  end

  local function serve_slow(shutdown_timeout)
    local dir, config = one_service(SLOW, ("shutdown_timeout = %d\n"):format(shutdown_timeout))
    return proc.start({ "serve", config }, { cwd = dir })
  end

  --- With shutdown_timeout = 5.
  local function check_drain(p)
    local l = p:listening()
    local c = assert(proc.connect(l[1], 6))
    assert(c:send("slow\n"))
    assert.equals("started", c:receive("*l"))
    local t0 = proc.now()
    p:signal("TERM")
    local reader = proc.spawn(function() return c:receive("*a") end)
    gsock.sleep(0.3)
    -- draining: a new connection is not served (refused, or left unanswered)
    local reply = proc.request(l[1].address, "ping", 0.5)
    assert.are_not.equal("pong", reply, "a new connection was served after SIGTERM")
    assert.is_true(p:alive(), "gsockd exited before the slow connection finished\n" .. p:describe())
    local ok, data, err = reader:join(5), reader:get()
    assert.is_true(ok)
    assert.equals(("x"):rep(100000) .. "\nend\n", data, "the slow client did not get its full answer: " .. tostring(err))
    local status = p:wait_exit(5)
    local took = proc.now() - t0
    assert.equals(0, status, p:describe())
    assert.is_true(took >= 1.0, ("exited %.2f s after SIGTERM, before the slow answer could be written"):format(took))
    assert.is_true(took <= 5.5, ("took %.2f s to exit, past shutdown_timeout = 5"):format(took))
  end

  it("SIGTERM lets an open slow connection finish, stops accepting, exits 0 within shutdown_timeout (serve)", function()
    check_drain(serve_slow(5))
  end)

  it("SIGTERM lets an open slow connection finish, stops accepting, exits 0 within shutdown_timeout (run)", function()
    check_drain(run_slow(5))
  end)

  --- With shutdown_timeout = 1.
  local function check_drain_timeout(p)
    local l = p:listening()
    local c = assert(proc.connect(l[1], 6))
    assert(c:send("hang\n"))
    assert.equals("started", c:receive("*l"))
    local t0 = proc.now()
    p:signal("TERM")
    local data, err = c:receive("*l")
    assert.is_nil(data)
    assert.are_not.equal("timeout", err)
    local status = p:wait_exit(4)
    local took = proc.now() - t0
    assert.is_not_nil(status, "gsockd did not exit after shutdown_timeout\n" .. p:describe())
    assert.matches("drained: 0 connection%(s%) finished, 1 killed", p:stderr())
    assert.is_true(took >= 0.8, ("exited %.2f s after SIGTERM, without waiting shutdown_timeout"):format(took))
    assert.is_true(took <= 3.5, ("took %.2f s to exit with shutdown_timeout = 1"):format(took))
  end

  it("SIGTERM with a connection that outlives shutdown_timeout: exits soon after it, the client sees the close (serve)", function()
    check_drain_timeout(serve_slow(1))
  end)

  it("SIGTERM with a connection that outlives shutdown_timeout: exits soon after it, the client sees the close (run)", function()
    check_drain_timeout(run_slow(1))
  end)
end)

-- Finding A of the reliability issue: a server whose open-connection count had come back
-- to 0 once (after a first request) took itself for drained at the next SIGTERM and
-- dropped every request then in flight.
local NAPPING = [[
return function(sock)
  local line = sock:receive("*l")
  if line == "nap" then gsock.sleep(1.5) end
  if line then sock:send("done:" .. line .. "\n") end
end
]]

--- Makes one request that completes, then opens `n` that nap, sends SIGTERM while they
--- nap, and checks that all `n` are answered and the process exits 0.
local function check_drain_after_traffic(p, address, n)
  assert.equals("done:first", proc.request(address, "first"))
  local clients = {}
  for i = 1, n do
    local c = assert(proc.connect(address, 6))
    assert(c:send("nap\n"))
    clients[i] = c
  end
  gsock.sleep(0.3)
  p:signal("TERM")
  local replies = {}
  for i, c in ipairs(clients) do
    local reply, err = c:receive("*l")
    replies[i] = reply or ("nil, " .. tostring(err))
  end
  for i = 1, n do assert.equals("done:nap", replies[i], p:describe()) end
  assert.equals(0, p:wait_exit(5), p:describe())
  return p:stderr()
end

describe("draining after earlier connections came and went (SIGTERM)", function()
  it("every request in flight finishes (run)", function()
    local dir = proc.tmpdir()
    local file = proc.write(dir, "nap.lua", NAPPING)
    local p = proc.start({ "run", file, "--listen", "127.0.0.1:0", "--shutdown-timeout", "5" }, { cwd = dir })
    local log = check_drain_after_traffic(p, p:listening()[1].address, 5)
    assert.matches("drained: 5 connection%(s%) finished, 0 killed", log)
  end)

  it("every request in flight finishes (serve)", function()
    local dir, config = one_service(NAPPING, "shutdown_timeout = 5\n")
    local p = proc.start({ "serve", config }, { cwd = dir })
    check_drain_after_traffic(p, p:listening()[1].address, 5)
  end)

  it("every request in flight finishes (run, two workers)", function()
    local dir = proc.tmpdir()
    local file = proc.write(dir, "nap.lua", NAPPING)
    local p = proc.start({ "run", file, "--listen", "127.0.0.1:" .. proc.free_port(), "--workers", "2",
                           "--shutdown-timeout", "5" }, { cwd = dir })
    local address = p:listening()[1].address
    for _ = 1, 20 do assert.equals("done:warm", proc.request(address, "warm")) end
    check_drain_after_traffic(p, address, 6)
  end)

  it("every request in flight finishes (serve, two workers)", function()
    local dir, config = one_service(NAPPING, "shutdown_timeout = 5\nworkers = 2\n")
    local text = proc.slurp(config):gsub("127%.0%.0%.1:0", "127.0.0.1:" .. proc.free_port())
    proc.write(dir, "gsockd.toml", text)
    local p = proc.start({ "serve", config }, { cwd = dir })
    local address = p:listening()[1].address
    -- Each worker must have seen a connection come and go before the drain.
    for _ = 1, 20 do assert.equals("done:warm", proc.request(address, "warm")) end
    check_drain_after_traffic(p, address, 6)
  end)
end)

local function version_handler(v)
  return ([[
return function(sock)
  local line = sock:receive("*l")
  if line then sock:send(%q .. "\n") end
end
]]):format(v)
end

--- Starts a server on `source` (a handler file named `name`, default handler.lua)
--- with `gsockd serve` (mode "serve", one service, workers = 1) or `gsockd run`
--- (mode "run"); returns the process, its address, the handler path and the config path.
local function start_reloadable(mode, source, name)
  if mode == "serve" then
    local dir, config, handler = one_service(source, "workers = 1\nshutdown_timeout = 5\n", name)
    local p = proc.start({ "serve", config }, { cwd = dir })
    return p, p:listening()[1].address, handler, config
  end
  local dir = proc.tmpdir()
  local handler = proc.write(dir, name or "handler.lua", source)
  local p = proc.start({ "run", handler, "--listen", "127.0.0.1:0" }, { cwd = dir })
  return p, p:listening()[1].address, handler
end

local function versioned(v)
  return ([[
return function(sock)
  while true do
    local line = sock:receive("*l")
    if not line then return end
    sock:send(%q .. ":" .. line .. "\n")
  end
end
]]):format(v)
end

for _, mode in ipairs({ "serve", "run" }) do
  describe("SIGHUP (" .. mode .. ")", function()
    it("reloads under load without a failed request; the new code answers afterwards", function()
      local p, address, handler = start_reloadable(mode, version_handler("v1"))
      assert.equals("v1", proc.request(address, "x"))
      local stop = false
      local counts = { total = 0, v1 = 0, v2 = 0, failed = 0 }
      local failures = {}
      local clients = {}
      for i = 1, 8 do
        clients[i] = proc.spawn(function()
          while not stop do
            local reply, err = proc.request(address, "x", 3)
            counts.total = counts.total + 1
            if reply == "v1" or reply == "v2" then
              counts[reply] = counts[reply] + 1
            else
              counts.failed = counts.failed + 1
              if #failures < 5 then failures[#failures + 1] = tostring(reply) .. " / " .. tostring(err) end
            end
            gsock.sleep(0.01)
          end
        end)
      end
      gsock.sleep(0.8)
      replace(handler, version_handler("v2"))
      p:signal("HUP")
      gsock.sleep(1.4)
      stop = true
      assert.is_true(#gsock.joinall(clients, 5) == #clients, "client fibers did not finish")
      local summary = ("%d requests: %d v1, %d v2, %d failed %s"):format(
        counts.total, counts.v1, counts.v2, counts.failed, table.concat(failures, "; "))
      assert.equals(0, counts.failed, summary .. "\n" .. p:describe())
      assert.is_true(counts.total >= 300, "the load was too light to mean anything: " .. summary)
      assert.is_true(p:alive(), p:describe())
      assert.equals("v2", proc.request_until(address, "x", "v2", 3), "the new handler does not answer: " .. summary)
    end)

    it("open connections finish on the old code, new ones get the new code, same listener", function()
      local p, address, handler = start_reloadable(mode, versioned("old"))
      local open = assert(proc.connect(address, 5))
      assert(open:send("a\n"))
      assert.equals("old:a", open:receive("*l"))
      replace(handler, versioned("new"))
      p:signal("HUP")
      assert.equals("new:b", proc.request_until(address, "b", "new:b", 3), p:describe())
      assert(open:send("c\n"))
      assert.equals("old:c", open:receive("*l"), "the open connection was not left on the old code")
    end)

    it("a handler that no longer compiles is reported, the old one keeps serving", function()
      local p, address, handler = start_reloadable(mode, version_handler("v1"), "hup_handler.lua")
      assert.equals("v1", proc.request(address, "x"))
      local before = #p:stderr()
      replace(handler, "return function(sock)\n  sock:send(\nend\n")
      p:signal("HUP")
      assert.is_not_nil(p:wait_stderr("hup_handler%.lua:%d+:", 3, before + 1),
        "the compile error of the new handler is not reported\n" .. p:describe())
      assert.is_true(p:alive(), p:describe())
      for _ = 1, 5 do assert.equals("v1", proc.request(address, "x")) end
      -- and a fixed handler is picked up by the next reload
      replace(handler, version_handler("v3"))
      p:signal("HUP")
      assert.equals("v3", proc.request_until(address, "x", "v3", 3))
    end)
  end)
end

describe("SIGHUP (serve config)", function()
  it("a bad new config is reported, the old one keeps serving", function()
    local p, address, _, config = start_reloadable("serve", version_handler("v1"))
    assert.equals("v1", proc.request(address, "x"))
    local before = #p:stderr()
    replace(config, [[
[services.svc]
listen = "127.0.0.1:0"
handler = "handler.lua"
max_connections = "not a number"
]])
    p:signal("HUP")
    assert.is_not_nil(p:wait_stderr("max_connections", 3, before + 1),
      "the bad config is not reported\n" .. p:describe())
    assert.is_true(p:alive(), p:describe())
    for _ = 1, 5 do assert.equals("v1", proc.request(address, "x")) end
  end)

  it("a changed env reaches init(config) after the reload", function()
    local dir = proc.tmpdir()
    proc.write(dir, "greet.lua", [[
      local greeting
      return {
        init = function(config) greeting = config.env and config.env.greeting end,
        handle = function(sock) if sock:receive("*l") then sock:send(tostring(greeting) .. "\n") end end,
      }
    ]])
    local function cfg(greeting)
      return ([[
workers = 1
[services.greet]
listen = "127.0.0.1:0"
handler = "greet.lua"
[services.greet.env]
greeting = %q
]]):format(greeting)
    end
    local config = proc.write(dir, "gsockd.toml", cfg("hello-1"))
    local p = proc.start({ "serve", config }, { cwd = dir })
    local address = p:listening()[1].address
    assert.equals("hello-1", proc.request(address, "x"))
    replace(config, cfg("hello-2"))
    p:signal("HUP")
    assert.equals("hello-2", proc.request_until(address, "x", "hello-2", 3), p:describe())
  end)
end)

describe("SIGUSR1 and gsock.dump()", function()
  it("SIGUSR1 writes every fiber with what it waits on and its traceback; the server goes on", function()
    local dir = proc.tmpdir()
    local file = proc.write(dir, "dumped.lua", [[
local function sleepy_inner_4d2() gsock.sleep(60) end
local function wait_for_client_line_7c1(sock)
  local line = sock:receive("*l")
  return line
end
return function(sock)
  local line = sock:receive("*l")
  if line == "park" then
    gsock.spawn(function() sleepy_inner_4d2() end)
    sock:send("parked\n")
    wait_for_client_line_7c1(sock)
  elseif line then
    sock:send(line .. "\n")
  end
end
]])
    local p = proc.start({ "run", file, "--listen", "127.0.0.1:0" }, { cwd = dir })
    local l = p:listening()
    local c = assert(proc.connect(l[1]))
    assert(c:send("park\n"))
    assert.equals("parked", c:receive("*l"))
    gsock.sleep(0.05)
    local before = #p:stderr()
    p:signal("USR1")
    assert.is_not_nil(p:wait_stderr("wait_for_client_line_7c1", 3, before + 1),
      "the dump does not show the handler fiber's traceback\n" .. p:describe())
    assert.is_not_nil(p:wait_stderr("sleepy_inner_4d2", 1, before + 1),
      "the dump does not show the sleeping fiber\n" .. p:describe())
    local dump = p:stderr():sub(before + 1)
    assert.matches("dumped%.lua:%d+", dump)
    assert.is_not_nil(dump:lower():find("fd", 1, true), "the dump does not say a fiber waits on a descriptor:\n" .. dump)
    assert.is_true(dump:lower():find("timer", 1, true) ~= nil or dump:lower():find("sleep", 1, true) ~= nil,
      "the dump does not say a fiber waits on a timer:\n" .. dump)
    assert.is_true(p:alive(), "SIGUSR1 killed the server\n" .. p:describe())
    assert.equals("after-dump", proc.request(l[1].address, "after-dump"))
  end)

  it("gsock.dump() in a script writes the fibers and what they wait on", function()
    local dir = proc.tmpdir()
    local file = proc.write(dir, "dump_script.lua", [[
local function parked_on_event_9a1(ev)
  ev:wait()
  return true
end
local ev = gsock.event()
local f = gsock.spawn(function() parked_on_event_9a1(ev) end)
gsock.sleep(0.05)
gsock.dump()
ev:set()
f:join()
print("script done")
]])
    local p = proc.start({ "run", file }, { cwd = dir })
    assert.equals(0, p:wait_exit(5), p:describe())
    local out = p:stderr() .. p:stdout()
    assert.matches("parked_on_event_9a1", out)
    assert.is_not_nil(out:lower():find("event", 1, true), out)
    assert.matches("script done", p:stdout())
  end)
end)
