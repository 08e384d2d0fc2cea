-- HTTP services in config files (SPEC §6, §11): `protocol = "http"` and the limits are
-- checked like every key, all problems at once, with the file, the line and the key;
-- a good one is served.
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/http/"
local proc = dofile(here .. "../serve/support/proc.lua")
local wire = dofile(here .. "support/wire.lua")
after_each(proc.cleanup)

local HELLO = [[return function(req, res) return 200, "hi " .. req.path end]]

--- A temp dir with `handler` as hello.lua and a config serving it with `settings`;
--- returns the dir and the config's path.
local function http_service(settings, handler)
  local dir = proc.tmpdir()
  proc.write(dir, "hello.lua", handler or HELLO)
  return dir, proc.write(dir, "http.toml", '[services.web]\nlisten = "127.0.0.1:0"\nhandler = "hello.lua"\n' .. settings)
end

describe("HTTP services in a config", function()
  it("gsockd check reports a bad protocol, a bad limit, a bad timeout and a misspelt key, exit 2", function()
    local dir, config = http_service('protocol = "htttp"\nmax_body = "big"\nheader_timeout = -1\nmax_bodyy = 10\n')
    local p = proc.start({ "check", config }, { cwd = dir })
    assert.equals(2, p:wait_exit(5), p:describe())
    local err = p:stderr()
    for _, needle in ipairs({ "http.toml:4", "protocol", "http.toml:5", "max_body", "http.toml:6", "header_timeout",
                              "http.toml:7", "max_bodyy", "did you mean 'max_body'" }) do
      assert.truthy(err:find(needle, 1, true), ("'%s' is not in:\n%s"):format(needle, err))
    end
  end)

  it("gsockd check and serve refuse HTTP settings on a service without protocol = \"http\", naming each, exit 2", function()
    local dir, config = http_service('max_body = 10\naccess_log = true\n')
    for _, command in ipairs({ "check", "serve" }) do
      local p = proc.start({ command, config }, { cwd = dir })
      assert.equals(2, p:wait_exit(5), p:describe())
      local err = p:stderr()
      for _, needle in ipairs({ "http.toml:4: services.web.max_body: 'max_body' is an HTTP setting: it needs protocol = \"http\"",
                                "http.toml:5: services.web.access_log" }) do
        assert.truthy(err:find(needle, 1, true), ("'%s' is not in:\n%s"):format(needle, err))
      end
      assert.is_nil(err:find("traceback", 1, true), err)
    end
  end)

  it("serves protocol = \"http\" with its limits", function()
    local dir, config = http_service('protocol = "http"\nmax_request_line = 32\n')
    local p = proc.start({ "serve", config }, { cwd = dir })
    local l = p:listening()[1]
    local r = wire.once({ port = l.port }, "GET /x HTTP/1.1\r\n\r\n")
    assert.equals("hi /x", r.body)
    r = wire.once({ port = l.port }, "GET /" .. ("y"):rep(40) .. " HTTP/1.1\r\n\r\n")
    assert.equals(414, r.status)
    p:signal("TERM")
    assert.equals(0, p:wait_exit(5))
  end)

  --- Serves `config` (in `dir`), sends GET /a?b=c (200, "hi /a": 5 bytes) and POST /made
  --- (201, "made!": 5 bytes), waits for their access lines; returns the process's stderr.
  local function two_logged_requests(dir, config)
    local p = proc.start({ "serve", config }, { cwd = dir })
    local l = p:listening()[1]
    local r = wire.once({ port = l.port }, "GET /a?b=c HTTP/1.1\r\n\r\n")
    assert.equals("hi /a", r.body)
    r = wire.once({ port = l.port }, "POST /made HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
    assert.equals(201, r.status)
    assert(p:wait_stderr("/made", 5), p:describe())
    p:signal("TERM")
    assert.equals(0, p:wait_exit(5), p:describe())
    return p:stderr()
  end
  local LOGGED = [[return function(req) if req.path == "/made" then return 201, "made!" end return 200, "hi " .. req.path end]]

  it("access_log = true: one text line per request with peer, method, target, status, bytes and ms", function()
    local dir, config = http_service('protocol = "http"\naccess_log = true\n', LOGGED)
    local err = two_logged_requests(dir, config)
    local lines = {}
    for line in err:gmatch("[^\n]+") do
      if line:find(" target=", 1, true) then lines[#lines + 1] = line end
    end
    assert.equals(2, #lines, err)
    local expected = { { "GET", '"/a%?b=c"', 200 }, { "POST", "/made", 201 } }   -- a value with "=" is quoted
    for i, e in ipairs(expected) do
      local line = lines[i]
      assert.matches("^%d%d%d%d%-%d%d%-%d%dT[%d:.]+Z info ", line)
      assert.matches(" service=web ", line)
      assert.matches(" peer=127%.0%.0%.1:%d+ ", line)
      assert.matches(" method=" .. e[1] .. " ", line)
      assert.matches(" target=" .. e[2] .. " ", line)
      assert.matches(" status=" .. e[3] .. " ", line)
      assert.matches(" bytes=5 ", line)
      assert.matches(" ms=%d+%.?%d* ", line)
    end
  end)

  it("access_log = true with log_format = \"json\": one object per request with peer, method, target, status, bytes and ms", function()
    local cjson = require "cjson"   -- Debian's lua-cjson: a parser apart from gsockd's log writer
    local dir = proc.tmpdir()
    proc.write(dir, "hello.lua", LOGGED)
    local config = proc.write(dir, "http.toml", 'log_format = "json"\n[services.web]\nlisten = "127.0.0.1:0"\n'
      .. 'handler = "hello.lua"\nprotocol = "http"\naccess_log = true\n')
    local err = two_logged_requests(dir, config)
    local objects = {}
    for line in err:gmatch("[^\n]+") do
      local o = assert(cjson.decode(line), line)   -- every line is an object
      if o.target then objects[#objects + 1] = o end
    end
    assert.equals(2, #objects, err)
    local expected = { { "GET", "/a?b=c", 200 }, { "POST", "/made", 201 } }
    for i, e in ipairs(expected) do
      local o = objects[i]
      assert.equals("info", o.level)
      assert.equals("web", o.service)
      assert.matches("^127%.0%.0%.1:%d+$", o.peer)
      assert.equals(e[1], o.method)
      assert.equals(e[2], o.target)
      -- numbers are JSON numbers, so that collectors can compare them
      assert.equals(e[3], o.status)
      assert.equals(5, o.bytes)
      assert.equals("number", type(o.ms))
      assert.is_true(o.ms >= 0 and o.ms < 5000, tostring(o.ms))
      assert.matches("^%d%d%d%d%-%d%d%-%d%dT[%d:.]+Z$", o.ts)
    end
  end)

  -- With access_log each request goes through http.lua's runner; without, the host
  -- runs the handler itself: a reload must reach both.
  for _, access_log in ipairs({ false, true }) do
    it(("SIGHUP: the next request on an open keep-alive connection gets the new handler (access_log = %s)")
        :format(tostring(access_log)), function()
      local settings = 'protocol = "http"\n' .. (access_log and "access_log = true\n" or "")
      local dir, config = http_service(settings, [[return function() return 200, "v1" end]])
      local p = proc.start({ "serve", config }, { cwd = dir })
      local l = p:listening()[1]
      local c = wire.connect({ port = l.port })
      assert(c:send("GET / HTTP/1.1\r\n\r\n"))
      assert.equals("v1", wire.read(c).body)
      proc.write(dir, "hello.lua", [[return function() return 200, "v2" end]])
      p:signal("HUP")
      assert(p:wait_stderr("reloaded 1 service", 5), p:describe())
      assert(c:send("GET / HTTP/1.1\r\n\r\n"))
      assert.equals("v2", wire.read(c).body)
      assert.equals("v2", wire.once({ port = l.port }, "GET / HTTP/1.1\r\n\r\n").body)
      c:close()
      p:signal("TERM")
      assert.equals(0, p:wait_exit(5))
    end)
  end
end)
