-- Stats (SPEC §9): gsock.stats(), the counts of the runtime. The Swift core counts
-- fibers, sockets, errors, bytes and memory; the modules that count more (servers:
-- connections, accepted, handler errors) add their part through stats.add.
local core = ...

local core_stats = core.stats
local parts = {}

local stats = {}

--- Counts of fibers, sockets, connections, accepted connections, errors (handler and
--- fiber failures), bytes in and out, and the bytes the Lua state holds.
function stats.stats()
  local s = core_stats()
  for i = 1, #parts do parts[i](s) end
  return s
end

--- Adds `part` to what stats() counts: part(s) sets or adds its counts in the table s.
function stats.add(part)
  parts[#parts + 1] = part
end

return stats
