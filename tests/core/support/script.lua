-- Runs the gsockd binary on a small Lua script and reports what it printed and how it
-- exited. The binary is, in order: $GSOCKD_BIN, the executable running these tests
-- (/proc/self/exe, when it is a gsockd), /work/main/.build/debug/gsockd.
-- Every run is bounded by coreutils `timeout` (exit status 124 when it had to kill).
--
--   local script = dofile(here .. "support/script.lua")
--   local r = script.run("print(...)", { args = { "a", "b" } })
--   r.status, r.stdout, r.stderr, r.output (stdout then stderr), r.path, r.seconds
local M = {}

local function read_all(cmd)
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  p:close()
  return out
end
M.read_all = read_all

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
M.quote = shell_quote

local function pid()
  local f = assert(io.open("/proc/self/stat", "r"))
  local n = tonumber(f:read("a"):match("^(%d+)"))
  f:close()
  return n
end

--- The gsockd executable to run.
function M.binary()
  if M._bin then return M._bin end
  local env = os.getenv("GSOCKD_BIN")
  if env and env ~= "" then
    M._bin = env
  else
    local exe = read_all(("readlink /proc/%d/exe 2>/dev/null"):format(pid())):gsub("\n$", "")
    if exe:match("/gsockd$") then
      M._bin = exe
    else
      M._bin = "/work/main/.build/debug/gsockd"
    end
  end
  return M._bin
end

local counter = 0
local function unique(suffix)
  counter = counter + 1
  return ("/tmp/gsock-script-%d-%d-%d%s"):format(pid(), os.time(), counter, suffix)
end

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

--- Writes `source` to a new file in /tmp and runs `gsockd run FILE -- ARGS`.
--- opts: args (list), limit (seconds, default 10), name (file name suffix),
---       command (default "run"; nil-able raw argument list via opts.argv instead).
function M.run(source, opts)
  opts = opts or {}
  local path = unique(opts.name or ".lua")
  local out, err = unique(".out"), unique(".err")
  if source then
    local f = assert(io.open(path, "w"))
    f:write(source)
    f:close()
  end
  local argv
  if opts.argv then
    argv = {}
    for _, a in ipairs(opts.argv) do argv[#argv + 1] = shell_quote(a) end
    argv = table.concat(argv, " ")
  else
    argv = "run " .. shell_quote(path)
    if opts.args then
      local q = {}
      for _, a in ipairs(opts.args) do q[#q + 1] = shell_quote(a) end
      argv = argv .. " -- " .. table.concat(q, " ")
    end
  end
  local cd = opts.cwd and ("cd %s && "):format(shell_quote(opts.cwd)) or ""
  local cmd = ("%stimeout -k 2 %d %s %s </dev/null >%s 2>%s; echo EXIT=$?"):format(
    cd, opts.limit or 10, shell_quote(M.binary()), argv, out, err)
  local t0 = os.time()
  local result = read_all(cmd)
  local r = {
    path = path,
    status = tonumber(result:match("EXIT=(%d+)")),
    stdout = slurp(out),
    stderr = slurp(err),
    seconds = os.time() - t0,
    command = cmd,
  }
  r.output = r.stdout .. r.stderr
  os.remove(out)
  os.remove(err)
  if source then os.remove(path) end
  return r
end

--- Counts the plain (non-pattern) occurrences of `needle` in `s`.
function M.count(s, needle)
  local n, i = 0, 1
  while true do
    local a, b = s:find(needle, i, true)
    if not a then return n end
    n, i = n + 1, b + 1
  end
end

return M
