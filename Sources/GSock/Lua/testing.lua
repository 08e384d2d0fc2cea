-- The test runner of `gsockd test` (SPEC §7): busted's API over gsock fibers.
--
-- Swift finds the files and runs this chunk as the main fiber of one runtime, passing
-- a `host` table: the files and options, two runtime hooks (`live_fibers()`, and
-- `resources`, the registry of open resources) and the compiled assertions and JUnit
-- chunks. Each file is loaded into a fresh environment whose __index is _G; its top
-- level and its describe blocks run at once and collect a tree of blocks and tests.
-- Then the tree runs: each test in a new fiber under the timeout, inside the
-- before_each and after_each hooks of its enclosing blocks, in busted's order. What a
-- test leaves behind (fibers, open resources) is reported and cleaned up, so the next
-- test starts clean. The counts go back to Swift in `host`.
--
-- `gsock.testing.serve(handler [, opts])` starts a server on 127.0.0.1, port 0, for the
-- running test; it is stopped when the test ends.
local host = ...

local gsock = require "gsock"
local bad_type = gsock._internal.bad_type
local assertions = host.assertions()
local write_junit = host.junit_writer()
local live_fibers, resources = host.live_fibers, host.resources
local timeout, filter, list_only = host.timeout, host.filter, host.list

local concat, insert, sort = table.concat, table.insert, table.sort
local error, getmetatable, ipairs, pairs, pcall, rawequal, rawget, rawset, setmetatable, tostring, type, xpcall =
      error, getmetatable, ipairs, pairs, pcall, rawequal, rawget, rawset, setmetatable, tostring, type, xpcall

-- Output ----------------------------------------------------------------------------

local out = io.stdout

local function say(line)
  out:write(line, "\n")
  out:flush()
end

--- Writes `text` with its first line after `first` and the others after `rest`.
local function say_block(text, first, rest)
  local prefix = first
  for line in (text .. "\n"):gmatch("(.-)\n") do
    say(prefix .. line:gsub("^\t", "  "))
    prefix = rest
  end
end

-- Errors raised in tests --------------------------------------------------------------

local TIMEOUT = setmetatable({}, {
  __tostring = function() return ("timed out after %g s"):format(timeout) end,
})

--- What `pending(reason)` raises inside a running test: the test ends as skipped.
local Pending = {}

--- A problem with the command line found while running (a malformed --filter pattern).
local Usage = {}

--- gsockd's own chunks (gsock.lua's modules are "@gsock/NAME.lua").
local function is_own_chunk(source)
  return source == "@testing.lua" or source == "@assertions.lua" or source == "@gsock.lua"
         or source:find("^@gsock/") ~= nil
end

--- `file:line` of the innermost frame in the test file `file`; failing that, of the
--- innermost Lua frame that is not the runner's.
local function locate(file)
  local target, fallback = "@" .. file, nil
  for level = 2, 1000 do
    local info = debug.getinfo(level, "Sl")
    if not info then break end
    if info.currentline > 0 then
      if info.source == target then return file .. ":" .. info.currentline end
      if not fallback and not is_own_chunk(info.source) then
        fallback = info.short_src .. ":" .. info.currentline
      end
    end
  end
  return fallback
end

