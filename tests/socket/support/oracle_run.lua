-- Runs socket test files under plain lua5.4 with Debian's real (blocking) LuaSocket,
-- to check the tests' expectations against the oracle:
--
--   lua5.4 tests/socket/support/oracle_run.lua tests/socket/tcp_test.lua [more files]
--
-- A minimal busted look-alike. `gsock` is faked with blocking calls; tests that need
-- fibers (gsock.spawn, net.spawn, joins, kills) cannot run here and are reported as
-- "skip (needs fibers)". What fails here either is a gsockd extension (the test says
-- so in its name) or is a wrong expectation in the test.
GSOCKD_TEST_ORACLE = true
local socket = require "socket"

local NeedsFibers = setmetatable({}, { __tostring = function() return "needs fibers" end })
local Pending = {}

local function needs_fibers() error(NeedsFibers, 0) end
local fake_gsock = {
  sleep = function(t) socket.sleep(t or 0) end,
  now = socket.gettime,
  spawn = needs_fibers, spawn_later = needs_fibers, joinall = needs_fibers, killall = needs_fibers,
  with_timeout = needs_fibers, wait_read = needs_fibers, wait_write = needs_fibers,
}
package.loaded.gsock = fake_gsock
gsock = fake_gsock

-- assertions ----------------------------------------------------------------------
local function fmt(v) if type(v) == "string" then return ("%q"):format(v) end return tostring(v) end
local function same(a, b)
  if a == b then return true end
  if type(a) ~= "table" or type(b) ~= "table" then return false end
  for k, v in pairs(a) do if not same(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end
local function fail(msg, extra) error((msg or "assertion failed") .. (extra and (": " .. tostring(extra)) or ""), 3) end
local A = {}
function A.equals(e, a, m) if e ~= a then fail(("expected %s, got %s"):format(fmt(e), fmt(a)), m) end end
A.equal, A.are = A.equals, nil
function A.are_not() end
function A.same(e, a, m) if not same(e, a) then fail("not the same", m) end end
function A.is_nil(v, m) if v ~= nil then fail("expected nil, got " .. fmt(v), m) end end
function A.is_not_nil(v, m) if v == nil then fail("expected a value", m) end end
function A.is_true(v, m) if v ~= true then fail("expected true, got " .. fmt(v), m) end end
function A.is_false(v, m) if v ~= false then fail("expected false, got " .. fmt(v), m) end end
function A.truthy(v, m) if not v then fail("expected truthy", m) end end
function A.matches(p, s, m) if type(s) ~= "string" or not s:find(p) then fail(("%s does not match %s"):format(fmt(s), p), m) end end
function A.has_error(fn) local ok = pcall(fn); if ok then fail("expected an error") end end
function A.error_matches(fn, p)
  local ok, err = pcall(fn)
  if ok then fail("expected an error matching " .. p) end
  if not tostring(err):find(p) then fail(("error %s does not match %s"):format(fmt(tostring(err)), p)) end
end
A.are_not = setmetatable({}, { __index = function(_, k)
  if k == "equal" then return function(e, a) if e == a then fail("expected them to differ") end end end
end })
assert = setmetatable(A, { __call = function(_, v, m, ...) if not v then error(m or "assertion failed!", 2) end return v, m, ... end })

-- busted look-alike -----------------------------------------------------------------
local root = { children = {}, before = {}, after = {}, setup = {}, teardown = {} }
local current = root
function describe(name, fn)
  local b = { name = name, children = {}, before = {}, after = {}, setup = {}, teardown = {}, parent = current }
  table.insert(current.children, b)
  local saved = current; current = b; fn(); current = saved
end
function it(name, fn) table.insert(current.children, { name = name, fn = fn, block = current }) end
function before_each(fn) table.insert(current.before, fn) end
function after_each(fn) table.insert(current.after, fn) end
function setup(fn) table.insert(current.setup, fn) end
function teardown(fn) table.insert(current.teardown, fn) end
function pending(reason) error(setmetatable({ reason = reason }, { __index = Pending }), 0) end

local counts = { ok = 0, fail = 0, skip = 0 }
local function run_test(t, prefix)
  local chain, b = {}, t.block
  while b do table.insert(chain, 1, b); b = b.parent end
  local err
  local ok = true
  for _, blk in ipairs(chain) do
    for _, fn in ipairs(blk.before) do if ok then ok, err = pcall(fn) end end
  end
  if ok then ok, err = xpcall(t.fn, function(e)
    if e == NeedsFibers or (type(e) == "table" and e.reason) then return e end
    return debug.traceback(tostring(e), 2)
  end) end
  for i = #chain, 1, -1 do for _, fn in ipairs(chain[i].after) do pcall(fn) end end
  local name = prefix .. t.name
  if ok then counts.ok = counts.ok + 1; print("ok   " .. name)
  elseif err == NeedsFibers then counts.skip = counts.skip + 1; print("skip " .. name .. " (needs fibers)")
  elseif type(err) == "table" and err.reason then counts.skip = counts.skip + 1; print("skip " .. name .. " (" .. err.reason .. ")")
  else counts.fail = counts.fail + 1; print("FAIL " .. name .. "\n     " .. tostring(err):gsub("\n", "\n     ")) end
end
local function run_block(b, prefix)
  local ok, err = true, nil
  for _, fn in ipairs(b.setup) do if ok then ok, err = pcall(fn) end end
  if not ok then
    print("skip " .. prefix .. (b.name or "") .. " (setup: " .. tostring(err) .. ")")
  else
    for _, c in ipairs(b.children) do
      if c.fn then run_test(c, prefix) else run_block(c, prefix .. c.name .. " ") end
    end
  end
  for _, fn in ipairs(b.teardown) do pcall(fn) end
end

for _, file in ipairs(arg) do
  root = { children = {}, before = {}, after = {}, setup = {}, teardown = {} }
  current = root
  local chunk = assert(loadfile(file))
  local ok, err = pcall(chunk)
  if not ok then print("FAIL " .. file .. ": " .. tostring(err)); counts.fail = counts.fail + 1
  else run_block(root, "") end
end
print(("%d passed, %d failed, %d skipped (oracle: real LuaSocket %s)"):format(counts.ok, counts.fail, counts.skip, socket._VERSION))
