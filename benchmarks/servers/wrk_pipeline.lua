-- A wrk script (not a gsockd handler): every write sends DEPTH requests at once, as
-- TechEmpower's plaintext test does; wrk counts each response. For scripts/bench servers.
--
--   wrk -t1 -c50 -d5s -s benchmarks/servers/wrk_pipeline.lua http://127.0.0.1:8080/ -- 16
local pipelined

function init(args)
  local depth = tonumber(args[1]) or 16
  local requests = {}
  for i = 1, depth do requests[i] = wrk.format() end
  pipelined = table.concat(requests)
end

function request()
  return pipelined
end
