-- The child of tests/fuzz/arguments_fuzz_test.lua: makes `calls` seeded random calls of
-- every gsock and socket function and method with hostile argument shapes, each logged
-- (and flushed) to `log` before it is made, so that when this process dies by a signal
-- the parent can name the call that killed it.
--   gsockd run arguments_child.lua -- SEED CALLS LOG
local socket = require "socket"
local unix = require "socket.unix"

local seed, calls, logpath = tonumber(arg[1]), tonumber(arg[2]), arg[3]
math.randomseed(seed)
local log = assert(io.open(logpath, "w"))
-- GSOCKD_FUZZ_ONLY="a,b,c": make only these calls (the others still draw their values), to
-- narrow a failure down to the calls that cause it.
local only
if os.getenv("GSOCKD_FUZZ_ONLY") then
  only = {}
  for n in os.getenv("GSOCKD_FUZZ_ONLY"):gmatch("%d+") do only[tonumber(n)] = true end
end
local function note(line)
  log:write(line, "\n")
  log:flush()
end

-- Values ---------------------------------------------------------------------------

local trap = setmetatable({}, {
  __index = function() error("trap __index") end,
  __newindex = function() error("trap __newindex") end,
  __len = function() error("trap __len") end,
  __tostring = function() error("trap __tostring") end,
  __call = function() error("trap __call") end,
  __eq = function() error("trap __eq") end,
  __lt = function() error("trap __lt") end,
  __concat = function() error("trap __concat") end,
  __name = "trap",
})
local huge_string = string.rep("x", 1 << 20)
local objects = {}   -- class name -> the current object of that class

local simple = {
  { "nil", nil }, { "true", true }, { "false", false },
  { "2^31", 2^31 }, { "-2^31", -2^31 }, { "2^31 int", 1 << 31 }, { "2^32-1", 2^32 - 1 },
  { "2^63", 2^63 }, { "-2^63", -2^63 },
  { "mininteger", math.mininteger }, { "maxinteger", math.maxinteger },
  { "1e308", 1e308 }, { "-1e308", -1e308 }, { "inf", math.huge }, { "-inf", -math.huge },
  { "nan", 0/0 }, { "0", 0 }, { "1", 1 }, { "-1", -1 }, { "0.5", 0.5 }, { "3", 3 },
  { "huge string", huge_string }, { "empty string", "" }, { "'*a'", "*a" }, { "'*l'", "*l" },
  { "'--'", "--" }, { "'rw'", "rw" }, { "'127.0.0.1'", "127.0.0.1" }, { "'localhost'", "localhost" },
  { "trap table", trap }, { "empty table", {} }, { "{1, 2}", { 1, 2 } },
  { "noop function", function() end },
  { "sleeping function", function() gsock.sleep(0.05) end },
  { "erroring function", function() error("boom") end },
  { "many results function", function() return table.unpack({}, 1, 250) end },
  { "io.stdout", io.stdout }, { "coroutine", coroutine.create(function() end) },
  { "getfd 2^32-1", { getfd = function() return 2^32 - 1 end } },
  { "getfd 3", { getfd = function() return 3 end } },
  { "getfd -1", { getfd = function() return -1 end } },
  { "getfd nan", { getfd = function() return 0/0 end } },
  { "{ {getfd 3} }", { { getfd = function() return 3 end } } },
}

local classes = { "tcp_master", "tcp_server", "tcp_client", "udp", "unix_stream", "unix_dgram",
                  "fiber", "dead_fiber", "event", "queue", "semaphore", "lock", "timeout", "watcher", "pool" }

