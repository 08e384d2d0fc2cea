-- fibers_memory.lua: memory per parked fiber (issue 2).
--
--   gsockd run benchmarks/core/fibers_memory.lua -- [COUNT]     (default 100000)
--
-- Spawns COUNT fibers that each park in gsock.sleep(1000) and reports the growth of
-- the process's resident set (VmRSS) and of the Lua heap (gsock.stats().memory) per
-- fiber, so the Lua share and the rest (Swift objects, libev timers, malloc) show.
-- Prints: "RESULT fibers_memory n=COUNT rss_bytes_per_fiber=X lua_bytes_per_fiber=Y
-- other_bytes_per_fiber=Z".
local gsock = require "gsock"

local count = math.tointeger(tonumber((...))) or 100000

local function rss_bytes()
  local f = assert(io.open("/proc/self/status", "r"))
  local text = f:read("a")
  f:close()
  local kb = assert(text:match("VmRSS:%s*(%d+)%s*kB"), "no VmRSS in /proc/self/status")
  return tonumber(kb) * 1024
end

local function settle()
  collectgarbage("collect")
  collectgarbage("collect")
end

local function parked() gsock.sleep(1000) end

-- Grow the table that holds the handles first, so its growth is not counted.
local fibers = {}
for i = 1, count do fibers[i] = false end

settle()
local rss0, lua0 = rss_bytes(), gsock.stats().memory

for i = 1, count do fibers[i] = gsock.spawn(parked) end
gsock.sleep(0)  -- every spawned fiber starts, and parks on its timer, before this returns
gsock.sleep(0)

local stats = gsock.stats()
assert(stats.fibers >= count, ("only %d fibers alive"):format(stats.fibers))
settle()
local rss1, lua1 = rss_bytes(), gsock.stats().memory

local rss_per = (rss1 - rss0) / count
local lua_per = (lua1 - lua0) / count
print(("RESULT fibers_memory n=%d rss_bytes_per_fiber=%.0f lua_bytes_per_fiber=%.0f other_bytes_per_fiber=%.0f")
  :format(count, rss_per, lua_per, rss_per - lua_per))
-- The parked fibers are abandoned when the main fiber ends (SPEC §1).
