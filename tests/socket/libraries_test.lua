-- Unchanged libraries built on LuaSocket, running on gsockd's cooperative sockets
-- (SPEC §4): LuaSocket's own socket.http (with ltn12 and mime) and the redis-lua client
-- against a real redis-server started by the test.
--
-- Needs Debian's packages lua-socket (socket/http.lua, ltn12.lua, mime.lua on the
-- default package.path /usr/share/lua/5.4), lua-redis (redis.lua; Debian ships it only
-- in /usr/share/lua/5.1..5.3, which is looked up here) and redis-server. scripts/setup
-- installs them; without them these tests fail and say what is missing.
local gsock = require "gsock"
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/socket/"
local net = dofile(here .. "support/net.lua")
local socket = net.socket()

after_each(net.cleanup)

--- require(name), or an error naming the Debian package that provides it.
local function need(name, package_name)
  local ok, mod = pcall(require, name)
  if not ok then
    error(("%s is not available (%s): install Debian's %s (scripts/setup does)")
      :format(name, tostring(mod):match("^[^\n]*"), package_name), 2)
  end
  return mod
end

-- HTTP ----------------------------------------------------------------------------------

--- A small HTTP/1.1 server written with gsockd sockets. Routes: / (a greeting),
--- /slow (answers after 0.5 s), /big (1 MiB), /echo (returns the request body),
--- anything else 404. Every answer has Connection: close.
local function http_server()
  local server
  server = net.serve(function(c)
    c:settimeout(5)
    local request_line = c:receive()
    if not request_line then return end
    local method, path = request_line:match("^(%u+) (%S+) HTTP/1%.%d$")
    local headers = {}
    while true do
      local line = c:receive()
      if not line or line == "" then break end
      local k, v = line:match("^([^:]+):%s*(.*)$")
      if k then headers[k:lower()] = v end
    end
    local body = ""
    if headers["content-length"] then body = c:receive(tonumber(headers["content-length"])) or "" end
    server.requests = (server.requests or 0) + 1
    local status, answer = "200 OK", nil
    if path == "/" then
      answer = "hello from gsockd"
    elseif path == "/slow" then
      gsock.sleep(0.5)
      answer = "slow answer"
    elseif path == "/big" then
      answer = net.pattern_bytes(1024 * 1024, 3)
    elseif path == "/echo" then
      answer = method .. " " .. body
    else
      status, answer = "404 Not Found", "no such page"
    end
    c:send(("HTTP/1.1 %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n")
      :format(status, #answer))
    c:send(answer)
  end)
  server.url = "http://127.0.0.1:" .. server.port
  return server
end

describe("socket.http (LuaSocket's own module, unchanged)", function()
  it("request(url) returns the body, the code, the headers and the status line", function()
    local http = need("socket.http", "lua-socket")
    local server = http_server()
    local body, code, headers, status = http.request(server.url .. "/")
    assert.equals("hello from gsockd", body, tostring(code))
    assert.equals(200, code)
    assert.equals("17", headers["content-length"])
    assert.equals("HTTP/1.1 200 OK", status)
  end)

  it("the generic form with an ltn12 sink, a large body, and a 404", function()
    local http = need("socket.http", "lua-socket")
    local ltn12 = need("ltn12", "lua-socket")
    local server = http_server()
    local parts = {}
    local one, code = http.request({ url = server.url .. "/big", sink = ltn12.sink.table(parts) })
    assert.equals(1, one, tostring(code))
    assert.equals(200, code)
    local body = table.concat(parts)
    assert.equals(1024 * 1024, #body)
    assert.is_true(body == net.pattern_bytes(1024 * 1024, 3), "the 1 MiB body was corrupted")
    local b404, c404 = http.request(server.url .. "/nowhere")
    assert.equals(404, c404)
    assert.equals("no such page", b404)
  end)

  it("POST with a body (request(url, body))", function()
    local http = need("socket.http", "lua-socket")
    local server = http_server()
    local body, code = http.request(server.url .. "/echo", "a=1&b=2")
    assert.equals(200, code)
    assert.equals("POST a=1&b=2", body)
  end)

  it("a refused connection gives nil, 'connection refused'", function()
    local http = need("socket.http", "lua-socket")
    local srv, port = net.listen()
    srv:close()
    local body, err = http.request("http://127.0.0.1:" .. port .. "/")
    assert.is_nil(body)
    assert.equals("connection refused", err)
  end)

  it("two requests from two fibers to a 0.5 s endpoint finish in about 0.5 s together, not 1 s", function()
    local http = need("socket.http", "lua-socket")
    local server = http_server()
    local results = {}
    local t0 = net.now()
    local fibers = {}
    for i = 1, 2 do
      fibers[i] = net.spawn(function()
        local body, code = http.request(server.url .. "/slow")
        results[i] = { body, code, gsock.now() - t0 }
      end)
    end
    assert.equals(2, #gsock.joinall(fibers, 5))
    local elapsed = gsock.now() - t0
    for i = 1, 2 do
      assert.is_true(fibers[i]:successful(), tostring(fibers[i].error))
      assert.equals("slow answer", results[i][1])
      assert.equals(200, results[i][2])
    end
    assert.is_true(elapsed >= 0.45, "finished after " .. elapsed .. " s: did the server wait?")
    assert.is_true(elapsed < 0.9, "two 0.5 s requests took " .. elapsed .. " s: they did not overlap")
  end)

  it("a request blocks only its fiber", function()
    local http = need("socket.http", "lua-socket")
    local server = http_server()
    local ticks, done = 0, false
    local ticker = net.spawn(function() while not done do ticks = ticks + 1; gsock.sleep(0.01) end end)
    local body = http.request(server.url .. "/slow")
    done = true
    ticker:join(1)
    assert.equals("slow answer", body)
    assert.is_true(ticks >= 20, "another fiber ran only " .. ticks .. " times during a 0.5 s request")
  end)
end)

-- Redis ---------------------------------------------------------------------------------

--- redis-lua's module: Debian's lua-redis installs redis.lua for Lua 5.1-5.3 only.
local function load_redis()
  local path = package.searchpath("redis", package.path)
      or package.searchpath("redis", "/usr/share/lua/5.3/?.lua;/usr/share/lua/5.2/?.lua;/usr/share/lua/5.1/?.lua")
  if not path then
    error("redis.lua (redis-lua) is not installed: install Debian's lua-redis (scripts/setup does)", 2)
  end
  local chunk = assert(loadfile(path))
  return chunk("redis")
end

local function free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

--- QUIT, then close the socket (redis-lua's quit only shuts it down and leaves the
--- closing to the garbage collector).
local function bye(client)
  client:quit()
  client.network.socket:close()
end

local function shell_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

describe("redis-lua (unchanged) against a real redis-server", function()
  local redis, port, pid, logfile

  setup(function()
    redis = load_redis()
    local which = io.popen("command -v redis-server")
    local exe = which:read("l")
    which:close()
    if not exe or exe == "" then
      error("redis-server is not installed: install Debian's redis-server (scripts/setup does)")
    end
    port = free_port()
    logfile = os.tmpname()
    local cmd = ("%s --port %d --bind 127.0.0.1 --save '' --appendonly no --daemonize no >%s 2>&1 & echo $!")
      :format(shell_quote(exe), port, shell_quote(logfile))
    local p = io.popen(cmd)
    pid = tonumber(p:read("l"))
    p:close()
    assert(pid, "could not start redis-server")
    -- wait until it answers PING
    local deadline = net.now() + 5
    while true do
      local c = socket.connect("127.0.0.1", port)
      if c then
        c:settimeout(1)
        c:send("PING\r\n")
        local line = c:receive()
        c:close()
        if line == "+PONG" then break end
      end
      if gsock.now() > deadline then
        local f = io.open(logfile)
        local log = f and f:read("a") or ""
        if f then f:close() end
        error("redis-server did not answer on port " .. port .. " within 5 s:\n" .. log)
      end
      gsock.sleep(0.02)
    end
  end)

  teardown(function()
    if pid then
      os.execute("kill " .. pid .. " 2>/dev/null")
      -- wait (bounded) until it is gone, so that no server outlives the test run
      for _ = 1, 100 do
        if not os.execute("kill -0 " .. pid .. " 2>/dev/null") then break end
        gsock.sleep(0.02)
      end
      os.execute("kill -9 " .. pid .. " 2>/dev/null")
      pid = nil
    end
    if logfile then os.remove(logfile); logfile = nil end
  end)

  it("PING, SET and GET", function()
    local client = redis.connect("127.0.0.1", port)
    assert.is_true(client:ping())
    assert.is_true(client:set("gsockd:key", "value"))
    assert.equals("value", client:get("gsockd:key"))
    assert.is_nil(client:get("gsockd:missing"))
    bye(client)
  end)

  it("50 fibers doing INCR concurrently, each on its own connection, give 50", function()
    local setup_client = redis.connect("127.0.0.1", port)
    setup_client:del("gsockd:counter")
    local fibers, seen = {}, {}
    for i = 1, 50 do
      fibers[i] = net.spawn(function()
        local client = redis.connect("127.0.0.1", port)
        gsock.sleep(0.001 * (i % 5))           -- interleave the fibers
        seen[i] = client:incr("gsockd:counter")   -- (not seen[#seen + 1]: # is taken before the call waits)
        bye(client)
      end)
    end
    assert.equals(50, #gsock.joinall(fibers, 8))
    for i = 1, 50 do assert.is_true(fibers[i]:successful(), tostring(fibers[i].error)) end
    assert.equals("50", setup_client:get("gsockd:counter"))
    table.sort(seen)
    local expected = {}
    for i = 1, 50 do expected[i] = i end
    assert.same(expected, seen)
    bye(setup_client)
  end)

  it("a blocking command (BLPOP) blocks only its fiber", function()
    local a = redis.connect("127.0.0.1", port)
    local b = redis.connect("127.0.0.1", port)
    b:del("gsockd:queue")
    local got, ticks = nil, 0
    local popper = net.spawn(function() got = a:blpop("gsockd:queue", 3) end)
    local ticker = net.spawn(function() while not got do ticks = ticks + 1; gsock.sleep(0.01) end end)
    gsock.sleep(0.2)
    assert.is_nil(got)
    assert.is_true(ticks >= 10, "another fiber ran only " .. ticks .. " times while BLPOP waited")
    b:rpush("gsockd:queue", "item")
    assert.is_true(popper:join(2))
    assert.same({ "gsockd:queue", "item" }, got)
    ticker:join(1)
    bye(a); bye(b)
  end)

  it("a Redis error is raised by redis-lua as usual", function()
    local client = redis.connect("127.0.0.1", port)
    client:set("gsockd:text", "abc")
    assert.error_matches(function() client:incr("gsockd:text") end, "ERR value is not an integer")
    bye(client)
  end)
end)