local function value()
  if math.random() < 0.15 then  -- wrong self: an object of some class
    local class = classes[math.random(#classes)]
    return class, objects[class]
  end
  local v = simple[math.random(#simple)]
  return v[1], v[2]
end

-- Objects, made again every so often since calls close and kill them ---------------

local keep = {}  -- things to close when objects are made again
local function refresh()
  for _, o in ipairs(keep) do pcall(function() o:close() end) end
  keep = {}
  local function own(o) if o then keep[#keep + 1] = o end return o end
  -- Calls may have used up descriptors or broken sockets: a failed make leaves the old object.
  local function make(class, f)
    local ok, o = pcall(f)
    if ok and o then objects[class] = own(o) end
  end
  make("tcp_master", socket.tcp)
  make("tcp_server", function() return socket.bind("127.0.0.1", 0) end)
  make("tcp_client", function()
    local _, port = objects.tcp_server:getsockname()
    local c = assert(socket.connect("127.0.0.1", port))
    own(objects.tcp_server:accept())
    return c
  end)
  make("udp", function() local u = socket.udp(); u:setsockname("127.0.0.1", 0); return u end)
  make("unix_stream", unix.stream)
  make("unix_dgram", unix.dgram)
  objects.fiber = gsock.spawn(function() gsock.sleep(0.5) end)
  objects.dead_fiber = gsock.spawn(function() return 1, 2, 3 end)
  objects.event = gsock.event()
  objects.queue = gsock.queue(2)
  objects.semaphore = gsock.semaphore(1)
  objects.lock = gsock.lock()
  pcall(function() objects.watcher = gsock.io(objects.tcp_client:getfd(), "r") end)
  objects.pool = gsock.pool(2)
end

-- Targets ---------------------------------------------------------------------------

local targets = {}
local skip = { server = true, udp_server = true, dump = true, __unload = true, _link = true }
for _, lib in ipairs({ { "gsock", gsock }, { "socket", socket }, { "socket.dns", socket.dns }, { "socket.unix", unix } }) do
  local keys = {}
  for k, v in pairs(lib[2]) do if type(v) == "function" and not skip[k] then keys[#keys + 1] = k end end
  table.sort(keys)
  for _, k in ipairs(keys) do targets[#targets + 1] = { name = lib[1] .. "." .. k, fn = lib[2][k] } end
end
local methods = {
  socket = { "_receiveuntil", "accept", "bind", "close", "connect", "dirty", "getfamily", "getfd", "getoption",
             "getpeername", "getreusedtimes", "getsockname", "getstats", "gettimeout", "listen", "receive",
             "receiveany", "receiveuntil", "send", "setfd", "setkeepalive", "setoption", "setpeername",
             "setsockname", "setstats", "settimeout", "settimeouts", "shutdown", "receivefrom", "sendto",
             "__gc", "__close", "__tostring", "__index" },
  fiber = { "join", "get", "kill", "dead", "successful", "__gc" },
  event = { "set", "clear", "is_set", "wait" },
  queue = { "put", "get", "put_nowait", "get_nowait", "size" },
  semaphore = { "acquire", "release", "__close" },
  timeout = { "cancel", "__close", "__gc" },
  watcher = { "close", "getfd", "__close", "__gc" },
  pool = { "spawn", "join" },
}
local family = { tcp_master = "socket", tcp_server = "socket", tcp_client = "socket", udp = "socket",
                 unix_stream = "socket", unix_dgram = "socket", fiber = "fiber", dead_fiber = "fiber",
                 event = "event", queue = "queue", semaphore = "semaphore", lock = "semaphore",
                 timeout = "timeout", watcher = "watcher", pool = "pool" }
for _, class in ipairs(classes) do
  for _, m in ipairs(methods[family[class]]) do
    targets[#targets + 1] = { name = class .. ":" .. m, class = class, method = m }
  end
end

local function resolve(t)
  if not t.class then return t.fn end
  local o = objects[t.class]
  if t.method:sub(1, 2) == "__" then
    local mt = getmetatable(o)
    return type(mt) == "table" and rawget(mt, t.method) or nil
  end
  local ok, f = pcall(function() return o[t.method] end)
  return ok and f or nil
end

-- Calling ---------------------------------------------------------------------------

local contexts = { "fiber", "fiber", "fiber", "fiber", "__gc", "__close", "sort", "coroutine.wrap" }

local function in_context(context, f)
  if context == "__gc" then
    setmetatable({}, { __gc = function() pcall(f) end })
    collectgarbage()
  elseif context == "__close" then
    do local _ <close> = setmetatable({}, { __close = function() pcall(f) end }) end
  elseif context == "sort" then
    local done = false
    table.sort({ 3, 1, 2 }, function(a, b) if not done then done = true pcall(f) end return a < b end)
  elseif context == "coroutine.wrap" then
    pcall(coroutine.wrap(function() pcall(f) end))
  else
    pcall(f)
  end
end

refresh()
for i = 1, calls do
  if i % 40 == 0 then refresh() end
  local t = targets[math.random(#targets)]
  local args, names = { n = 0 }, {}
  local first = 1
  if t.class and math.random() < 0.85 then
    args[1], args.n, names[1], first = objects[t.class], 1, t.class, 2
  end
  for j = first, math.random(first - 1, first + 3) do
    names[j], args[j] = value()
    args.n = j
  end
  local context = contexts[math.random(#contexts)]
  note(("call %d: %s(%s) in %s"):format(i, t.name, table.concat(names, ", ", 1, args.n), context))
  local f = resolve(t)
  if f and (not only or only[i]) then
    -- A call that blocks for ever is bounded by running it in its own fiber for a while.
    local fiber = gsock.spawn(function()
      in_context(context, function() return f(table.unpack(args, 1, args.n)) end)
    end)
    if not fiber:join(0.01) then pcall(fiber.kill, fiber, nil, true, 0.2) end
  end
end
for _, o in ipairs(keep) do pcall(function() o:close() end) end
note(("done %d"):format(calls))
log:close()
print("FUZZ DONE " .. calls)