--- The traceback of the erring code, without the runner's frames below it.
local function test_traceback()
  local lines = {}
  for line in debug.traceback("", 3):gmatch("[^\n]+") do
    if line:find("[C]: in function 'xpcall'", 1, true) then break end
    if not line:match("^%s*testing%.lua:") and not line:match("^%s*assertions%.lua:") then
      lines[#lines + 1] = line
    end
  end
  local lua_frames = 0
  for _, line in ipairs(lines) do
    if line:match("^%s") and not line:match("^%s*%[C%]") then lua_frames = lua_frames + 1 end
  end
  if lua_frames < 2 then return nil end  -- one frame says no more than the failure's file:line
  return concat(lines, "\n")
end

--- The message handler of every protected call in a test fiber: it runs where the
--- error was raised, so it can find the test file's line.
local function capture(file, err)
  if getmetatable(err) == Pending then return err end
  local failure = {
    error = err,
    timeout = rawequal(err, TIMEOUT),
    assertion = assertions.is_failure(err),
    where = locate(file),
  }
  if not failure.timeout and not failure.assertion then failure.traceback = test_traceback() end
  return failure
end

local function failure_text(f)
  local message
  if type(f.error) == "string" then
    message = f.error
  else
    message = assertions.show(f.error)
  end
  if f.where and message:sub(1, #f.where + 1) ~= f.where .. ":" then
    message = f.where .. ": " .. message
  end
  if f.traceback then message = message .. "\n" .. f.traceback end
  return message
end

-- Running code in fibers --------------------------------------------------------------
--
-- A record collects what happened in one fiber: the hooks and body of a test, a setup
-- or teardown hook, or a file's top level.

local function new_record(file)
  local rec = { file = file, failures = {}, finally = {} }
  rec.handler = function(err) return capture(file, err) end
  return rec
end

--- Calls fn in the record's fiber; false when it raised. After a second timeout the
--- record is aborted: the remaining hooks do not run.
local function protected(rec, fn)
  if rec.aborted then return false end
  local ok, failure = xpcall(fn, rec.handler)
  if ok then return true end
  if getmetatable(failure) == Pending then
    rec.pending = failure.reason or ""
    return false
  end
  if type(failure) ~= "table" then failure = { error = failure } end  -- the handler itself failed
  if failure.timeout then
    if rec.timed_out_inside then
      rec.aborted = true
      return false
    end
    rec.timed_out_inside = true
  end
  failure.timeout = nil
  insert(rec.failures, failure)
  return false
end

--- Fibers that survived being killed: reported once, then left alone.
local abandoned = {}

--- Runs body(...) in a new fiber and waits for it up to the timeout. A fiber still
--- running then gets a timeout error raised in it, and the same time again to run its
--- after_each hooks; one that survives a second kill is abandoned.
local function run_in_fiber(rec, declared_at, body, ...)
  local f = gsock.spawn(body, ...)
  rec.fiber = f
  if not f:join(timeout) then
    rec.timed_out = true
    for _ = 1, 2 do
      f:kill(TIMEOUT, false)
      if f:join(timeout) then break end
    end
  end
  if rec.timed_out and not rec.timed_out_inside then
    -- The code caught the timeout error itself (a pcall around the wait).
    insert(rec.failures, 1, { error = tostring(TIMEOUT), where = declared_at })
  end
  if not f:dead() then
    abandoned[f] = true
    insert(rec.failures, { error = ("fiber %d ignored being killed twice and was abandoned"):format(f.id),
                           where = declared_at })
  elseif not f:successful() then
    insert(rec.failures, { error = f.error, where = declared_at })  -- a bug of the runner
  end
end

-- Leaks -------------------------------------------------------------------------------

local function snapshot()
  local s = { fibers = {}, resources = {} }
  for _, f in ipairs(live_fibers()) do s.fibers[f] = true end
  for obj in pairs(resources) do s.resources[obj] = true end
  return s
end

local function by_id(a, b) return a.id < b.id end

local function close_resource(obj)
  local close = obj.close
  if close then return close(obj) end
  local mt = getmetatable(obj)
  if type(mt) == "table" and mt.__close then return mt.__close(obj) end
  error("it has no close method", 0)
end

--- Kills the fibers and closes the resources that appeared since `before`; returns a
--- note for each.
local function clean_up(before)
  local notes = {}
  for _ = 1, 3 do  -- a dying fiber may spawn another
    local left = {}
    for _, f in ipairs(live_fibers()) do
      if not before.fibers[f] and not abandoned[f] then left[#left + 1] = f end
    end
    if #left == 0 then break end
    sort(left, by_id)
    gsock.killall(left, nil, timeout)
    for _, f in ipairs(left) do
      if f:dead() then
        notes[#notes + 1] = ("fiber %d was left running: killed"):format(f.id)
      else
        notes[#notes + 1] = ("fiber %d was left running and survived being killed: abandoned"):format(f.id)
        abandoned[f] = true
      end
    end
  end
  local open = {}
  for obj, description in pairs(resources) do
    if not before.resources[obj] then open[#open + 1] = { obj = obj, description = tostring(description) } end
  end
  sort(open, function(a, b) return a.description < b.description end)
  for _, r in ipairs(open) do
    resources[r.obj] = nil
    local ok, err = pcall(close_resource, r.obj)
    notes[#notes + 1] = ("%s was left open: %s"):format(r.description,
      ok and "closed" or "closing it failed: " .. tostring(err))
  end
  return notes
end

-- Reporting ---------------------------------------------------------------------------

local counts = { passed = 0, failed = 0, skipped = 0 }
local suites = {}
local failed_cases = {}

local status_tags = { ok = "ok  ", fail = "FAIL", skip = "skip" }

local function report(suite, case)
  local line = status_tags[case.status] .. " " .. case.name
  if case.status == "skip" and case.reason and case.reason ~= "" then
    line = line .. " (" .. tostring(case.reason) .. ")"
  end
  say(line)
  case.failure_texts = {}
  for _, f in ipairs(case.failures or {}) do
    local text = failure_text(f)
    case.failure_texts[#case.failure_texts + 1] = text
    say_block(text, "     ", "       ")
  end
  for _, note in ipairs(case.notes or {}) do say("     " .. note) end
  if case.status == "ok" then
    counts.passed = counts.passed + 1
  elseif case.status == "fail" then
    counts.failed = counts.failed + 1
    failed_cases[#failed_cases + 1] = case
  else
    counts.skipped = counts.skipped + 1
  end
  suite.cases[#suite.cases + 1] = case
end

local function report_notes(suite, label, notes)
  for _, note in ipairs(notes) do
    say("note " .. label .. ": " .. note)
    suite.notes[#suite.notes + 1] = label .. ": " .. note
  end
end

-- Collecting: the busted API ------------------------------------------------------------

local collecting   -- the block whose body runs, while a file is collected
local current_run  -- the record of the running test

--- gsock.testing.serve(handler [, opts]) → server, "127.0.0.1:PORT": a server for the
--- running test, stopped when the test ends.
gsock._internal.provide({ testing = {
  serve = function(handler, opts)
    local server = gsock.server("127.0.0.1:0", handler, opts)
    server:start()
    local rec = current_run
    if rec then
      rec.servers = rec.servers or {}
      rec.servers[#rec.servers + 1] = server
      resources[server] = nil  -- stopped with the test: not a leak
    end
    return server, server.address
  end,
} })

local function new_block(name, parent, file, line)
  return { kind = "block", name = name, parent = parent, file = file, line = line, children = {},
           setup = {}, teardown = {}, before_each = {}, after_each = {} }
end

--- busted's full name: the enclosing describe names and `name`, joined by spaces.
local function full_name(block, name)
  local parts = { name }
  while block and block.parent do
    insert(parts, 1, block.name)
    block = block.parent
  end
  return concat(parts, " ")
end

local function block_label(block)
  if block.parent == nil then return block.file end
  return full_name(block.parent, block.name)
end

local function caller_line()
  local info = debug.getinfo(3, "l")
  return info and info.currentline or 0
end

local function check_collecting(what)
  if not collecting then
    error(what .. "() must be called at the top level of a test file or inside describe()", 3)
  end
end

local function check_arg(value, expected, n, what)
  if type(value) ~= expected then error(bad_type(n, what, expected, value), 3) end
end

local dsl = {}

function dsl.describe(name, fn)
  check_collecting("describe")
  check_arg(name, "string", 1, "describe")
  check_arg(fn, "function", 2, "describe")
  local block = new_block(name, collecting, collecting.file, caller_line())
  insert(collecting.children, block)
  local outer = collecting
  collecting = block
  fn()
  collecting = outer
end
dsl.context, dsl.insulate, dsl.expose = dsl.describe, dsl.describe, dsl.describe

local function add_test(name, fn, line)
  insert(collecting.children, { kind = "test", name = name, fn = fn, block = collecting,
                                file = collecting.file, line = line, pending = fn == nil })
end

function dsl.it(name, fn)
  check_collecting("it")
  check_arg(name, "string", 1, "it")
  if fn ~= nil then check_arg(fn, "function", 2, "it") end
  add_test(name, fn, caller_line())
end
dsl.spec, dsl.test = dsl.it, dsl.it

--- At collection, declares a pending test; inside a test, ends it as skipped.
function dsl.pending(name)
  if current_run and not collecting then error(setmetatable({ reason = name }, Pending), 0) end
  check_collecting("pending")
  check_arg(name, "string", 1, "pending")
  add_test(name, nil, caller_line())
end

local function hook(kind)
  return function(fn)
    check_collecting(kind)
    check_arg(fn, "function", 1, kind)
    insert(collecting[kind], fn)
  end
end
dsl.before_each, dsl.after_each = hook("before_each"), hook("after_each")
dsl.setup, dsl.teardown = hook("setup"), hook("teardown")
dsl.lazy_setup, dsl.strict_setup = dsl.setup, dsl.setup
dsl.lazy_teardown, dsl.strict_teardown = dsl.teardown, dsl.teardown

--- Inside a test: runs fn when the test ends, after the after_each hooks.
function dsl.finally(fn)
  if not current_run then error("finally() must be called inside a test", 2) end
  check_arg(fn, "function", 1, "finally")
  insert(current_run.finally, fn)
end

-- So that `require "busted"` and `require "luassert"` work as under busted.
local busted = setmetatable({ assert = assertions.assert }, { __index = dsl })
package.preload.busted = function() return busted end
package.preload.luassert = function() return assertions.assert end

local function new_env()
  local env = setmetatable({}, { __index = _G })
  for k, v in pairs(dsl) do env[k] = v end
  env.assert = assertions.assert
  return env
end

--- Loads `file` and runs its top level, which collects its tests. Returns the root
--- block, or nil and the failures.
local function collect(file)
  local chunk, err = loadfile(file, "t", new_env())
  if not chunk then return nil, { { error = err } } end
  local root = new_block(file, nil, file, 0)
  local rec = new_record(file)
  collecting = root
  run_in_fiber(rec, file, protected, rec, chunk)
  collecting = nil
  if #rec.failures > 0 then return nil, rec.failures end
  return root
end

--- Marks the tests that --filter selects; returns how many the block holds.
local function select_tests(block)
  local count = 0
  for _, child in ipairs(block.children) do
    if child.kind == "block" then
      count = count + select_tests(child)
    else
      child.full_name = full_name(child.block, child.name)
      local ok, found = true, true
      if filter then ok, found = pcall(string.find, child.full_name, filter) end
      if not ok then error(setmetatable({ message = "bad --filter pattern: " .. tostring(found) }, Usage), 0) end
      child.selected = found ~= nil
      if child.selected then count = count + 1 end
    end
  end
  block.selected_count = count
  return count
end

-- Running -------------------------------------------------------------------------------

--- The body of a test fiber: busted's before_each hooks outermost first, the test,
--- the after_each hooks innermost first, then what finally() registered.
local function test_body(test, rec)
  local chain = {}
  local block = test.block
  while block do
    insert(chain, 1, block)
    block = block.parent
  end
  local ready = true
  for _, b in ipairs(chain) do
    for _, fn in ipairs(b.before_each) do
      if ready then ready = protected(rec, fn) end
    end
  end
  if ready then protected(rec, test.fn) end
  for i = #chain, 1, -1 do
    for _, fn in ipairs(chain[i].after_each) do protected(rec, fn) end
  end
  for i = #rec.finally, 1, -1 do protected(rec, rec.finally[i]) end
end

local function run_test(test, suite)
  local case = { name = test.full_name, file = test.file, line = test.line }
  if test.pending then
    case.status = "skip"
    report(suite, case)
    return
  end
  local before = snapshot()
  local rec = new_record(test.file)
  local started = gsock.now()
  current_run = rec
  run_in_fiber(rec, test.file .. ":" .. test.line, test_body, test, rec)
  current_run = nil
  for _, server in ipairs(rec.servers or {}) do server:stop(0) end
  case.time = gsock.now() - started
  case.notes = clean_up(before)
  case.failures = rec.failures
  if #rec.failures > 0 then
    case.status = "fail"
  elseif rec.pending ~= nil then
    case.status, case.reason = "skip", rec.pending
  else
    case.status = "ok"
  end
  report(suite, case)
end

--- Runs the block's setup or teardown hooks, each in its own fiber; false when one failed.
local function run_hooks(block, kind, suite)
  for _, fn in ipairs(block[kind]) do
    local rec = new_record(block.file)
    local started = gsock.now()
    run_in_fiber(rec, block.file .. ":" .. block.line, protected, rec, fn)
    if #rec.failures > 0 then
      report(suite, { name = block_label(block) .. " (" .. kind .. ")", file = block.file, status = "fail",
                      failures = rec.failures, time = gsock.now() - started })
      return false
    end
  end
  return true
end

local function run_block(block, suite)
  if block.selected_count == 0 then return end
  local before = snapshot()
  if run_hooks(block, "setup", suite) then
    for _, child in ipairs(block.children) do
      if child.kind == "block" then
        run_block(child, suite)
      elseif child.selected then
        run_test(child, suite)
      end
    end
  end
  run_hooks(block, "teardown", suite)
  report_notes(suite, block_label(block), clean_up(before))
end

local function list_block(block)
  for _, child in ipairs(block.children) do
    if child.kind == "block" then
      list_block(child)
    elseif child.selected then
      say(("%s:%d: %s"):format(child.file, child.line, child.full_name))
    end
  end
end

--- Snapshots _G and package.loaded; the function returned restores them, so that a
--- file's globals and required modules do not reach the next file.
local function insulate()
  local globals, loaded, mt = {}, {}, getmetatable(_G)
  for k, v in pairs(_G) do globals[k] = v end
  for k, v in pairs(package.loaded) do loaded[k] = v end
  local function restore(t, saved)
    local extra = {}
    for k in pairs(t) do
      if saved[k] == nil then extra[#extra + 1] = k end
    end
    for _, k in ipairs(extra) do rawset(t, k, nil) end
    for k, v in pairs(saved) do
      if rawget(t, k) ~= v then rawset(t, k, v) end
    end
  end
  return function()
    restore(_G, globals)
    restore(package.loaded, loaded)
    pcall(setmetatable, _G, mt)
  end
end

local function run_file(file)
  local suite = { name = file, cases = {}, notes = {} }
  suites[#suites + 1] = suite
  local started = gsock.now()
  local restore = insulate()
  local before = snapshot()
  local root, failures = collect(file)
  if root then
    select_tests(root)
    if list_only then list_block(root) else run_block(root, suite) end
  else
    report(suite, { name = file, file = file, status = "fail", failures = failures })
  end
  report_notes(suite, file, clean_up(before))
  restore()
  suite.time = gsock.now() - started
end

local function main()
  if filter then
    local ok, err = pcall(string.find, "", filter)
    if not ok then error(setmetatable({ message = "bad --filter pattern: " .. tostring(err) }, Usage), 0) end
  end
  for _, file in ipairs(host.files) do run_file(file) end
  if list_only then return end
  if host.junit_file then
    local ok, err = write_junit(host.junit_file, suites)
    if not ok then host.report_error = "cannot write the JUnit report: " .. tostring(err) end
  end
  -- A long run's failures are far apart in its output: list them again above the summary.
  if #failed_cases > 0 then
    say("")
    say("failed:")
    for _, case in ipairs(failed_cases) do
      local where = case.file and case.line and (" (%s:%d)"):format(case.file, case.line)
        or case.file and case.file ~= case.name and (" (%s)"):format(case.file) or ""
      say("  " .. case.name .. where)
    end
  end
  local summary = ("%d passed, %d failed"):format(counts.passed, counts.failed)
  if counts.skipped > 0 then summary = summary .. (", %d skipped"):format(counts.skipped) end
  say(summary)
end

local ok, err = pcall(main)
if not ok then
  if getmetatable(err) ~= Usage then error(err, 0) end
  host.usage_error = err.message
end
host.passed, host.failed, host.skipped = counts.passed, counts.failed, counts.skipped
