-- State shared by many gsockd instances behind a load balancer: a hit counter kept in
-- Redis with the unchanged redis-lua client (Debian's lua-redis, installed by
-- scripts/setup), over gsockd's cooperative sockets: while one request waits for Redis,
-- the instance serves the others. Run as many instances as you like, on any machines:
--   gsockd run examples/shared_counter.lua --listen 127.0.0.1:8081
--   gsockd run examples/shared_counter.lua --listen 127.0.0.1:8082
--   curl http://127.0.0.1:8081/hit; curl http://127.0.0.1:8082/hit   # 1, then 2
-- REDIS_HOST and REDIS_PORT say where Redis is (default 127.0.0.1:6379).
package.path = package.path .. ";/usr/share/lua/5.3/?.lua;/usr/share/lua/5.1/?.lua"   -- Debian's lua-redis
local redis = require "redis"

local host, port = os.getenv("REDIS_HOST") or "127.0.0.1", tonumber(os.getenv("REDIS_PORT") or 6379)
local TEXT = { ["Content-Type"] = "text/plain" }

-- One connection per fiber that needs one, kept between requests.
local idle = {}

local function with_redis(fn)
  local client = table.remove(idle) or redis.connect(host, port)
  local ok, result = pcall(fn, client)
  if ok then
    idle[#idle + 1] = client
  else
    pcall(client.network.socket.close, client.network.socket)   -- a broken connection is not reused
  end
  return ok, result
end

return {
  name = "shared_counter",
  protocol = "http",
  handle = function(req)
    if req.path ~= "/hit" then return 404, "not found\n", TEXT end
    local ok, hits = with_redis(function(client) return client:incr("hits") end)
    if not ok then return 503, "redis: " .. tostring(hits) .. "\n", TEXT end
    return 200, hits .. "\n", TEXT
  end,
}
