-- Every kind of wait, ended every way a wait can end (SPEC §2, §3, §4): data, its
-- timeout, close() from another fiber, fiber:kill(), a peer reset, and the garbage
-- collector. Each cell expects a prompt wake with the SPEC's result, and leaves no
-- fiber or socket behind. The cases are generated from the two tables below.
local gsock = require "gsock"
local socket = require "socket"

local T = 3          -- the timeout of a wait that must end otherwise (seconds)
local SHORT = 0.2    -- the timeout of the "timeout" cells

-- Sockets are made here, not with the shared helpers: those keep references, and the
-- "gc" cells need the waited-on socket to be unreachable.
local function pair()
  local srv = assert(socket.bind("127.0.0.1", 0))
  local _, port = srv:getsockname()
  local c = assert(socket.connect("127.0.0.1", port))
  srv:settimeout(2)
  local s = assert(srv:accept())
  srv:close()
  return c, s
end

-- Fills the send buffer of `sock` (its peer never reads) until it stays unwritable:
-- the kernel moves queued bytes to the peer's receive buffer for a while after a send
-- first would block.
local function fill(sock, peer)
  sock:setoption("send-buffer-size", 4096)
  sock:settimeout(0)
  local chunk = ("x"):rep(65536)
  for _ = 1, 200 do
    local wrote = false
    for _ = 1, 1000 do
      local n, err, last = sock:send(chunk)
      if n or (last or 0) > 0 then wrote = true end
      if not n then assert(err == "timeout", err) break end
    end
    if not wrote then
      local _, writable = socket.select(nil, { sock }, 0.05)
      if #writable == 0 then break end
    end
    gsock.sleep(0.01)
  end
  sock:settimeout(nil)
end

local function drain(peer)
  gsock.spawn(function()
    peer:settimeout(0.3)
    while peer:receiveany(65536) do end
  end)
end

local function reset(peer)
  peer:setoption("linger", { on = true, timeout = 0 })
  peer:close()
end

local function stream(extra)
  return function()
    local c, s = pair()
    local ctx = { sock = c, peer = s, close_all = { c, s } }
    if extra then extra(ctx) end
    return ctx
  end
end

local function udp_pair()
  local u = assert(socket.udp())
  assert(u:setsockname("127.0.0.1", 0))
  local v = assert(socket.udp())
  assert(v:setsockname("127.0.0.1", 0))
  local _, port = u:getsockname()
  return { sock = u, sender = v, port = tonumber(port), close_all = { u, v } }
end

local function luasocket_timeout(ctx, t) ctx.sock:settimeout(t) end

