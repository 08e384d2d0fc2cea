-- Seeded argument fuzzing (issue 10, finding B): a child gsockd makes thousands of calls of
-- every gsock and socket function and method with hostile argument shapes (±2^31, ±2^63,
-- NaN, ±inf, huge strings, wrong self, trapping tables, io.stdout...) from fibers, __gc,
-- __close, table.sort comparators and coroutine.wrap (support/arguments_child.lua), TLS
-- (ssl, ssl.https, contexts, SSL connections, x509, sessions) and HTTP (gsock.http.server,
-- req and res inside a real request's handler) included. No
-- call may end the process by a signal or freeze it; the child logs each call before it
-- makes it, so a failure names the call.
--   GSOCKD_FUZZ_SEED=n   replays a run (the seed is printed)
--   GSOCKD_FUZZ_CALLS=n  makes more calls (default 5000)
--   GSOCKD_FUZZ_ONLY=a,b makes only those calls (to narrow a failure down)
--   GSOCKD_FUZZ_SKIP=pat makes no call of the targets whose name matches the Lua pattern
--   GSOCKD_FUZZ_KEEP=p,q makes only the calls of targets matching one of the patterns
--   GSOCKD_FUZZ_ERRORS=path appends each distinct (target, error) pair there, to read for
--                        errors of the wrong kind or messages that do not name the argument
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/fuzz/"
local script = dofile(here .. "../core/support/script.lua")

local function read(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

describe("argument fuzzing", function()
  it("no call of any function with any argument shape kills or freezes the process", function()
    local seed = tonumber(os.getenv("GSOCKD_FUZZ_SEED") or "") or (os.time() % 100000)
    local calls = tonumber(os.getenv("GSOCKD_FUZZ_CALLS") or "") or 5000
    print(("argument fuzz: seed %d, %d calls (GSOCKD_FUZZ_SEED=%d to replay)"):format(seed, calls, seed))
    local log = os.tmpname()
    -- The child binds unix sockets to names such as "rw" and "*a": it runs in a directory
    -- of its own so that they land there, not in the checkout.
    local dir = script.read_all("mktemp -d"):gsub("\n$", "")
    local child = script.read_all("realpath " .. here .. "support/arguments_child.lua"):gsub("\n$", "")
    local r = script.run(nil, { argv = { "run", child, "--", tostring(seed), tostring(calls), log },
                                limit = 25, cwd = dir })
    os.execute("rm -rf '" .. dir .. "'")
    local lines = read(log)
    os.remove(log)
    local last = lines:match("([^\n]*)\n?$") or ""
    local how
    if r.status == 124 or r.status == 137 then
      how = "froze (killed after 25 s)"
    elseif r.status and r.status > 128 then
      how = ("died by signal %d"):format(r.status - 128)
    else
      how = ("exited %s"):format(tostring(r.status))
    end
    assert(r.status == 0 and last == ("done %d"):format(calls),
      ("seed %d: the child %s; last call logged:\n  %s\n--- stderr (end) ---\n%s"):format(
        seed, how, last, r.stderr:sub(-2000)))
  end)
end)
