-- `gsockd run handler.lua` (SPEC §5): a file that returns a handler is served; a file
-- that returns nothing is still a script. Every server runs as a separate gsockd
-- process (support/proc.lua) killed at the end of each test.
local gsock = require "gsock"
local socket = require "socket"
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/serve/"
local proc = dofile(here .. "support/proc.lua")

after_each(proc.cleanup)

local function run_handler(source, extra, opts)
  local dir = proc.tmpdir()
  local file = proc.write(dir, "handler.lua", source)
  local argv = { "run", file }
  for _, a in ipairs(extra or { "--listen", "127.0.0.1:0" }) do argv[#argv + 1] = a end
  local p = proc.start(argv, { cwd = dir, nofile = opts and opts.nofile })
  return p, dir, file
end

describe("gsockd run: a file returning a function", function()
  it("is served on --listen, port 0 resolved in the 'listening on' line", function()
    local p = run_handler(proc.ECHO)
    local l = p:listening()
    assert.equals(1, #l, p:describe())
    assert.matches("^127%.0%.0%.1:%d+$", l[1].address)
    assert.is_true(l[1].port > 0, "port 0 must be resolved: " .. l[1].line)
    assert.is_not_nil(l[1].name, "the line names the handler: " .. l[1].line)
    assert.equals("hello", proc.request(l[1].address, "hello"))
    assert.equals("again", proc.request(l[1].address, "again"))
  end)

  it("serves connections concurrently, one fiber each", function()
    local p = run_handler(proc.ECHO)
    local l = p:listening()
    local a = assert(proc.connect(l[1]))
    local b = assert(proc.connect(l[1]))
    assert(a:send("from-a\n"))                 -- a stays open while b is served
    assert(b:send("from-b\n"))
    assert.equals("from-b", b:receive("*l"))
    assert.equals("from-a", a:receive("*l"))
    assert(a:send("a2\n"))
    assert.equals("a2", a:receive("*l"))
  end)

  it("listens on several --listen addresses, TCP and unix, one line each", function()
    local dir = proc.tmpdir()
    local path = proc.unix_path(dir, "echo")
    local p = run_handler(proc.ECHO, { "--listen", "127.0.0.1:0", "--listen", "unix:" .. path })
    local l = p:listening(2)
    local tcp, un
    for _, e in ipairs(l) do
      if e.path then un = e else tcp = e end
    end
    assert.is_not_nil(tcp, p:describe())
    assert.is_not_nil(un, p:describe())
    assert.equals(path, un.path)
    assert.equals("over-tcp", proc.request(tcp.address, "over-tcp"))
    assert.equals("over-unix", proc.request(un.address, "over-unix"))
  end)

  it("passes peer = {host, port} of the client", function()
    local p = run_handler([[
      return function(sock, peer)
        sock:send(tostring(peer.host) .. " " .. tostring(peer.port) .. "\n")
      end
    ]])
    local l = p:listening()
    local c = assert(proc.connect(l[1]))
    local ip, port = c:getsockname()
    local line = assert(c:receive("*l"))
    assert.equals(ip .. " " .. tostring(port), line)
  end)

  it("passes the peer to a handler taking it through ...", function()
    local p = run_handler([[
      return function(sock, ...)
        local peer = ...
        sock:send(select("#", ...) .. " " .. tostring(peer.host) .. " " .. tostring(peer.port) .. "\n")
      end
    ]])
    local l = p:listening()
    local c = assert(proc.connect(l[1]))
    local ip, port = c:getsockname()
    assert.equals("1 " .. ip .. " " .. tostring(port), c:receive("*l"))
  end)

  it("passes peer = {path} for a unix listener", function()
    local dir = proc.tmpdir()
    local path = proc.unix_path(dir, "peer")
    local p = run_handler([[
      return function(sock, peer)
        sock:send(type(peer) .. " " .. tostring(peer.path ~= nil) .. "\n")
      end
    ]], { "--listen", "unix:" .. path })
    local l = p:listening()
    local c = assert(proc.connect(l[1]))
    assert.equals("table true", c:receive("*l"))
  end)

  it("closes the connection when the handler returns", function()
    local p = run_handler([[return function(sock) sock:send("bye\n") end]])
    local l = p:listening()
    local c = assert(proc.connect(l[1]))
    assert.equals("bye", c:receive("*l"))
    local data, err = c:receive("*l")
    assert.is_nil(data)
    assert.equals("closed", err)
  end)

  it("sets TCP_NODELAY on accepted connections", function()
    local p = run_handler([[
      return function(sock) sock:send(tostring(sock:getoption("tcp-nodelay")) .. "\n") end
    ]])
    local l = p:listening()
    local c = assert(proc.connect(l[1]))
    assert.equals("true", c:receive("*l"))
  end)

  it("a bad --listen address is bad usage: exit 2 naming it", function()
    local p = run_handler(proc.ECHO, { "--listen", "127.0.0.1:notaport" })
    local status = p:wait_exit(5)
    assert.equals(2, status, p:describe())
    assert.matches("127%.0%.0%.1:notaport", p:stderr())
    assert.equals(0, #p:listen_lines())
  end)

  it("a --listen unix: path longer than 107 bytes is bad usage: exit 2 naming it and the limit", function()
    local dir = proc.tmpdir()
    local path = dir .. "/" .. ("p"):rep(108 - #dir - 1)
    local p = run_handler(proc.ECHO, { "--listen", "127.0.0.1:0", "--listen", "unix:" .. path })
    assert.equals(2, p:wait_exit(5), p:describe())
    assert.matches("bad address 'unix:" .. proc.lit(path) .. "' %(a unix socket path is at most 107 bytes, "
      .. "this one is 108%)", p:stderr())
    assert.equals(0, #p:listen_lines(), p:describe())
  end)

  it("the default address is 127.0.0.1:7000", function()
    local probe = socket.bind("127.0.0.1", 7000)
    if not probe then pending("127.0.0.1:7000 is in use on this machine") end
    probe:close()
    local p = run_handler(proc.ECHO, {})
    local l = p:listening()
    assert.equals("127.0.0.1:7000", l[1].address, p:describe())
    assert.equals("seven", proc.request("127.0.0.1:7000", "seven"))
  end)
end)

describe("gsockd run: a file returning a table", function()
  it("uses its listen and name", function()
    local port = proc.free_port()
    local p = run_handler(([[
      return {
        name = "tablesvc",
        listen = "127.0.0.1:%d",
        handle = function(sock)
          local line = sock:receive("*l")
          sock:send("table:" .. tostring(line) .. "\n")
        end,
      }
    ]]):format(port), {})
    local l = p:listening()
    assert.equals("127.0.0.1:" .. port, l[1].address, p:describe())
    assert.equals("tablesvc", l[1].name)
    assert.equals("table:x", proc.request(l[1].address, "x"))
  end)

  it("--listen takes the place of the table's listen", function()
    local port = proc.free_port()
    local p = run_handler(([[
      return { name = "overridden", listen = "127.0.0.1:%d", handle = function(sock) sock:send("ok\n") end }
    ]]):format(port))
    local l = p:listening()
    gsock.sleep(0.2)
    l = p:listen_lines()
    assert.equals(1, #l, p:describe())
    assert.are_not.equal("127.0.0.1:" .. port, l[1].address)
    local c = assert(proc.connect(l[1]))
    assert.equals("ok", c:receive("*l"))
    local c2, err = proc.connect("127.0.0.1:" .. port, 1)
    assert.is_nil(c2, "the table's listen address was bound too")
  end)

  it("a file returning something that is not a handler exits 2", function()
    local p = run_handler("return 42\n")
    assert.equals(2, p:wait_exit(5), p:describe())
    assert.equals(0, #p:listen_lines())
  end)

  it("a table without a handle function exits 2", function()
    local p = run_handler('return { listen = "127.0.0.1:0", name = "nohandle" }\n')
    assert.equals(2, p:wait_exit(5), p:describe())
    assert.equals(0, #p:listen_lines())
  end)

  -- A handler table is checked like a config (SPEC §5): unknown keys and wrong types
  -- exit 2 naming the file, the line and the key, with "did you mean".
  for _, case in ipairs({
    { "a misspelt key", 'return {\n  listn = "127.0.0.1:0",\n  handle = function() end,\n}\n',
      "handler.lua:2: handler table: unknown key 'listn'; did you mean 'listen'?" },
    { "'handler' for 'handle'", 'return {\n  handler = function() end,\n}\n',
      "handler.lua:2: handler table: unknown key 'handler'; did you mean 'handle'?" },
    { "a wrong type", 'return { handle = function() end,\n  max_connections = "many" }\n',
      "handler.lua:2: handler table: 'max_connections' must be a positive integer, got string" },
    { "a wrong type of listen", 'return { handle = function() end, listen = 7000 }\n',
      "handler.lua:1: handler table: 'listen' must be an address string or a list of them, got number" },
    { "a key with no likeness", 'return { handle = function() end, colour = "red" }\n',
      "handler.lua:1: handler table: unknown key 'colour'\n" },
  }) do
    it("a handler table with " .. case[1] .. " exits 2 naming it", function()
      local p = run_handler(case[2])
      assert.equals(2, p:wait_exit(5), p:describe())
      assert.equals(0, #p:listen_lines())
      assert.is_truthy(p:stderr():find(case[3], 1, true), p:describe())
    end)
  end

  it("a file returning nothing served with --listen exits 2 saying so", function()
    local p = run_handler("local x = 1\n")
    assert.equals(2, p:wait_exit(5), p:describe())
    assert.matches("returned nothing, so it is a script and cannot be served on %-%-listen", p:stderr())
  end)

  it("accepts a list of addresses in listen", function()
    local dir = proc.tmpdir()
    local path = proc.unix_path(dir, "list")
    local p = run_handler(([[
      return { name = "lst", listen = { "127.0.0.1:0", "unix:%s" }, handle = function(sock)
        sock:send("ok\n") end }
    ]]):format(path), {})
    local l = p:listening(2)
    for _, e in ipairs(l) do
      local c = assert(proc.connect(e))
      assert.equals("ok", c:receive("*l"))
    end
  end)

  it("runs init(config) once, before the first connection is served", function()
    local p = run_handler([[
      local inits, served = 0, 0
      local init_type
      return {
        init = function(config) inits = inits + 1; init_type = type(config) end,
        handle = function(sock)
          served = served + 1
          sock:send(("inits=%d type=%s served=%d\n"):format(inits, tostring(init_type), served))
        end,
      }
    ]])
    local l = p:listening()
    local c = assert(proc.connect(l[1]))
    assert.equals("inits=1 type=table served=1", c:receive("*l"))
    c = assert(proc.connect(l[1]))
    assert.equals("inits=1 type=table served=2", c:receive("*l"))
  end)
end)

describe("gsockd run: a handler's errors are shown from the user's code", function()
  local source = [[
local function helper(t) return t.field end
return function(sock)
  local line = sock:receive("*l")
  if line == "raise" then error("boom-1f3") end
  if line == "index" then helper(nil) end
  if line == "spin" then while true do end end
end
]]
  for _, case in ipairs({
    { "error()", "raise", "handler.lua:4: boom%-1f3\nstack traceback:\n\t%[C%]: in function 'error'\n\t[^\n]*handler.lua:4:" },
    { "a runtime error", "index", "handler.lua:1: attempt to index a nil value %(local 't'%)\nstack traceback:\n\t[^\n]*handler.lua:1: in " },
    { "the max_run_time error", "spin", "fiber ran for [%d.]+ s without yielding %(max_run_time is 0.2 s%)\nstack traceback:\n\t[^\n]*handler.lua:6: in " },
  }) do
    it(case[1] .. ": the traceback's first frame is the handler's, and no gsockd frame is shown", function()
      local p = run_handler(source, { "--listen", "127.0.0.1:0", "--max-run-time", "0.2", "--max-run-time-action", "error" })
      local address = p:listening()[1].address
      local c = assert(proc.connect(address, 3))
      c:send(case[2] .. "\n")
      assert.is_nil((c:receive("*l")))
      local err = p:wait_stderr("handler failed", 3)
      p:signal("TERM")
      p:wait_exit(3)
      err = p:stderr()
      assert.matches(case[3], err)
      for _, own in ipairs({ "server.lua", "serve.lua", "xpcall" }) do
        assert.is_nil(err:find(own, 1, true), own .. " in:\n" .. err)
      end
    end)
  end
end)

describe("gsockd run: gsock.stats() inside a server", function()
  it("counts fibers, connections, accepted, errors and bytes", function()
    local p = run_handler([[
      return function(sock)
        local line = sock:receive("*l")
        if line == "raise" then error("counted-error") end
        local s = gsock.stats()
        local out = {}
        for _, k in ipairs({ "fibers", "connections", "accepted", "errors", "bytes_in", "bytes_out", "memory" }) do
          out[#out + 1] = k .. "=" .. tostring(s[k])
        end
        sock:send(table.concat(out, " ") .. "\n")
      end
    ]])
    local l = p:listening()
    local function stats()
      local line = assert(proc.request(l[1].address, "stats"))
      local t = {}
      for k, v in line:gmatch("(%w+_?%w*)=(%S+)") do t[k] = tonumber(v) or v end
      return t, line
    end
    local s1, line1 = stats()
    for _, k in ipairs({ "fibers", "connections", "accepted", "errors", "bytes_in", "bytes_out", "memory" }) do
      assert.equals("number", type(s1[k]), k .. " must be a number: " .. line1)
    end
    assert.is_true(s1.connections >= 1, line1)
    assert.is_true(s1.accepted >= 1, line1)
    assert.is_true(s1.fibers >= 1, line1)
    assert.is_true(s1.bytes_in >= #"stats\n", line1)
    assert.is_nil(proc.request(l[1].address, "raise"))
    local s2, line2 = stats()
    assert.is_true(s2.accepted >= s1.accepted + 2, line1 .. "\n" .. line2)
    assert.is_true(s2.errors >= s1.errors + 1, line1 .. "\n" .. line2)
    assert.is_true(s2.bytes_out >= s1.bytes_out + #line1, line1 .. "\n" .. line2)
  end)
end)

describe("gsockd run: a script (returning nothing) still runs and exits", function()
  local function run_script(source, args)
    local dir = proc.tmpdir()
    local file = proc.write(dir, "script.lua", source)
    local argv = { "run", file }
    if args then
      argv[#argv + 1] = "--"
      for _, a in ipairs(args) do argv[#argv + 1] = a end
    end
    local p = proc.start(argv, { cwd = dir })
    local status = p:wait_exit(5)
    return p, status, file
  end

  it("exits 0 when it ends, prints no 'listening on'", function()
    local p, status = run_script('print("script ran", ...)\n', { "a1", "b2" })
    assert.equals(0, status, p:describe())
    assert.matches("script ran\ta1\tb2", p:stdout())
    assert.equals(0, #p:listen_lines())
  end)

  it("exits with os.exit's status", function()
    local p, status = run_script("os.exit(3)\n")
    assert.equals(3, status, p:describe())
  end)

  it("exits 1 with file:line and a traceback when it raises", function()
    local p, status, file = run_script('local x = 1\nerror("script-fail-51d")\n')
    assert.equals(1, status, p:describe())
    assert.matches(proc.lit(proc.base(file)) .. ":2: script%-fail%-51d", p:stderr())
    assert.matches("stack traceback", p:stderr())
  end)

  it("a gsock error value it raises (a timeout) is shown at the user's line, no gsockd frame below", function()
    local p, status, file = run_script('local gsock = require "gsock"\n'
      .. 'gsock.with_timeout(0.05, function()\n  gsock.sleep(5)\nend)\n')
    assert.equals(1, status, p:describe())
    local err = p:stderr()
    assert.matches(proc.lit(proc.base(file)) .. ":3: timed out", err)
    assert.is_nil(err:find("serve.lua", 1, true), err)
    assert.matches("stack traceback:\n\t%[C%]: in function 'gsock.sleep'\n\t[^\n]*" .. proc.lit(proc.base(file))
      .. ":3:", err)
  end)

  it("exits 2 with file:line when it does not compile", function()
    local p, status, file = run_script("local a = 1\nlocal b = = 2\n")
    assert.equals(2, status, p:describe())
    assert.matches(proc.lit(proc.base(file)) .. ":2:", p:stderr())
  end)

  it("can run its own gsock.server, talk to it and exit", function()
    local p, status = run_script([[
      local socket = require "socket"
      local srv = gsock.server("127.0.0.1:0", function(sock)
        sock:send(sock:receive("*l") .. "!\n")
      end)
      srv:start()
      local c = assert(socket.connect("127.0.0.1", srv.port))
      c:send("inner\n")
      print(c:receive("*l"))
      c:close()
      srv:stop(1)
    ]])
    assert.equals(0, status, p:describe())
    assert.matches("inner!", p:stdout())
  end)
end)

describe("the gsockd command line", function()
  it("--version prints the version and the libraries, exit 0", function()
    local p = proc.start({ "--version" }, { cwd = proc.tmpdir() })
    assert.equals(0, p:wait_exit(5), p:describe())
    assert.matches("^gsockd %d+%.%d+%.%d+ %(Lua 5%.4%.%d+, libev %d+%.%d+%)\n$", p:stdout())
  end)

  it("a bare gsockd is bad usage: the help on stderr, exit 2", function()
    local p = proc.start({}, { cwd = proc.tmpdir() })
    assert.equals(2, p:wait_exit(5), p:describe())
    assert.matches("USAGE: gsockd", p:stderr())
    assert.equals("", p:stdout())
  end)
end)