-- The kinds of wait. api: "luasocket" (returns nil, err) or "gsock" (raises error values).
-- wait(ctx, timeout) runs in the waiting fiber; feed(ctx) makes the wait end with data;
-- reset: whether a peer exists to reset; gc: whether the waiting call leaves the socket
-- unreachable (a method call holds its object for the whole call).
local waits = {
  { name = "receive('*l')", api = "luasocket", setup = stream(), reset = true,
    wait = function(ctx, t) luasocket_timeout(ctx, t) return ctx.sock:receive("*l") end,
    feed = function(ctx) ctx.peer:send("line\n") end, data = "line" },
  { name = "receive('*a')", api = "luasocket", setup = stream(), reset = true,
    wait = function(ctx, t) luasocket_timeout(ctx, t) return ctx.sock:receive("*a") end,
    feed = function(ctx) ctx.peer:send("all") ctx.peer:close() end, data = "all" },
  { name = "receive(n)", api = "luasocket", setup = stream(), reset = true,
    wait = function(ctx, t) luasocket_timeout(ctx, t) return ctx.sock:receive(4) end,
    feed = function(ctx) ctx.peer:send("four") end, data = "four" },
  { name = "receiveany", api = "luasocket", setup = stream(), reset = true,
    wait = function(ctx, t) luasocket_timeout(ctx, t) return ctx.sock:receiveany(10) end,
    feed = function(ctx) ctx.peer:send("any") end, data = "any" },
  { name = "a receiveuntil reader", api = "luasocket", setup = stream(), reset = true,
    wait = function(ctx, t) luasocket_timeout(ctx, t) return ctx.sock:receiveuntil("--")() end,
    feed = function(ctx) ctx.peer:send("part--") end, data = "part" },
  { name = "send with a full buffer", api = "luasocket", setup = stream(function(ctx) fill(ctx.sock, ctx.peer) end), reset = true,
    wait = function(ctx, t) luasocket_timeout(ctx, t) return ctx.sock:send(("y"):rep(65536)) end,
    feed = function(ctx) drain(ctx.peer) end, data = 65536 },
  { name = "connect to a full backlog", api = "luasocket", slow_data = true,
    setup = function()
      local srv = assert(socket.bind("127.0.0.1", 0, 1))
      local _, port = srv:getsockname()
      local ctx = { listener = srv, port = tonumber(port), close_all = { srv } }
      for _ = 1, 4 do           -- fill the accept queue: later SYNs are dropped
        local c = socket.tcp()
        c:settimeout(0.1)
        c:connect("127.0.0.1", ctx.port)
        ctx.close_all[#ctx.close_all + 1] = c
      end
      ctx.sock = socket.tcp()
      ctx.close_all[#ctx.close_all + 1] = ctx.sock
      return ctx
    end,
    wait = function(ctx, t) luasocket_timeout(ctx, t) return ctx.sock:connect("127.0.0.1", ctx.port) end,
    feed = function(ctx)        -- accept everything until the waiting connect's SYN is resent
      gsock.spawn(function()
        ctx.listener:settimeout(0.1)
        local stop = gsock.now() + T
        while gsock.now() < stop and ctx.listener:getfd() >= 0 do
          local c = ctx.listener:accept()
          if c then c:close() end
        end
      end)
    end, data = 1 },
  { name = "accept", api = "luasocket",
    setup = function()
      local srv = assert(socket.bind("127.0.0.1", 0))
      local _, port = srv:getsockname()
      return { sock = srv, port = tonumber(port), close_all = { srv } }
    end,
    wait = function(ctx, t)
      luasocket_timeout(ctx, t)
      local c, err = ctx.sock:accept()
      if c then c:close() return true end
      return c, err
    end,
    feed = function(ctx)
      local c = socket.tcp()
      c:settimeout(0)
      c:connect("127.0.0.1", ctx.port)
      ctx.close_all[#ctx.close_all + 1] = c
    end, data = true },
  { name = "UDP receive", api = "luasocket", setup = udp_pair,
    wait = function(ctx, t) luasocket_timeout(ctx, t) return ctx.sock:receive() end,
    feed = function(ctx) ctx.sender:sendto("dgram", "127.0.0.1", ctx.port) end, data = "dgram" },
  { name = "UDP receivefrom", api = "luasocket", setup = udp_pair,
    wait = function(ctx, t) luasocket_timeout(ctx, t) return ctx.sock:receivefrom() end,
    feed = function(ctx) ctx.sender:sendto("dgram", "127.0.0.1", ctx.port) end, data = "dgram" },
  { name = "socket.select", api = "luasocket", setup = stream(), reset = true, select = true,
    wait = function(ctx, t)
      local r, _, err = socket.select({ ctx.sock }, nil, t)
      if r[1] then return r[1] == ctx.sock and "readable" or "another socket" end
      return nil, err
    end,
    feed = function(ctx) ctx.peer:send("x") end, data = "readable" },
}

-- gsock's descriptor waits, on the socket object and on its raw descriptor.
for _, w in ipairs({
  { fn = "wait_read", setup = stream(), feed = function(ctx) ctx.peer:send("x") end },
  { fn = "wait_write", setup = stream(function(ctx) fill(ctx.sock, ctx.peer) end), feed = function(ctx) drain(ctx.peer) end },
  { fn = "wait_readwrite", setup = stream(function(ctx) fill(ctx.sock, ctx.peer) end), feed = function(ctx) ctx.peer:send("x") end },
}) do
  waits[#waits + 1] = { name = "gsock." .. w.fn .. "(sock)", api = "gsock", setup = w.setup, feed = w.feed,
    reset = true, gc = true, wait = function(ctx, t) return gsock[w.fn](ctx.sock, t) end }
  waits[#waits + 1] = { name = "gsock." .. w.fn .. "(fd)", api = "gsock", setup = w.setup, feed = w.feed,
    reset = true, gc = true, wait = function(ctx, t) return gsock[w.fn](ctx.fd, t) end }
end
waits[#waits + 1] = { name = "gsock.wait(watcher)", api = "gsock", reset = true, gc = true,
  setup = stream(function(ctx) ctx.watcher = gsock.io(ctx.sock:getfd(), "r") end),
  wait = function(ctx, t) return gsock.wait(ctx.watcher, t) end,
  feed = function(ctx) ctx.peer:send("x") end }

-- How each ending ends a wait: act(ctx, fiber) from the test's fiber, while the waiter waits.
local endings = {
  data = function(ctx) ctx.wait.feed(ctx) end,
  timeout = function() end,
  close = function(ctx) ctx.sock:close() end,
  kill = function(_, f) f:kill() end,
  reset = function(ctx) reset(ctx.peer) end,
  gc = function(ctx)
    ctx.sock = nil
    ctx.close_all[1] = nil     -- the waited-on socket is always first
    collectgarbage()
    collectgarbage()
  end,
}

local function kind_of(e) return type(e) == "table" and e.kind or nil end

-- What the waiter's pcall(wait) must give, per API and ending.
local function check(w, ending, r)
  local ok, a, b = r[1], r[2], r[3]
  if ending == "kill" then
    assert.is_false(ok, "a killed wait returned")
    assert.equals("killed", kind_of(a), tostring(a))
    return
  end
  if w.api == "luasocket" then
    assert.is_true(ok, "a LuaSocket call raised: " .. tostring(a))
    if ending == "data" then
      assert.equals(w.data, a, "error: " .. tostring(b))
    elseif ending == "timeout" then
      assert.is_nil(a)
      assert.equals("timeout", b)
    elseif w.select then
      -- select returns the closed or reset socket as readable: its receive then tells what happened
      assert.equals("readable", a, tostring(b))
    else
      assert.is_nil(a, "the wait returned " .. tostring(a))
      assert.equals("closed", b)
    end
  else
    if ending == "data" or ending == "reset" then
      assert.is_true(ok, tostring(a))
    elseif ending == "timeout" then
      assert.is_false(ok)
      assert.is_true(gsock.is_timeout(a), tostring(a))
    else
      assert.is_false(ok, "the wait returned after its socket was closed")
      assert.equals("closed", kind_of(a), tostring(a))
      assert.equals(9, a.errno)
      assert.equals("File descriptor was closed in another fiber", a.message)
    end
  end
end

local function applies(w, ending)
  if ending == "reset" and not w.reset then return false end
  if ending == "gc" and not w.gc then return false end
  return true
end

describe("every wait, every ending", function()
  for _, w in ipairs(waits) do
    for _, ending in ipairs({ "data", "timeout", "close", "kill", "reset", "gc" }) do
      if applies(w, ending) then
        it(w.name .. " ended by " .. ending, function()
          collectgarbage()
          gsock.sleep(0)
          local base = gsock.stats()
          local ctx = w.setup()
          ctx.wait = w
          ctx.fd = ctx.sock:getfd()
          local result
          local limit = ending == "timeout" and SHORT or T
          local f = gsock.spawn(function()
            local function run(c) return table.pack(pcall(w.wait, c, limit)) end
            result = run(ctx)
          end)
          gsock.sleep(0.05)
          assert.is_nil(result, "the wait ended before its ending: " .. tostring(result and result[3]))
          local t0 = gsock.now()
          endings[ending](ctx, f)
          local bound = (ending == "data" and w.slow_data) and T or 1
          assert.is_true(f:join(bound + 0.5), w.name .. " did not end " .. (bound + 0.5) .. " s after " .. ending)
          local took = gsock.now() - t0
          if ending == "timeout" then
            assert.is_true(took >= SHORT - 0.1, "timed out after " .. took .. " s")
          else
            assert.is_true(took < bound, "woke " .. took .. " s after " .. ending)
          end
          assert.is_not_nil(result, "the waiter ended without a result: " .. tostring(f.error))
          check(w, ending, result)
          for _, s in pairs(ctx.close_all) do s:close() end
          if ctx.watcher then ctx.watcher:close() end
          ctx, result = nil, nil
          gsock.sleep(0.01)    -- the fibers a feed spawned see their sockets closed
          collectgarbage()
          collectgarbage()
          local now = gsock.stats()
          assert.equals(base.fibers, now.fibers, "fibers left behind")
          assert.equals(base.sockets, now.sockets, "sockets left behind")
        end)
      end
    end
  end

  pending("socket.dns.toip ended by close, kill or timeout: a name resolves instantly here (/etc/hosts, "
    .. "no network), so a lookup cannot be caught in flight; kill during a lookup is in dns_test.lua")
end)

describe("a descriptor closed under a wait", function()
  it("a socket collected while a fiber waits on its fd never wakes it with the readiness of a socket "
    .. "that reused the number", function()
    local ctx = { }
    ctx.sock, ctx.peer = pair()
    local fd = ctx.sock:getfd()
    local result
    local f = gsock.spawn(function() result = table.pack(pcall(gsock.wait_read, fd, T)) end)
    gsock.sleep(0.05)
    ctx.sock = nil
    collectgarbage()
    collectgarbage()
    -- the next socket gets the number and becomes readable at once
    local c, s = pair()
    s:send("x")
    assert.is_true(f:join(1))
    assert.is_false(result[1], "woken as if ready")
    assert.equals("closed", kind_of(result[2]))
    c:close() s:close() ctx.peer:close()
  end)

  it("a watcher whose socket was closed under its wait waits again on a new socket with that number", function()
    local c, s = pair()
    local w = gsock.io(c:getfd(), "r")
    local f = gsock.spawn(function() return pcall(gsock.wait, w, T) end)
    gsock.sleep(0.05)
    c:close()
    assert.is_true(f:join(1))
    local c2, s2 = pair()
    if c2:getfd() == w:getfd() then
      s2:send("x")
      local ok, err = pcall(gsock.wait, w, 1)
      assert.is_true(ok, tostring(err))
    end
    w:close() s:close() c2:close() s2:close()
  end)
end)

describe("retry loops", function()
  it("on a closed socket return at once every time: 1000 receives take well under a second", function()
    local c, s = pair()
    c:close()
    local t0 = gsock.now()
    for _ = 1, 1000 do
      local data, err = c:receive()
      assert.is_nil(data)
      assert.equals("closed", err)
    end
    gsock.sleep(0)
    assert.is_true(gsock.now() - t0 < 0.5)
    s:close()
  end)

  it("on a timeout really wait: 5 receives with a 0.02 s timeout take at least 0.1 s", function()
    local c, s = pair()
    c:settimeout(0.02)
    local t0 = gsock.now()
    for _ = 1, 5 do
      local data, err = c:receive()
      assert.is_nil(data)
      assert.equals("timeout", err)
    end
    gsock.sleep(0)
    assert.is_true(gsock.now() - t0 >= 0.09, "took " .. (gsock.now() - t0))
    c:close() s:close()
  end)

  it("UDP: a receive woken by close() says 'closed'; later calls on the closed socket fail at once", function()
    local ctx = udp_pair()
    local result
    local f = gsock.spawn(function() result = table.pack(ctx.sock:receivefrom()) end)
    gsock.sleep(0.05)
    ctx.sock:close()
    assert.is_true(f:join(1))
    assert.is_nil(result[1])
    assert.equals("closed", result[2])
    local t0 = gsock.now()
    for _ = 1, 1000 do assert.is_nil((ctx.sock:receivefrom())) end
    gsock.sleep(0)
    assert.is_true(gsock.now() - t0 < 0.5)
    ctx.sender:close()
  end)
end)
