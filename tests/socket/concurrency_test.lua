-- Cooperative sockets under concurrency (SPEC §4): many fibers on one loop, full
-- duplex on one socket, "busy" for a second reader or writer, close() from another
-- fiber, and a blocked receive that blocks only its own fiber.
local gsock = require "gsock"
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/socket/"
local net = dofile(here .. "support/net.lua")
local socket = net.socket()

after_each(net.cleanup)

describe("many fibers", function()
  it("200 client fibers x 50 line round trips against an in-test echo server, all data checked", function()
    local server = net.serve(net.echo_lines)
    local clients, ok_count, problems = {}, 0, {}
    for k = 1, 200 do
      clients[k] = net.spawn(function()
        local c, err = socket.connect("127.0.0.1", server.port)
        if not c then problems[#problems + 1] = "connect " .. k .. ": " .. tostring(err); return end
        net.track(c)
        c:settimeout(5)
        for i = 1, 50 do
          local line = ("client %d line %d %s"):format(k, i, string.rep(string.char(65 + (k + i) % 26), i))
          local sent, serr = c:send(line .. "\n")
          if not sent then problems[#problems + 1] = ("send %d/%d: %s"):format(k, i, serr); return end
          local back, rerr = c:receive("*l")
          if back ~= line then
            problems[#problems + 1] = ("client %d line %d: got %s (%s)"):format(k, i, tostring(back), tostring(rerr))
            return
          end
        end
        c:close()
        ok_count = ok_count + 1
      end)
    end
    local t0 = net.now()
    local done = gsock.joinall(clients, 8)
    assert.equals(200, #done, "only " .. #done .. " clients finished in 8 s (" .. (gsock.now() - t0) .. " s)")
    assert.same({}, problems)
    assert.equals(200, ok_count)
    assert.equals(200, server.accepted)
    assert.is_nil(server.error)
  end)
end)

describe("full duplex", function()
  it("8 MiB each way at once on the same sockets: one fiber sends while another receives", function()
    local c, s = net.pair()
    c:settimeout(8); s:settimeout(8)
    local size = 8 * 1024 * 1024
    local up, down = net.pattern_bytes(size, 1), net.pattern_bytes(size, 2)
    local got_up, got_down, results = nil, nil, {}
    local fibers = {
      net.spawn(function() results.c_send = table.pack(c:send(up)) end),
      net.spawn(function() results.s_send = table.pack(s:send(down)) end),
      net.spawn(function() local d, e, p = s:receive(size); got_up = d or p; results.s_recv = e end),
      net.spawn(function() local d, e, p = c:receive(size); got_down = d or p; results.c_recv = e end),
    }
    local done = gsock.joinall(fibers, 9)
    assert.equals(4, #done, "the transfer did not finish in 9 s (a send blocking the receive would deadlock)")
    for _, f in ipairs(fibers) do assert.is_true(f:successful(), tostring(f.error)) end
    assert.equals(size, results.c_send[1], tostring(results.c_send[2]))
    assert.equals(size, results.s_send[1], tostring(results.s_send[2]))
    assert.is_nil(results.s_recv)
    assert.is_nil(results.c_recv)
    assert.equals(size, #got_up)
    assert.equals(size, #got_down)
    assert.is_true(got_up == up, "the client-to-server stream was corrupted")
    assert.is_true(got_down == down, "the server-to-client stream was corrupted")
  end)

  it("a fiber may send while another is blocked receiving on the same socket", function()
    local c, s = net.pair()
    s:settimeout(3); c:settimeout(3)
    local got
    local reader = net.spawn(function() got = table.pack(c:receive("*l")) end)
    gsock.sleep(0.05)
    assert.is_false(reader:dead())                       -- blocked in receive
    assert.equals(5, c:send("ping\n"))                   -- the same socket, another fiber
    assert.equals("ping", s:receive())
    s:send("pong\n")
    assert.is_true(reader:join(2))
    assert.equals("pong", got[1])
  end)
end)

describe("busy", function()
  it("a second fiber receiving on a socket that already has a reader gets nil, 'busy' at once", function()
    local c, s = net.pair()
    s:settimeout(3)
    local first
    local reader = net.spawn(function() first = table.pack(s:receive("*l")) end)
    gsock.sleep(0.05)
    assert.is_false(reader:dead())
    local r, dt = net.timed(s.receive, s, "*l")
    assert.is_nil(r[1])
    assert.equals("busy", r[2])
    assert.is_true(dt < 0.05, "the second receive took " .. dt .. " s")
    -- the first reader is unaffected
    c:send("for the first\n")
    assert.is_true(reader:join(2))
    assert.equals("for the first", first[1])
    -- once it is done, another receive is fine
    c:send("again\n")
    assert.equals("again", s:receive())
  end)

  it("a refused second receive leaves the first one's partial line and prefix alone", function()
    local c, s = net.pair()
    s:settimeout(3)
    local first
    local reader = net.spawn(function() first = table.pack(s:receive("*l", "pre-")) end)
    c:send("hel")
    gsock.sleep(0.05)                       -- the reader has "hel" and waits for the rest
    assert.is_false(reader:dead())
    local r = table.pack(s:receive("*l", "XYZ"))
    assert.is_nil(r[1])
    assert.equals("busy", r[2])
    c:send("lo\n")
    assert.is_true(reader:join(2))
    assert.equals("pre-hello", first[1])
  end)

  it("a second fiber sending while a send is blocked gets nil, 'busy' at once", function()
    local c, s = net.pair()
    c:settimeout(3)
    local big = string.rep("z", 32 * 1024 * 1024)      -- more than the socket buffers hold
    local writer = net.spawn(function() return c:send(big) end)
    gsock.sleep(0.1)
    assert.is_false(writer:dead(), "the big send did not block (is the peer reading?)")
    local r, dt = net.timed(c.send, c, "x")
    assert.is_nil(r[1])
    assert.equals("busy", r[2])
    assert.is_true(dt < 0.05, "the second send took " .. dt .. " s")
    c:close()
    assert.is_true(writer:join(2))
  end)

  it("a second fiber accepting on a server that already has an acceptor gets nil, 'busy'", function()
    local srv, port = net.listen()
    srv:settimeout(3)
    local got
    local acceptor = net.spawn(function() got = table.pack(srv:accept()) end)
    gsock.sleep(0.05)
    local r = table.pack(srv:accept())
    assert.is_nil(r[1])
    assert.equals("busy", r[2])
    local c = net.track(assert(socket.connect("127.0.0.1", port)))
    assert.is_true(acceptor:join(2))
    net.track(got[1])
    assert.matches("^tcp{client}: ", tostring(got[1]))
  end)
end)

describe("close from another fiber", function()
  it("wakes a blocked receive with nil, 'closed'", function()
    local c, s = net.pair()
    local got
    local reader = net.spawn(function() got = table.pack(s:receive("*l")) end)
    gsock.sleep(0.05)
    assert.is_false(reader:dead())
    local t0 = net.now()
    assert.equals(1, s:close())
    assert.is_true(reader:join(1), "the blocked receive was not woken by close()")
    assert.is_true(gsock.now() - t0 < 0.5)
    assert.is_true(reader:successful(), tostring(reader.error))   -- returned, did not raise
    assert.is_nil(got[1])
    assert.equals("closed", got[2])
  end)

  it("wakes a blocked receive with the partial data read so far", function()
    local c, s = net.pair()
    local got
    local reader = net.spawn(function() got = table.pack(s:receive(10)) end)
    c:send("abc")
    gsock.sleep(0.05)
    s:close()
    assert.is_true(reader:join(1))
    assert.is_nil(got[1])
    assert.equals("closed", got[2])
    assert.equals("abc", got[3])
  end)

  it("wakes a blocked send with nil, 'closed'", function()
    local c, s = net.pair()
    local got
    local writer = net.spawn(function() got = table.pack(c:send(string.rep("w", 32 * 1024 * 1024))) end)
    gsock.sleep(0.1)
    assert.is_false(writer:dead())
    c:close()
    assert.is_true(writer:join(1), "the blocked send was not woken by close()")
    assert.is_true(writer:successful(), tostring(writer.error))
    assert.is_nil(got[1])
    assert.equals("closed", got[2])
  end)

  it("wakes a blocked accept with nil, 'closed'", function()
    local srv = net.listen()
    local got
    local acceptor = net.spawn(function() got = table.pack(srv:accept()) end)
    gsock.sleep(0.05)
    srv:close()
    assert.is_true(acceptor:join(1), "the blocked accept was not woken by close()")
    assert.is_nil(got[1])
    assert.equals("closed", got[2])
  end)
end)

describe("blocking only the calling fiber", function()
  it("a fiber blocked in receive lets another fiber keep counting", function()
    local c, s = net.pair()
    local count, got = 0, nil
    local reader = net.spawn(function() got = s:receive("*l") end)
    local counter = net.spawn(function()
      while not got do count = count + 1; gsock.sleep(0.005) end
    end)
    gsock.sleep(0.2)
    assert.is_nil(got)
    assert.is_true(count >= 10, "the counter advanced only " .. count .. " times in 0.2 s")
    c:send("done\n")
    assert.is_true(reader:join(2))
    assert.equals("done", got)
    assert.is_true(counter:join(1))
  end)

  it("a fiber blocked in accept and one blocked in connect-less receive run alongside a sleeping fiber", function()
    local srv, port = net.listen()
    local c, s = net.pair()
    local ticks = 0
    local a = net.spawn(function() return srv:accept() end)
    local r = net.spawn(function() return s:receive(1) end)
    local t = net.spawn(function() for _ = 1, 10 do gsock.sleep(0.01); ticks = ticks + 1 end end)
    assert.is_true(t:join(2))
    assert.equals(10, ticks)
    assert.is_false(a:dead()); assert.is_false(r:dead())
    local cc = net.track(assert(socket.connect("127.0.0.1", port)))
    c:send("!")
    assert.is_true(a:join(2)); assert.is_true(r:join(2))
    net.track(a:get())
    assert.equals("!", r:get())
  end)
end)
