-- `gsockd test` run on its fixture suite (tests/fixtures/runner) through the binary:
-- the counts line, the exit status, failures with the test file's line, hook order,
-- timeouts, leak clean-up, --list, --filter and the JUnit report.
--
-- gsockd sets GSOCKD_BIN to its own executable. The fixtures mark the lines where a
-- failure must be reported with "-- FAIL: name", so that editing them does not break
-- line numbers here.

local bin = os.getenv("GSOCKD_BIN")
local tests_dir = debug.getinfo(1, "S").source:match("^@(.*)/runner/[^/]+$") or "tests"
local fixtures = tests_dir .. "/fixtures/runner"

local function quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local data = f:read("a")
  f:close()
  return data
end

--- Runs `gsockd test ARGS`; returns its stdout, exit status and stderr.
local function gsockd_test(args)
  assert(bin, "GSOCKD_BIN is not set: run this file with `gsockd test`")
  local errors = os.tmpname()
  local p = assert(io.popen(("timeout 60 %s test %s 2>%s"):format(quote(bin), args, quote(errors))))
  local output = p:read("a")
  local _, _, status = p:close()
  local stderr = read_file(errors)
  os.remove(errors)
  return output, status, stderr
end

local function lines_of(text)
  local lines = {}
  for line in text:gmatch("[^\n]+") do lines[#lines + 1] = line end
  return lines
end

--- `file:N` for the line of `file` marked "-- FAIL: name".
local function marked(file, name)
  local path = fixtures .. "/" .. file
  local n = 0
  for line in io.lines(path) do
    n = n + 1
    if line:find("-- FAIL: " .. name, 1, true) then return path .. ":" .. n end
  end
  error("no line marked '-- FAIL: " .. name .. "' in " .. path)
end

--- Asserts that `text` holds `piece` literally.
local function has(text, piece)
  assert(text:find(piece, 1, true), ("output lacks [[%s]]:\n%s"):format(piece, text))
end

--- The lines of `text` from the one equal to `first` up to (not including) the next
--- test or note line.
local function section(text, first)
  local out, inside = {}, false
  for _, line in ipairs(lines_of(text)) do
    if inside and (line:match("^ok  ") or line:match("^FAIL ") or line:match("^skip ") or line:match("^note ")) then
      break
    end
    if line == first then inside = true end
    if inside then out[#out + 1] = line end
  end
  assert(#out > 0, ("no line %q in:\n%s"):format(first, text))
  return table.concat(out, "\n")
end

describe("gsockd test on the fixture suite", function()
  local output, status, stderr, junit_path

  setup(function()
    junit_path = os.tmpname()
    output, status, stderr = gsockd_test(("%s --timeout 0.5 --junit %s"):format(quote(fixtures), quote(junit_path)))
  end)

  teardown(function()
    if junit_path then os.remove(junit_path) end
  end)

  it("ends with the counts line and fails", function()
    local lines = lines_of(output)
    assert.equals("9 passed, 11 failed, 3 skipped", lines[#lines])
    assert.equals(1, status)
  end)

  it("prints a line per test", function()
    for _, line in ipairs {
      "ok   basic passes", "ok   basic waits in its own fiber", "FAIL basic fails an equality",
      "skip basic is pending", "skip basic has no body yet", "skip basic skips itself (not ready)",
      "ok   outer first", "ok   outer inner second", "ok   hang runs after the hangs",
    } do
      has("\n" .. output, "\n" .. line .. "\n")
    end
  end)

  it("lists every failed test again above the counts, with its file and line", function()
    local list = output:match("\nfailed:\n(.-)\n%d+ passed")
    assert.truthy(list, "a 'failed:' list before the counts line")
    local names = {}
    for line in list:gmatch("[^\n]+") do names[#names + 1] = line end
    assert.equals(11, #names, "one line per failure")
    has(list, "  basic fails an equality (" .. fixtures .. "/basic_spec.lua:")
    has(list, "  hang sleeps forever (" .. fixtures .. "/hang_spec.lua:")
    has(list, "  " .. fixtures .. "/syntax_error_spec.lua")
  end)

  it("reports assertion failures at the test file's line, with expected and actual", function()
    local equal = section(output, "FAIL basic fails an equality")
    has(equal, marked("basic_spec.lua", "equal") .. ": values are not equal")
    has(equal, "expected: 3")
    has(equal, "actual:   4")
    local same = section(output, "FAIL basic fails a deep comparison")
    has(same, marked("basic_spec.lua", "same") .. ": values are not the same: first difference at t.a[2]")
    has(same, "expected: 2")
    has(same, "actual:   5")
    has(section(output, "FAIL basic fails a plain assert"), marked("basic_spec.lua", "plain") .. ": plain message")
  end)

  it("reports errors at the line that raised them", function()
    has(section(output, "FAIL basic raises an error"),
        marked("basic_spec.lua", "error") .. ": attempt to index a nil value (local 't')")
  end)

  it("times out a hanging test where it waits, and goes on", function()
    has(section(output, "FAIL hang sleeps forever"), marked("hang_spec.lua", "hang") .. ": timed out after 0.5 s")
    local stubborn = section(output, "FAIL hang ignores the timeout")
    has(stubborn, "timed out after 0.5 s")
    has(stubborn, "ignored being killed twice and was abandoned")
  end)

  it("runs hooks in busted's order", function()
    has(output, "\nhook order: setup before first after inner-setup before inner-before second "
                .. "inner-after after inner-teardown teardown after-of-failed teardown-of-broken\n")
    has(section(output, "FAIL failing before_each is not run"),
        marked("hooks_spec.lua", "before_each") .. ": before_each failed")
    has(section(output, "FAIL broken setup (setup)"), marked("hooks_spec.lua", "setup") .. ": setup failed")
    assert.is_nil(output:find("not-run", 1, true))
  end)

  it("kills the fibers and closes the resources a test leaves", function()
    assert.matches("\n     fiber %d+ was left running: killed\n",
                   section(output, "ok   leaks leaves a fiber running") .. "\n")
    has(section(output, "ok   leaks leaves a resource open"), "fake socket was left open: closed")
    has(output, "\nok   leaks starts clean\n")
    has(output, "\nok   leaks finds it closed\n")
  end)

  it("reports a file that does not compile or raises at its top level as one failure", function()
    has(section(output, "FAIL " .. fixtures .. "/syntax_error_spec.lua"),
        marked("syntax_error_spec.lua", "syntax") .. ": unexpected symbol near '='")
    has(section(output, "FAIL " .. fixtures .. "/top_error_spec.lua"),
        marked("top_error_spec.lua", "top") .. ": top level failure")
  end)

  it("logs nothing on stderr", function()
    assert.equals("", stderr)
  end)

  it("writes a JUnit report that parses", function()
    local script = [[
import sys, xml.etree.ElementTree as E
root = E.parse(sys.argv[1]).getroot()
print(root.tag, root.get("tests"), root.get("failures"), root.get("skipped"))
for s in root.iter("testsuite"):
    print("suite", s.get("name").rsplit("/", 1)[-1], s.get("tests"), s.get("failures"), s.get("skipped"))
for c in root.iter("testcase"):
    state = "failure" if c.find("failure") is not None else "skipped" if c.find("skipped") is not None else "ok"
    print("case", state, c.get("name"))
]]
    local p = assert(io.popen(("python3 -c %s %s"):format(quote(script), quote(junit_path))))
    local report = p:read("a")
    assert.is_true(p:close())
    local lines = lines_of(report)
    assert.equals("testsuites 23 11 3", lines[1])
    assert.same({
      "suite basic_spec.lua 10 5 3", "suite hang_spec.lua 3 2 0", "suite hooks_spec.lua 4 2 0",
      "suite leak_spec.lua 4 0 0", "suite syntax_error_spec.lua 1 1 0", "suite top_error_spec.lua 1 1 0",
    }, { table.unpack(lines, 2, 7) })
    has(report, "case failure basic fails an equality\n")
    has(report, "case failure basic escapes <xml> & \"quotes\" 'in' reports \\x01 \\xFF\n")
    has(report, "case skipped basic is pending\n")
    has(report, "case ok outer inner second\n")
    has(report, "case failure broken setup (setup)\n")
    has(report, "case failure " .. fixtures .. "/syntax_error_spec.lua\n")
  end)
end)

describe("gsockd test options", function()
  it("--list lists file:line: name and runs nothing", function()
    local output, status = gsockd_test("--list " .. quote(fixtures .. "/hooks_spec.lua"))
    local path = fixtures .. "/hooks_spec.lua"
    assert.same({
      path .. ":14: outer first", path .. ":22: outer inner second",
      path .. ":30: failing before_each is not run", path .. ":37: broken setup is not run either",
    }, lines_of(output))
    assert.equals(0, status)
  end)

  it("--filter runs the tests whose full name matches", function()
    local output, status = gsockd_test(quote(fixtures .. "/basic_spec.lua") .. " --filter 'basic fails a [dp]'")
    local lines = lines_of(output)
    assert.equals("FAIL basic fails a deep comparison", lines[1])
    assert.equals("0 passed, 2 failed", lines[#lines])
    assert.equals(1, status)
    output, status = gsockd_test(quote(fixtures .. "/basic_spec.lua") .. " --filter '^basic passes$'")
    assert.equals("ok   basic passes\n1 passed, 0 failed\n", output)
    assert.equals(0, status)
  end)

  it("leaves fixture directories out of a search", function()
    local output, status = gsockd_test("--list " .. quote(tests_dir))
    assert.is_nil(output:find("fixtures", 1, true))
    has(output, "runner_test.lua:")
    assert.equals(0, status)
  end)

  it("exits with 2 for a missing path or a malformed pattern", function()
    local _, status, stderr = gsockd_test(quote(fixtures .. "/no_such_spec.lua"))
    assert.equals(2, status)
    has(stderr, "no_such_spec.lua: No such file or directory")
    _, status, stderr = gsockd_test(quote(fixtures) .. " --filter '%'")
    assert.equals(2, status)
    has(stderr, "bad --filter pattern")
  end)
end)
