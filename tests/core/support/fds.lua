-- Real file descriptors for the core tests, made from FIFOs opened with io.open.
--
-- There is no socket API to make descriptors with, so a pipe is built from a FIFO:
--   keeper  = io.open(path, "r+")  holds both ends, so the other opens never block
--   reader  = io.open(path, "r")   read-only: readable only while the pipe holds data,
--                                   never writable
--   writer  = io.open(path, "w")   write-only: writable while the pipe has room,
--                                   never readable
-- The descriptor numbers are found in /proc/<pid>/fd; the FIFO's path is removed as
-- soon as every end is open, so nothing is left in /tmp even if a test fails.
--
-- Load it relative to the test file:
--   local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/core/"
--   local fds = dofile(here .. "support/fds.lua")
local M = {}

local function read_all(cmd)
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  p:close()
  return out
end

--- The process id of this gsockd process (not of a child).
function M.pid()
  if not M._pid then
    local f = assert(io.open("/proc/self/stat", "r"))
    M._pid = tonumber(f:read("a"):match("^(%d+)"))
    f:close()
  end
  return M._pid
end

--- A map from descriptor number to what it points at, for this process.
function M.open_fds()
  local out = read_all(("ls -l /proc/%d/fd 2>/dev/null"):format(M.pid()))
  local map = {}
  for n, target in out:gmatch("%s(%d+) %-> ([^\n]*)") do map[tonumber(n)] = target end
  return map
end

--- The descriptor numbers pointing at `target` that `before` (an open_fds() map) lacked.
local function new_fd(before, target)
  local found
  for n, t in pairs(M.open_fds()) do
    if t == target and before[n] ~= t then
      assert(found == nil, "two new descriptors point at " .. target)
      found = n
    end
  end
  return assert(found, "no new descriptor points at " .. target)
end

--- Opens `path` with `mode` and returns the file and its descriptor number.
function M.open(path, mode)
  local before = M.open_fds()
  local f = assert(io.open(path, mode))
  local real = read_all("readlink -f '" .. path .. "'"):gsub("\n$", "")
  return f, new_fd(before, real)
end

local counter = 0
--- A path in /tmp that no other test or process uses.
function M.unique_path(prefix, suffix)
  counter = counter + 1
  return ("/tmp/%s-%d-%d-%d%s"):format(prefix or "gsock-test", M.pid(), os.time(), counter, suffix or "")
end

local Pipe = {}
Pipe.__index = Pipe

--- Writes `s` through the write end (unbuffered).
function Pipe:write(s)
  assert(self.writer:write(s))
  self.writer:flush()
end

--- Reads exactly `n` bytes from the read end; only call it when they are there (a
--- blocking read would stop the whole process, so it first checks, with a bound, that
--- the read end is readable).
function Pipe:read(n)
  local gsock = require "gsock"
  local ok, err = pcall(gsock.wait_read, self.rfd, 2)
  if not ok then error("Pipe:read: nothing to read after 2 s (" .. tostring(err) .. ")", 2) end
  return self.reader:read(n)
end

--- Fills the pipe until it is not writable (probes with wait_write and a short timeout).
--- Returns the number of bytes written.
function Pipe:fill()
  local gsock = require "gsock"
  local chunk = string.rep("x", 4096)
  local total = 0
  for _ = 1, 1024 do  -- at most 4 MiB: a bound, not an expectation
    gsock.sleep(0)  -- a fresh loop time, so that the probe's timeout is not already past
    local ok = pcall(gsock.wait_write, self.wfd, 0.01)
    if not ok then return total end
    self:write(chunk)
    total = total + #chunk
  end
  error("the pipe never became full")
end

--- Closes every end (idempotent).
function Pipe:close()
  for _, k in ipairs({ "reader", "writer", "keeper" }) do
    local f = self[k]
    if f and io.type(f) == "file" then f:close() end
  end
end

Pipe.__close = Pipe.close
Pipe.__gc = Pipe.close

--- A new pipe: { rfd = read end, wfd = write end, reader, writer, keeper, ... }.
function M.pipe()
  local path = M.unique_path("gsock-fifo")
  local ok = os.execute("mkfifo -m 600 '" .. path .. "'")
  assert(ok, "mkfifo failed for " .. path)
  local self = setmetatable({ path = path }, Pipe)
  local okall, err = pcall(function()
    self.keeper, self.kfd = M.open(path, "r+")
    self.reader, self.rfd = M.open(path, "r")
    self.writer, self.wfd = M.open(path, "w")
  end)
  os.remove(path)
  if not okall then self:close(); error(err, 0) end
  self.reader:setvbuf("no")
  self.writer:setvbuf("no")
  return self
end

--- A descriptor number that is not open in this process right now.
function M.unused_fd()
  local open = M.open_fds()
  local n = 100
  while open[n] or open[n + 1] do n = n + 7 end
  return n
end

--- A regular file (always ready to read and write): file, fd. Removed from /tmp at once.
function M.regular_file()
  local path = M.unique_path("gsock-file")
  local f, fd = M.open(path, "w+")
  os.remove(path)
  f:write("hello\n")
  f:flush()
  f:seek("set", 0)
  return f, fd
end

return M
