-- The request's header fields become Lua strings only when the handler reads them (SPEC §11,
-- issue 13): the host copies the head into the request object as bytes and parses it in C;
-- req.headers is made on its first read, req:header_values(name) makes only that field's
-- values. The observable is the Lua heap (collectgarbage("count"), the collector stopped):
-- a request of 90 fields of 500 bytes costs its head's bytes when no header is read, and
-- about twice that when they all are.
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/http/"
local wire = dofile(here .. "support/wire.lua")

local FIELDS, VALUE_BYTES = 90, 500
local KIB = 1024

local function name_of(i) return ("X-Lazy-%02d"):format(i) end
local function value_of(i) return (string.char(64 + i % 26)):rep(VALUE_BYTES - 3) .. ("%03d"):format(i) end

--- A request to `path` carrying the FIELDS header fields; its head's bytes are all copied
--- into the request object, so they are the least a request can cost in the Lua heap.
local function big_request(path)
  local t = { "GET " .. path .. " HTTP/1.1\r\n" }
  for i = 1, FIELDS do t[#t + 1] = name_of(i) .. ": " .. value_of(i) .. "\r\n" end
  t[#t + 1] = "\r\n"
  return table.concat(t)
end

--- Sends `request` `n` times on one connection with the collector stopped; returns how
--- many bytes the Lua heap grew by per request, measured at the handler's entry (the first
--- request, which may start a thread, is not counted).
local function growth_per_request(srv, marks, request, n)
  local c = wire.connect(srv)
  for k in pairs(marks) do marks[k] = nil end
  collectgarbage()
  collectgarbage("stop")
  for _ = 1, n do
    assert(c:send(request))
    local r = assert(wire.read(c))
    assert.equals(200, r.status, r.body)
  end
  collectgarbage("restart")
  c:close()
  assert.equals(n, #marks)
  return (marks[n] - marks[1]) / (n - 1)
end

--- The Lua heap's bytes in use.
local function heap() return collectgarbage("count") * 1024 end

describe("HTTP request headers are made lazily", function()
  -- /none and /all: the heap at the handler's entry goes to `marks`; /all then reads every
  -- field. /read: what each step of reading the fields cost and what it gave go to `seen`.
  local srv, marks, seen
  before_each(function()
    marks, seen = {}, {}
    srv = gsock.http.server("127.0.0.1:0", function(req)
      local entered = heap()
      local path = req.path
      if path == "/read" then
        collectgarbage("stop")
        local c0 = heap()
        seen.values7 = req:header_values("x-LAZY-07")
        local c1 = heap()
        local headers = req.headers
        local c2 = heap()
        seen.again = rawequal(headers, req.headers)
        local c3 = heap()
        collectgarbage("restart")
        seen.one_field, seen.first_read, seen.second_read = c1 - c0, c2 - c1, c3 - c2
        seen.lower, seen.upper, seen.mixed = headers["x-lazy-42"], headers["X-LAZY-42"], req.headers["X-Lazy-42"]
        seen.absent = headers["x-lazy-91"]
        seen.all = {}
        for k, v in pairs(headers) do seen.all[k] = v end
        return 200, "read"
      end
      marks[#marks + 1] = entered
      if path == "/all" then
        for _ in pairs(req.headers) do end
      end
      return 200, "measured"
    end):start()
  end)
  after_each(function()
    collectgarbage("restart")
    srv:stop()
  end)

  it("a handler that never reads req.headers costs the head's bytes per request, no string per field", function()
    local none, all = big_request("/none"), big_request("/all")
    assert.is_true(#none > FIELDS * VALUE_BYTES)
    local lazy = growth_per_request(srv, marks, none, 6)
    local read = growth_per_request(srv, marks, all, 6)
    local note = ("head %d B; per request: %.0f B untouched, %.0f B read"):format(#none, lazy, read)
    -- The request object holds the head (#none bytes) and 16 bytes of offsets per field.
    assert.is_true(lazy >= #none, note)
    assert.is_true(lazy - #none <= 6 * KIB, note)
    -- Reading them makes FIELDS strings of VALUE_BYTES and their table: the measure sees it.
    assert.is_true(read - lazy >= 40 * KIB, note)
  end)

  it("req.headers is made at its first read (its strings are made then, not before) and kept for the next", function()
    assert.equals(200, wire.once(srv, big_request("/read")).status)
    local note = ("first read %d B, second %d B"):format(seen.first_read, seen.second_read)
    assert.is_true(seen.first_read >= 40 * KIB, note)
    assert.is_true(seen.again)
    assert.is_true(seen.second_read <= 256, note)
  end)

  it("req:header_values(name) makes that field's strings only", function()
    assert.equals(200, wire.once(srv, big_request("/read")).status)
    assert.same({ value_of(7) }, seen.values7)
    assert.is_true(seen.one_field <= 2 * KIB, ("req:header_values made %d B"):format(seen.one_field))
  end)

  it("gives each field's value in any spelling of its name, and every field to pairs, by its lower-case name", function()
    assert.equals(200, wire.once(srv, big_request("/read")).status)
    assert.equals(value_of(42), seen.lower)
    assert.equals(value_of(42), seen.upper)
    assert.equals(value_of(42), seen.mixed)
    assert.is_nil(seen.absent)
    local expected = {}
    for i = 1, FIELDS do expected[name_of(i):lower()] = value_of(i) end
    assert.same(expected, seen.all)
  end)
end)
