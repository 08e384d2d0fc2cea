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
