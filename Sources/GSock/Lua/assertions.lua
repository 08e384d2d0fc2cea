-- luassert's assertions for `gsockd test` (SPEC §7), so that test files move between
-- busted and gsockd unchanged.
--
-- `assert` is a callable table: `assert(v, message)` works as Lua's assert does, and
-- its fields are chains in luassert's grammar: words split on "_" and ".", made of
-- modifiers ("is", "are", "has", "not", "no", ...) and one assertion name last, as in
-- `assert.are.same`, `assert.is_not_nil`, `assert.has_no.errors`. "not" and "no" negate.
-- A failed assertion raises a Failure, a table whose tostring is the message; the
-- runner finds the test file's line on the stack, so no level arithmetic happens here.
local error, getmetatable, ipairs, math_type, pairs, pcall, rawequal, rawget, select, setmetatable,
      tostring, type =
      error, getmetatable, ipairs, math.type, pairs, pcall, rawequal, rawget, select, setmetatable,
      tostring, type
local concat, sort = table.concat, table.sort

local M = {}

-- Failures --------------------------------------------------------------------------

local Failure = { __name = "assertion failure" }
Failure.__tostring = function(f) return f.message end

local function fail(message)
  error(setmetatable({ message = message }, Failure), 0)
end

--- True when `e` was raised by a failed assertion.
function M.is_failure(e)
  return getmetatable(e) == Failure
end

-- Showing values --------------------------------------------------------------------

local function quote(s)
  local q = ("%q"):format(s):gsub("\\\n", "\\n")
  if not utf8.len(q) then  -- show bytes that are not text as Lua escapes
    q = q:gsub("[\128-\255]", function(c) return ("\\x%02X"):format(c:byte()) end)
  end
  return q
end

local function show_number(n)
  if math_type(n) == "float" and tonumber(tostring(n)) ~= n and n == n then
    return ("%.17g"):format(n)  -- tostring rounds to 14 digits: show what differs
  end
  return tostring(n)
end

local type_rank = { number = 1, string = 2, boolean = 3 }

