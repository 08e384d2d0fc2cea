-- luassert's names as `gsockd test` provides them: what passes, what fails, and the
-- messages of failures.

--- The message of the failure that fn raises (an error if it raises none).
local function failure_of(fn)
  local ok, err = pcall(fn)
  if ok then error("the assertion did not fail", 2) end
  return tostring(err)
end

describe("assertions", function()
  it("pass when they hold, through every chain luassert allows", function()
    assert.equals(1, 1)
    assert.equal("a", "a")
    assert.are.equal(true, true)
    assert.is.equal(1.5, 1.5)
    assert.are.same({ 1, { a = "x" } }, { 1, { a = "x" } })
    assert.same(0 / 0, 0 / 0)
    assert.is_true(true)
    assert.is_false(false)
    assert.is_nil(nil)
    assert.is_not_nil(false)
    assert.truthy(0)
    assert.is_truthy("")
    assert.falsy(false)
    assert.is_falsy(nil)
    assert.matches("^h.-o$", "hello")
    assert.matches("a.b", "a.b", 1, true)
    assert.does.match("%d", 5)
    assert.near(10, 10.4, 0.5)
    assert.is_not.near(10, 11, 0.5)
    assert.is_number(1)
    assert.is_string("s")
    assert.is_table({})
    assert.is_function(print)
    assert.is_not_string(1)
    assert.unique({ 1, 2, 3 })
    assert.is_not.unique({ { 1 }, { 1 } }, true)
  end)

  it("negate with not and no", function()
    assert.is_not.equal(1, 2)
    assert.are_not.equal(1, 2)
    assert.not_equals(1, 2)
    assert.are_not.same({ 1 }, { 2 })
    assert.is_not_true(1)
    assert.is_not_false(nil)
    assert.is_not.truthy(nil)
    assert.is_not.matches("x", "abc")
    assert.has_no.errors(function() end)
    assert.has_no_error(function() end)
  end)

  it("has_error compares the error without its position, or any error when none is given", function()
    assert.has_error(function() error("boom") end, "boom")
    assert.has_error(function() error("boom") end)
    assert.has.errors(function() error({ code = 1 }) end, { code = 1 })
    assert.error(function() error(setmetatable({}, { __tostring = function() return "obj" end })) end, "obj")
    assert.errors(function() error("x", 0) end, "x")
    assert.error_matches(function() error("code 42") end, "code %d+")
    assert.has_error(function() assert.equals(1, 2) end)
  end)

  it("describe a failed equality with expected and actual", function()
    assert.equals("values are not equal\nexpected: 3\nactual:   4", failure_of(function() assert.equals(3, 4) end))
    assert.equals('values are not equal\nexpected: "1"\nactual:   1', failure_of(function() assert.equals("1", 1) end))
    assert.matches("assert.same compares contents", failure_of(function() assert.equals({}, {}) end))
    assert.equals("values are equal, expected them to differ\nboth:     1",
                  failure_of(function() assert.are_not.equal(1, 1) end))
  end)

  it("describe the first difference of a deep comparison by its path", function()
    assert.equals("values are not the same: first difference at t.a[2]\nexpected: 2\nactual:   5",
                  failure_of(function() assert.same({ a = { 1, 2 } }, { a = { 1, 5 } }) end))
    assert.equals('values are not the same: first difference at t["two words"] (missing)\nexpected: 1\nactual:   nil',
                  failure_of(function() assert.same({ ["two words"] = 1 }, {}) end))
    assert.equals("values are not the same: first difference at t.extra (not expected)\nexpected: nil\nactual:   true",
                  failure_of(function() assert.same({}, { extra = true }) end))
    assert.equals("values are not the same\nexpected: { 1 }\nactual:   \"x\"",
                  failure_of(function() assert.same({ 1 }, "x") end))
  end)

  it("compare cyclic tables without looping", function()
    local a, b = { n = 1 }, { n = 1 }
    a.self, b.self = a, b
    assert.same(a, b)
    b.n = 2
    assert.matches("first difference at t.n", failure_of(function() assert.same(a, b) end))
  end)

  it("describe other failures", function()
    assert.equals("expected true, got 1", failure_of(function() assert.is_true(1) end))
    assert.equals("expected a value other than nil, got nil", failure_of(function() assert.is_not_nil(nil) end))
    assert.equals("expected a truthy value, got false", failure_of(function() assert.truthy(false) end))
    assert.equals('string does not match the pattern\npattern:  "^%d+$"\nactual:   "12a"',
                  failure_of(function() assert.matches("^%d+$", "12a") end))
    assert.equals("values are not within 0.1 of each other\nexpected: 1\nactual:   1.5",
                  failure_of(function() assert.near(1, 1.5, 0.1) end))
    assert.equals("expected an error, but the function returned normally",
                  failure_of(function() assert.has_error(function() end) end))
    assert.equals('the function raised a different error\nexpected: "b"\nactual:   "a"',
                  failure_of(function() assert.has_error(function() error("a") end, "b") end))
    assert.equals('expected no error, got: "zzz"',
                  failure_of(function() assert.has_no.errors(function() error("zzz") end) end))
    assert.equals("expected a string, got number 1", failure_of(function() assert.is_string(1) end))
  end)

  it("put a custom message first", function()
    assert.equals("sums differ\nvalues are not equal\nexpected: 1\nactual:   2",
                  failure_of(function() assert.equals(1, 2, "sums differ") end))
    assert.equals("no digits\nstring does not match the pattern\npattern:  \"%d\"\nactual:   \"x\"",
                  failure_of(function() assert.matches("%d", "x", "no digits") end))
  end)

  it("keep plain assert working", function()
    assert.same({ 1, "m", 3 }, { assert(1, "m", 3) })
    assert.equals("assertion failed!", failure_of(function() assert(false) end))
    assert.equals("connection refused", failure_of(function() assert(nil, "connection refused") end))
    local object = {}
    local ok, err = pcall(assert, false, object)
    assert.is_false(ok)
    assert.equals(object, err)
  end)

  it("reject names luassert does not have", function()
    assert.error_matches(function() return assert.equalz end, "unknown assertion or modifier 'equalz'")
    assert.error_matches(function() return assert.is_equal_not end, "cannot be followed by 'not'")
    assert.error_matches(function() assert.near("a", 1, 1) end, "expected must be a number")
  end)

  it("are what require 'luassert' and require 'busted' give", function()
    assert.equals(assert, require("luassert"))
    assert.equals(assert, require("busted").assert)
    assert.equals(it, require("busted").it)
  end)
end)
