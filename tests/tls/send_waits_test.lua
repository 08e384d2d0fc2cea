-- TLS send waits, ended every way a wait can end (SPEC §10: a TLS connection is "the same
-- kind of socket object": timeouts, close from another fiber, kill, reset), the row that
-- wait_matrix_test.lua has for receives. Both ends are in gsockd (tls.pair()): the server
-- end never reads, so a large send fills the socket buffers and parks. Retry loops on the
-- errors must wait or end, never spin; settimeouts' send and read parts bound each side.
local gsock = require "gsock"
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/tls/"
local tls = dofile(here .. "support/tls.lua")

setup(tls.setup)
teardown(tls.teardown)
after_each(tls.cleanup)

local BIG = ("s"):rep(32 * 1024 * 1024)   -- far more than the socket buffers of both ends hold

--- A fiber sending BIG on `conn`; returns it and a table that gets the send's results.
--- Fails unless the send is still parked 0.1 s later.
local function parked_send(conn)
  local result = {}
  local f = tls.spawn(function() result.r = table.pack(conn:send(BIG)) end)
  gsock.sleep(0.1)
  assert.is_nil(result.r, "the send did not park: " .. tostring(result.r and result.r[2]))
  return f, result
end

--- Asserts the shape of a send that ended before its end: nil, `err`, a partial index.
local function assert_partial(r, err)
  assert.is_nil(r[1], "the send returned " .. tostring(r[1]))
  if err then assert.equals(err, r[2]) else assert.equals("string", type(r[2])) end
  assert.equals("number", type(r[3]), "no partial index: " .. tostring(r[3]))
  assert.is_true(r[3] > 0 and r[3] < #BIG, "partial index " .. tostring(r[3]))
end

--- Sends BIG on `conn`: the results (packed) and how long it took.
local function timed_send(conn)
  local t0 = tls.now()
  local r = table.pack(conn:send(BIG))
  return r, tls.now() - t0
end

--- Asserts that a wait of about 0.2 s took about that.
local function assert_about_short(took)
  assert.is_true(took >= 0.15 and took < 1, "took " .. took .. " s, not about 0.2 s")
end

--- Another pair still talks: the process and the loop are fine.
local function assert_others_fine()
  local conn, server = tls.pair()
  assert.equals(5, conn:send("fine\n"))
  assert.equals("fine", server:receive("*l"))
  assert.equals(4, server:send("ok!\n"))
  assert.equals("ok!", conn:receive("*l"))
end

describe("a TLS send parked on a peer that does not read", function()
  before_each(tls.ready)

  it("ends when another fiber closes the conn: nil, 'closed', the partial index (LuaSocket's shape), at once",
    function()
      local conn = tls.pair()
      conn:settimeout(10)
      local f, result = parked_send(conn)
      local t0 = tls.now()
      conn:close()
      assert.is_true(f:join(1.5), "the send did not end after close()")
      assert.is_true(tls.now() - t0 < 1, "woke " .. (tls.now() - t0) .. " s after close")
      assert_partial(result.r, "closed")
      assert_others_fine()
    end)

  -- SPEC §2: kill raises "killed" at the wait point; it says nothing of the socket, which
  -- stays open as a plain TCP one does (tests/core/wait_matrix_test.lua). Half a TLS record
  -- may be written when the fiber dies: the stream must stay whole for the peer.
  it("ends when its fiber is killed ('killed' in the fiber); the conn stays whole: the peer reads the "
    .. "partial data, then a later send, intact; the loop serves others", function()
    local conn, server = tls.pair()
    conn:settimeout(10)
    local f = parked_send(conn)
    f:kill()
    assert.is_true(f:dead())
    assert.equals("killed", type(f.error) == "table" and f.error.kind or f.error)
    conn:settimeout(5)
    local n, err = conn:send("END\n")
    assert.equals(4, n, "a send after the kill failed: " .. tostring(err))
    server:settimeout(2)
    local parts = {}
    repeat
      local chunk, rerr, partial = server:receive(65536)
      chunk = chunk or partial
      parts[#parts + 1] = chunk
      assert.truthy(rerr == nil or #chunk > 0 or chunk:find("END\n$"), "the peer's receive failed: " .. tostring(rerr))
    until chunk:find("END\n$") or rerr
    local data = table.concat(parts)
    assert.matches("END\n$", data, "the peer did not get the data sent after the kill")
    assert.is_true(#data > 4 and #data < #BIG, "the peer got " .. #data .. " bytes")
    assert.is_nil(data:sub(1, -5):find("[^s]"), "the stream the peer got is not the data sent")
    assert_others_fine()
  end)

  it("ends promptly when the peer resets: nil, an error ('closed' or the reason), the partial index", function()
    local conn, server = tls.pair()
    conn:settimeout(10)
    local f, result = parked_send(conn)
    local t0 = tls.now()
    server:setoption("linger", { on = true, timeout = 0 })
    server:close()
    assert.is_true(f:join(1.5), "the send did not end after the reset")
    assert.is_true(tls.now() - t0 < 1, "woke " .. (tls.now() - t0) .. " s after the reset")
    assert_partial(result.r)
    local n, err = conn:send("again")
    assert.is_nil(n)
    assert.equals("string", type(err))
    assert_others_fine()
  end)

  it("times out with settimeout(0.2): nil, 'wantwrite' (LuaSec's word, SPEC §10), the partial index, "
    .. "after about 0.2 s", function()
    local conn = tls.pair()
    conn:settimeout(0.2)
    local r, took = timed_send(conn)
    assert_partial(r, "wantwrite")
    assert_about_short(took)
  end)
end)

describe("TLS send retry loops", function()
  before_each(tls.ready)

  it("after 'closed': 100 retries return nil, 'closed' at once (well under a second)", function()
    local conn = tls.pair()
    conn:settimeout(10)
    local f, result = parked_send(conn)
    conn:close()
    assert.is_true(f:join(1.5))
    assert.equals("closed", result.r[2])
    local t0, cpu0 = tls.now(), tls.cpu()
    for _ = 1, 100 do
      local n, err = conn:send(BIG)
      assert.is_nil(n)
      assert.equals("closed", err)
    end
    assert.is_true(tls.now() - t0 < 0.5, "100 retries took " .. (tls.now() - t0) .. " s")
    assert.is_true(tls.cpu() - cpu0 < 0.3)
  end)

  it("after 'wantwrite': each retry really waits (5 retries of 0.05 s take at least 0.2 s, little CPU)", function()
    local conn = tls.pair()
    conn:settimeout(0.1)
    local first = table.pack(conn:send(BIG))
    assert_partial(first, "wantwrite")
    conn:settimeout(0.05)
    local t0, cpu0 = tls.now(), tls.cpu()
    for i = 1, 5 do
      local n, err, last = conn:send(BIG, first[3] + 1)
      assert.is_nil(n, "retry " .. i .. " sent it all")
      assert.equals("wantwrite", err)
      assert.equals("number", type(last))
    end
    local took = tls.now() - t0
    assert.is_true(took >= 0.2, "5 retries took " .. took .. " s: they did not wait")
    assert.is_true(tls.cpu() - cpu0 < 0.2, "used " .. (tls.cpu() - cpu0) .. " s of CPU")
  end)
end)

describe("settimeouts(connect, send, read) on a TLS connection", function()
  before_each(tls.ready)

  it("its send part bounds a send (0.2 s), not its read part (5 s)", function()
    local conn = tls.pair()
    conn:settimeouts(5, 0.2, 5)
    local r, took = timed_send(conn)
    assert_partial(r, "wantwrite")
    assert_about_short(took)
  end)

  it("its read part bounds a receive (0.2 s), not its send part (5 s); the read part does not cut a send", function()
    local conn, server = tls.pair()
    conn:settimeouts(5, 5, 0.2)
    local t0 = tls.now()
    assert.same({ nil, "wantread", "" }, { conn:receive("*l") })
    assert_about_short(tls.now() - t0)
    -- a send that waits 0.6 s for the peer to start reading outlives the 0.2 s read part
    local reader = tls.spawn(function()
      gsock.sleep(0.6)
      server:settimeout(5)
      server:receive(#BIG)
    end)
    local r, took = timed_send(conn)
    assert.equals(#BIG, r[1], "the send failed after " .. took .. " s: " .. tostring(r[2]))
    assert.is_true(took >= 0.5)
    assert.is_true(reader:join(5))
  end)
end)