local function key_before(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then return (type_rank[ta] or 4) < (type_rank[tb] or 4) end
  if ta == "number" or ta == "string" then return a < b end
  return tostring(a) < tostring(b)
end

--- The keys of `t` in a stable order: numbers, strings, booleans, then the rest.
local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  sort(keys, key_before)
  return keys
end

local keywords = {}
for w in ([[and break do else elseif end false for function goto if in local nil not or
            repeat return then true until while]]):gmatch("%a+") do keywords[w] = true end

local show

local function show_key(k, seen, depth)
  if type(k) == "string" and k:match("^[%a_][%w_]*$") and not keywords[k] then return k end
  return "[" .. show(k, seen, depth) .. "]"
end

local MAX_ITEMS, MAX_DEPTH = 20, 3

--- A one-line description of `v`: strings quoted, tables expanded a few levels deep.
function show(v, seen, depth)
  local t = type(v)
  if t == "string" then return quote(v) end
  if t == "number" then return show_number(v) end
  if t ~= "table" then return tostring(v) end
  local mt = getmetatable(v)
  if mt and rawget(mt, "__tostring") then
    local ok, s = pcall(tostring, v)
    if ok and type(s) == "string" then return s end
  end
  seen, depth = seen or {}, depth or 0
  if seen[v] then return "<cycle>" end
  if depth >= MAX_DEPTH then return "{...}" end
  seen[v] = true
  local parts, n = {}, #v
  for i = 1, n do
    if i > MAX_ITEMS then break end
    parts[#parts + 1] = show(rawget(v, i), seen, depth + 1)
  end
  for _, k in ipairs(sorted_keys(v)) do
    if not (math_type(k) == "integer" and k >= 1 and k <= n) then
      if #parts >= MAX_ITEMS then parts[#parts + 1] = "..."; break end
      parts[#parts + 1] = show_key(k, seen, depth + 1) .. " = " .. show(rawget(v, k), seen, depth + 1)
    end
  end
  seen[v] = nil
  if #parts == 0 then return "{}" end
  return "{ " .. concat(parts, ", ") .. " }"
end

M.show = show

local function expected_actual(expected, actual)
  return "expected: " .. show(expected) .. "\nactual:   " .. show(actual)
end

-- Deep comparison ---------------------------------------------------------------------

local function path_step(k)
  if math_type(k) == "integer" then return "[" .. k .. "]" end
  if type(k) == "string" and k:match("^[%a_][%w_]*$") and not keywords[k] then return "." .. k end
  return "[" .. show(k) .. "]"
end

local function is_nan(v) return v ~= v end

--- The path of the first difference between `e` and `a` (keys in sorted order), with the
--- two values there; nil when they are the same. Tables are compared by contents, except
--- that two tables sharing a metatable with __eq are compared with it.
local function difference(e, a, path, seen)
  if rawequal(e, a) then return nil end
  if type(e) ~= "table" or type(a) ~= "table" then
    if e == a or (is_nan(e) and is_nan(a)) then return nil end
    return path, e, a
  end
  local mt = getmetatable(e)
  if mt and mt == getmetatable(a) and rawget(mt, "__eq") then
    if e == a then return nil end
    return path, e, a
  end
  local pairs_seen = seen[e]
  if pairs_seen == nil then pairs_seen = {}; seen[e] = pairs_seen end
  if pairs_seen[a] then return nil end  -- a cycle: compared further up
  pairs_seen[a] = true
  for _, k in ipairs(sorted_keys(e)) do
    local p, x, y = difference(rawget(e, k), rawget(a, k), path .. path_step(k), seen)
    if p then return p, x, y end
  end
  for _, k in ipairs(sorted_keys(a)) do
    if rawget(e, k) == nil then return path .. path_step(k), nil, rawget(a, k) end
  end
  return nil
end

--- True when `e` and `a` are the same value or tables with the same contents.
function M.same(e, a)
  return difference(e, a, "", {}) == nil
end

-- The assertions --------------------------------------------------------------------
--
-- Each takes its arguments and returns whether it holds, and a function giving the
-- message for when it should (negated = false) or should not (negated = true) have held.

local assertions = {}

--- Registers `check` under each name. `arity` arguments are positional; then come up to
--- #optional arguments whose types are listed ("any" for any); the next one, if any, is
--- a message that precedes the assertion's own.
local function define(names, arity, optional, check)
  local def = { arity = arity, optional = optional, check = check }
  for name in names:gmatch("%S+") do assertions[name] = def end
end

define("equals equal", 2, {}, function(expected, actual)
  return expected == actual, function(negated)
    if negated then return "values are equal, expected them to differ\nboth:     " .. show(actual) end
    local m = "values are not equal\n" .. expected_actual(expected, actual)
    if type(expected) == "table" and type(actual) == "table" and M.same(expected, actual) then
      m = m .. "\n(two tables with the same contents: assert.same compares contents)"
    end
    return m
  end
end)

define("same", 2, {}, function(expected, actual)
  local path, e, a = difference(expected, actual, "t", {})
  return path == nil, function(negated)
    if negated then return "values are the same, expected them to differ\nboth:     " .. show(actual) end
    if path == "t" then return "values are not the same\n" .. expected_actual(expected, actual) end
    local missing = a == nil and " (missing)" or e == nil and " (not expected)" or ""
    return "values are not the same: first difference at " .. path .. missing .. "\n" .. expected_actual(e, a)
  end
end)

define("truthy", 1, {}, function(v)
  return not not v, function(negated)
    return (negated and "expected a falsy value, got " or "expected a truthy value, got ") .. show(v)
  end
end)

define("falsy falsey", 1, {}, function(v)
  return not v, function(negated)
    return (negated and "expected a truthy value, got " or "expected a falsy value, got ") .. show(v)
  end
end)

for _, constant in ipairs { "true", "false", "nil" } do
  local value = ({ ["true"] = true, ["false"] = false })[constant]
  define(constant, 1, {}, function(v)
    return v == value, function(negated)
      if negated then return "expected a value other than " .. constant .. ", got " .. show(v) end
      return "expected " .. constant .. ", got " .. show(v)
    end
  end)
end

for _, name in ipairs { "boolean", "number", "string", "table", "function", "userdata", "thread" } do
  define(name, 1, {}, function(v)
    return type(v) == name, function(negated)
      local article = name == "userdata" and "a " or name:match("^[aeiou]") and "an " or "a "
      if negated then return "expected a value that is not " .. article .. name .. ", got " .. show(v) end
      return "expected " .. article .. name .. ", got " .. type(v) .. " " .. show(v)
    end
  end)
end

local function check_number(v, what)
  if type(v) ~= "number" then
    error(("assert.near: %s must be a number, got %s"):format(what, type(v)), 0)
  end
end

define("near", 3, {}, function(expected, actual, tolerance)
  check_number(expected, "expected"); check_number(actual, "actual"); check_number(tolerance, "tolerance")
  return actual >= expected - tolerance and actual <= expected + tolerance, function(negated)
    local within = " within " .. show(tolerance) .. " of each other\n"
    if negated then return "values are" .. within .. expected_actual(expected, actual) end
    return "values are not" .. within .. expected_actual(expected, actual)
  end
end)

local function subject_string(v)
  if type(v) == "string" then return v end
  if type(v) == "number" then return tostring(v) end
  return nil
end

define("matches match", 2, { "number", "boolean" }, function(pattern, actual, init, plain)
  if type(pattern) ~= "string" then
    error("assert.matches: the pattern (argument 1) must be a string, got " .. type(pattern), 0)
  end
  local s = subject_string(actual)
  return s ~= nil and s:find(pattern, init, plain) ~= nil, function(negated)
    if s == nil then return "expected a string to match " .. quote(pattern) .. ", got " .. show(actual) end
    local head = negated and "string matches the pattern, expected it not to" or "string does not match the pattern"
    return head .. "\npattern:  " .. quote(pattern) .. "\nactual:   " .. quote(s)
  end
end)

local function check_callable(fn, name)
  local mt = getmetatable(fn)
  if type(fn) ~= "function" and not (mt and mt.__call) then
    error(("assert.%s: argument 1 must be a function, got %s"):format(name, type(fn)), 0)
  end
end

--- A raised error as luassert compares it: strings lose their "file:line: " prefix.
local function error_subject(err)
  if type(err) == "string" then return (err:gsub("^.-:%d+: ", "", 1)) end
  return err
end

local function error_text(err)
  local ok, s = pcall(tostring, err)
  return ok and type(s) == "string" and s or "(" .. type(err) .. ")"
end

define("error errors", 1, { "any" }, function(fn, ...)
  check_callable(fn, "has_error")
  local want_specific = select("#", ...) > 0 and (...) ~= nil
  local expected = ...
  local ok, err = pcall(fn)
  if ok then
    return false, function() return "expected an error, but the function returned normally" end
  end
  local actual = error_subject(err)
  local holds = true
  if want_specific then
    if type(expected) == "string" and type(actual) ~= "string" then actual = error_text(actual) end
    holds = M.same(expected, actual)
  end
  return holds, function(negated)
    if negated then return "expected no error, got: " .. show(actual) end
    return "the function raised a different error\n" .. expected_actual(expected, actual)
  end
end)

define("error_matches error_match matches_error", 2, { "number", "boolean" }, function(fn, pattern, init, plain)
  check_callable(fn, "error_matches")
  if type(pattern) ~= "string" then
    error("assert.error_matches: the pattern (argument 2) must be a string, got " .. type(pattern), 0)
  end
  local ok, err = pcall(fn)
  if ok then
    return false, function(negated)
      return "expected an error matching " .. quote(pattern) .. ", but the function returned normally"
    end
  end
  local s = error_subject(err)
  if type(s) ~= "string" then s = error_text(s) end
  return s:find(pattern, init, plain) ~= nil, function(negated)
    local head = negated and "the error matches the pattern, expected it not to"
                         or "the error does not match the pattern"
    return head .. "\npattern:  " .. quote(pattern) .. "\nerror:    " .. quote(s)
  end
end)

define("unique", 1, { "boolean" }, function(list, deep)
  if type(list) ~= "table" then error("assert.unique: argument 1 must be a table, got " .. type(list), 0) end
  local items = {}
  for _, v in pairs(list) do items[#items + 1] = v end
  for i = 1, #items do
    for j = i + 1, #items do
      if items[i] == items[j] or (deep and M.same(items[i], items[j])) then
        return false, function() return "the list has a repeated value: " .. show(items[i]) end
      end
    end
  end
  return true, function() return "every value of the list is unique, expected a repeated one" end
end)

-- Chains --------------------------------------------------------------------------------

local modifiers = {
  is = false, are = false, was = false, has = false, have = false, does = false, ["do"] = false,
  be = false, ["not"] = true, no = true,
}

--- Splits `key` into known words, longest first, so that "error_matches" stays one word.
local function words_of(key)
  local parts = {}
  for p in key:gmatch("[^_]+") do parts[#parts + 1] = p end
  local words, i = {}, 1
  while i <= #parts do
    local found
    for j = #parts, i, -1 do
      local candidate = concat(parts, "_", i, j)
      if modifiers[candidate] ~= nil or assertions[candidate] then
        found = candidate
        i = j + 1
        break
      end
    end
    if not found then return nil, concat(parts, "_", i) end
    words[#words + 1] = found
  end
  return words
end

local Chain = {}

local function run(def, name, negated, ...)
  local n = select("#", ...)
  local args = { ... }
  local count = def.arity
  for k, want in ipairs(def.optional) do
    local v = args[def.arity + k]
    if def.arity + k > n or not (want == "any" or type(v) == want or v == nil) then break end
    count = def.arity + k
  end
  local message = n > count and args[count + 1] or nil
  local holds, describe = def.check(table.unpack(args, 1, math.max(count, def.arity)))
  if holds == negated then
    local text = describe(negated)
    if message ~= nil then text = tostring(message) .. "\n" .. text end
    fail(text)
  end
  return ...
end

local Assertion = {
  __call = function(self, ...) return run(self.def, self.name, self.negated, ...) end,
  __name = "assertion",
}

local function resolve(negated, key)
  if type(key) ~= "string" then error("luassert: assertion names are strings, got " .. type(key), 3) end
  local words, unknown = words_of(key)
  if not words then error(("luassert: unknown assertion or modifier '%s'"):format(unknown), 3) end
  for i, w in ipairs(words) do
    local def = assertions[w]
    if def then
      if i < #words then
        error(("luassert: '%s' is an assertion, it cannot be followed by '%s'"):format(w, words[i + 1]), 3)
      end
      return setmetatable({ def = def, name = w, negated = negated }, Assertion)
    end
    if modifiers[w] then negated = not negated end
  end
  return setmetatable({ negated = negated }, Chain)
end

Chain.__index = function(self, key)
  local resolved = resolve(self.negated, key)  -- not a tail call: error levels count this frame
  return resolved
end
Chain.__name = "assertion chain"

--- `assert(v, message, ...)`: Lua's assert, raising a Failure.
local function plain_assert(_, v, ...)
  if v then return v, ... end
  local message = ...
  if message == nil then fail("assertion failed!") end
  if type(message) ~= "string" then error(message, 0) end
  fail(message)
end

M.assert = setmetatable({}, {
  __index = function(_, key)
    local resolved = resolve(false, key)
    return resolved
  end,
  __call = plain_assert,
  __name = "luassert",
})

return M
