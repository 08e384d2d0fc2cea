-- The HTTP request parser (Sources/CHTTP, SPEC §11) under its fuzz harness
-- (parser_fuzz.c): built with AddressSanitizer and UndefinedBehaviorSanitizer, built
-- without SIMD, run under valgrind memcheck, and compared with h11 on valid requests.
-- Any sanitizer or valgrind report, a harness failure or a disagreement fails the test;
-- a missing tool (cc, valgrind, python3's h11) makes its test pending, with the reason.
--   GSOCKD_FUZZ_SEED=n     replays a run (the seed is printed)
--   GSOCKD_FUZZ_SECONDS=s  fuzzes longer (default 3 s with the sanitizers)
local gsock = require "gsock"

local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/http/"
local root = here .. "../.."

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local dir
setup(function()
  local base = os.tmpname()
  os.remove(base)
  dir = base .. "-gsockd-http-fuzz"
  assert(os.execute("mkdir -p " .. q(dir)))
end)
teardown(function()
  if dir and dir:match("^/tmp/") then os.execute("rm -rf " .. q(dir)) end
end)

local runs = 0

--- Runs the shell command `cmd` in the background, bounded by `limit` seconds, while this
--- fiber sleeps (the test runner's timer keeps running); returns status, stdout, stderr.
local function run(cmd, limit)
  runs = runs + 1
  local out, err, rc = ("%s/out%d"):format(dir, runs), ("%s/err%d"):format(dir, runs), ("%s/rc%d"):format(dir, runs)
  local line = ("(timeout -k 2 %d sh -c %s >%s 2>%s </dev/null; echo $? >%s.tmp; mv %s.tmp %s) >/dev/null 2>&1 &"):format(
    limit, q(cmd), q(out), q(err), q(rc), q(rc), q(rc))
  assert(os.execute(line))
  local deadline = gsock.now() + limit + 5
  while not slurp(rc) do
    if gsock.now() > deadline then error("no exit status from: " .. cmd) end
    gsock.sleep(0.05)
  end
  return tonumber(slurp(rc)), slurp(out) or "", slurp(err) or ""
end

local function have(tool)
  return os.execute("command -v " .. tool .. " >/dev/null 2>&1") == true
end

local function seed()
  local s = os.getenv("GSOCKD_FUZZ_SEED")
  if s and s ~= "" then return s end
  return tostring(os.time() % 1000000)
end

--- Builds the harness with `flags`; returns the executable's path.
local function build(name, flags)
  if not have("cc") then pending("no C compiler (cc) on this machine to build the fuzz harness") end
  local exe = dir .. "/" .. name
  local cmd = ("cc -std=c11 %s -I %s %s %s -o %s"):format(flags, q(root .. "/Sources/CHTTP/include"),
    q(root .. "/tests/http/parser_fuzz.c"), q(root .. "/Sources/CHTTP/http_parser.c"), q(exe))
  local status, out, err = run(cmd, 60)
  assert(status == 0, ("the harness did not build (%s):\n%s%s"):format(cmd, out, err))
  return exe
end

--- The sanitizers' and the harness's own reports of a failure, if any.
local function findings(text)
  for _, pattern in ipairs({ "ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                             "parser_fuzz: FAILED" }) do
    if text:find(pattern, 1, true) then return pattern end
  end
end

local SANITIZE = "-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
local SANITIZER_ENV = "ASAN_OPTIONS=abort_on_error=0:halt_on_error=1:detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1"

local function fuzz(exe, seconds, prefix)
  local s = seed()
  local env = ("GSOCKD_FUZZ_SEED=%s GSOCKD_FUZZ_SECONDS=%s"):format(s, os.getenv("GSOCKD_FUZZ_SECONDS") or seconds)
  local status, out, err = run(("%s %s %s %s"):format(SANITIZER_ENV, env, prefix or "", q(exe)), 120)
  local summary = out:match("parser_fuzz: %d+ rounds[^\n]*") or "(no summary line)"
  print(summary)
  local found = findings(out .. err)
  assert(status == 0 and not found and out:find("no failure", 1, true),
    ("seed %s: exit status %s%s\n--- stdout ---\n%s\n--- stderr ---\n%s"):format(
      s, tostring(status), found and (", " .. found) or "", out:sub(-3000), err:sub(-6000)))
  return out, err
end

-- The sanitizer builds are tests of their own: building and fuzzing in one test could pass
-- the runner's per-test time limit on a loaded machine (a test run alone builds what it needs).
local built = {}
local function asan() built.asan = built.asan or build("parser_fuzz_asan", SANITIZE) return built.asan end
local function portable()
  built.portable = built.portable or build("parser_fuzz_portable", SANITIZE .. " -DGS_HTTP_PORTABLE")
  return built.portable
end

describe("the HTTP request parser's fuzz harness", function()
  it("builds with AddressSanitizer and UndefinedBehaviorSanitizer", function() asan() end)

  it("finds no crash, no out-of-bounds read, no undefined behaviour and no disagreement (ASan + UBSan)", function()
    fuzz(asan(), 3)
  end)

  it("builds without SSE2 too (word arithmetic and byte loops), with the sanitizers", function() portable() end)

  it("finds nothing in the portable build either (no SSE2: word arithmetic and byte loops)", function()
    fuzz(portable(), 1.5)
  end)

  it("runs clean under valgrind memcheck", function()
    if not have("valgrind") then pending("valgrind is not installed") end
    local exe = build("parser_fuzz_plain", "-O1 -g")
    local s = seed()
    local status, out, err = run(("GSOCKD_FUZZ_SEED=%s GSOCKD_FUZZ_SECONDS=1.5 valgrind -q --error-exitcode=99 "
      .. "--leak-check=full --errors-for-leak-kinds=definite %s"):format(s, q(exe)), 120)
    print(out:match("parser_fuzz: %d+ rounds[^\n]*") or "(no summary line)")
    assert(status == 0 and out:find("no failure", 1, true) and not err:find("==%d+=="),
      ("seed %s: exit status %s (99: valgrind found errors)\n--- stdout ---\n%s\n--- stderr ---\n%s"):format(
        s, tostring(status), out:sub(-3000), err:sub(-6000)))
  end)

  it("agrees with h11 on generated valid requests (head, headers, bodies, path and query)", function()
    if not have("python3") then pending("python3 is not installed") end
    if os.execute("python3 -c 'import h11' >/dev/null 2>&1") ~= true then
      pending("python3's h11 is not installed (scripts/setup installs it)")
    end
    local exe = build("parser_fuzz_gen", "-O1 -g")
    local s = seed()
    local status, out, err = run(("GSOCKD_FUZZ_SEED=%s %s gen 3000 | python3 %s"):format(
      s, q(exe), q(root .. "/tests/http/support/h11_agree.py")), 60)
    print(out:match("h11 agreement:[^\n]*") or "(no summary line)")
    assert(status == 0 and out:find("3000 requests, 0 disagreements", 1, true),
      ("seed %s: exit status %s\n%s\n%s"):format(s, tostring(status), out:sub(-6000), err:sub(-3000)))
  end)
end)
