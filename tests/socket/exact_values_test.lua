-- Exact LuaSocket return values (SPEC §4, LUASOCKET.md): one probe script runs under
-- gsockd and under plain lua5.4 with Debian's LuaSocket (the oracle), and every line
-- it prints must be the same: value types included (LuaSocket pushes most numbers as
-- floats: `send` gives 6.0, nil, nil), counts of results (a receive gives data, nil,
-- nil), class names (`sock.class`), and the error strings of options.
--
-- Left out on purpose, where gsockd differs and says so: getfd() is an integer here
-- (LuaSocket pushes the descriptor as a float), unix sockets have getoption/setoption
-- (Debian's socket.unix has none), _VERSION, and a receive on a closed UDP socket
-- ("closed" here; Debian's LuaSocket returns "").
local socket = require "socket"
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/socket/"
local net = dofile(here .. "support/net.lua")

local PROBE = [==[
local socket = require "socket"
local out = {}
-- Results as "n: type:value, ...", with what varies from run to run (ports, ages,
-- table addresses) shown by its type alone.
local function show(label, ...)
  local t = table.pack(...)
  local parts = {}
  for i = 1, t.n do
    local v = t[i]
    local shown
    if math.type(v) then shown = math.type(v) .. (label:find("#") and "" or (":" .. tostring(v)))
    elseif type(v) == "table" then shown = "table"
    elseif type(v) == "string" and label:find("#") and v:match("^%d+$") then shown = "string(digits)"
    else shown = type(v) .. ":" .. tostring(v) end
    parts[i] = shown
  end
  out[#out + 1] = label .. " " .. t.n .. " " .. table.concat(parts, ", ")
end
local m = socket.tcp()
show("master.class", m.class)
for _, o in ipairs({ "keepalive", "linger", "reuseaddr", "reuseport", "tcp-nodelay", "ipv6-v6only", "tcp-keepidle",
                     "recv-buffer-size", "error", "broadcast", "bindtodevice", "bogus" }) do
  show("master:getoption " .. o, pcall(m.getoption, m, o))
end
show("master:setoption keepalive", pcall(m.setoption, m, "keepalive", true))
show("master:setoption bogus", pcall(m.setoption, m, "bogus", true))
show("master:bind", m:bind("127.0.0.1", 0))
show("master:listen", m:listen())
show("server.class", m.class)
show("server:getsockname #", m:getsockname())
for _, o in ipairs({ "keepalive", "reuseaddr", "tcp-nodelay", "ipv6-v6only", "error" }) do
  show("server:getoption " .. o, pcall(m.getoption, m, o))
end
local ip, port = m:getsockname()
local c = socket.tcp()
show("client:connect", c:connect(ip, port))
local a = m:accept()
show("client.class", c.class, a.class)
show("accepted:getpeername #", a:getpeername())
show("accepted:getsockname #", a:getsockname())
show("client:send", c:send("hello\n"))
show("client:send i j", c:send("hello\n", 2, 3))
show("client:send negative i", c:send("abcdef\n", -2))
show("client:send empty", c:send(""))
show("accepted:receive line", a:receive())
show("accepted:receive count", a:receive(2))
show("accepted:receive count prefix", a:receive(2, "pre"))
show("accepted:receive *l", a:receive("*l"))
a:settimeout(0.05)
show("accepted:receive timeout", a:receive(10))
show("accepted:receive timeout prefix", a:receive("*l", "p"))
show("client:setoption tcp-nodelay", c:setoption("tcp-nodelay", true))
show("client:getoption tcp-nodelay", c:getoption("tcp-nodelay"))
show("client:getoption linger", c:getoption("linger"))
show("client:getoption keepalive", c:getoption("keepalive"))
show("client:getoption recv-buffer-size #", c:getoption("recv-buffer-size"))
show("client:setstats", c:setstats(1, 2, 3))
show("client:getstats #", c:getstats())
show("client:settimeout", c:settimeout(1, "t"))
show("client:shutdown", c:shutdown("send"))
show("accepted:receive *a", a:receive("*a"))
show("accepted:receive after close", a:receive())
show("client:close", c:close())
show("client:close again", c:close())
show("closed.class", c.class)
show("closed:send", c:send("x"))
show("closed:receive", c:receive())
show("closed:getoption", c:getoption("keepalive"))
show("closed:setoption", c:setoption("keepalive", true))
local u = socket.udp()
show("udp.class", u.class)
show("udp:getoption unbound", u:getoption("broadcast"))
show("udp:setsockname", u:setsockname("127.0.0.1", 0))
show("udp bound.class", u.class)
show("udp:getsockname #", u:getsockname())
for _, o in ipairs({ "broadcast", "dontroute", "reuseaddr", "ip-multicast-loop", "ip-multicast-ttl", "ipv6-v6only",
                     "error", "keepalive", "tcp-nodelay" }) do
  show("udp:getoption " .. o, pcall(u.getoption, u, o))
end
show("udp:setoption broadcast", u:setoption("broadcast", true))
show("udp:settimeout", u:settimeout(1))
local uip, uport = u:getsockname()
local u2 = socket.udp()
show("udp:setpeername", u2:setpeername(uip, uport))
show("udp connected.class", u2.class)
show("udp:send", u2:send("dgram"))
show("udp:receivefrom #", u:receivefrom())
show("udp:close", u:close())
show("udp4.class", socket.udp4().class, socket.tcp4().class)
show("unix.class", require("socket.unix").stream().class, require("socket.unix").dgram().class)
show("master:close", m:close())
for _, line in ipairs(out) do print(line) end
]==]

describe("LuaSocket's exact return values", function()
  it("are the oracle's, line by line (types, counts, class names, option errors)", function()
    local expected = net.oracle(PROBE)
    if not expected then return pending("lua5.4 with Debian's lua-socket is not installed") end
    local lines = {}
    local env = setmetatable({ print = function(s) lines[#lines + 1] = s end }, { __index = _G })
    assert(load(PROBE, "=probe", "t", env))()
    local got = table.concat(lines, "\n")
    local want = {}
    for line in expected:gmatch("[^\n]+") do want[#want + 1] = line end
    for i, line in ipairs(want) do assert.equals(line, lines[i], "probe line " .. i) end
    assert.equals(#want, #lines, got)
  end)
end)
