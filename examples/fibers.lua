-- Fibers in straight-line Lua: a producer, a pool of workers bounded to 3 at once,
-- a timeout, and a fiber that fails without stopping the others.
--   gsockd run examples/fibers.lua -- 12
local gsock = require "gsock"

local jobs = tonumber(arg[1]) or 9
local queue = gsock.queue(4)          -- the producer waits while 4 jobs are queued
local pool = gsock.pool(3)
local done = 0
local start = gsock.now()

local producer = gsock.spawn(function()
  for i = 1, jobs do queue:put(i) end
  queue:put(nil)                      -- nil is a legal item: here it means "no more"
end)

gsock.spawn(function() error("this fiber fails; it is logged and nothing else stops") end)

while true do
  local job = queue:get()
  if job == nil then break end
  pool:spawn(function()
    gsock.sleep(0.05 * (job % 3 + 1))
    done = done + 1
    print(("job %2d done at %.2f s (%d running)"):format(job, gsock.now() - start, pool:running()))
  end)
end
pool:join()
producer:join()

local ok, err = pcall(gsock.with_timeout, 0.1, gsock.sleep, 5)
print(("%d jobs done; a 5 s sleep under a 0.1 s timeout: %s"):format(done, tostring(err)))
