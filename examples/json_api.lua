-- A small JSON API on gsockd's HTTP layer (SPEC §11) with lua-cjson (Debian's lua-cjson,
-- installed by scripts/setup): the host parses the requests and keeps the connections
-- alive; each request runs in its own fiber.
--   gsockd run examples/json_api.lua
--   curl http://127.0.0.1:8081/items
--   curl -d '{"name": "pen"}' http://127.0.0.1:8081/items
local cjson = require "cjson"

local items, next_id = {}, 1
local JSON = { ["Content-Type"] = "application/json" }

local function reply(status, value)
  return status, cjson.encode(value), JSON
end

local routes = {
  ["GET /items"] = function()
    if #items == 0 then return 200, "[]", JSON end  -- cjson encodes an empty table as {}
    return reply(200, items)
  end,

  ["POST /items"] = function(req)
    local body, err = req:body()
    if not body then return reply(400, { error = "could not read the body: " .. err }) end
    local ok, item = pcall(cjson.decode, body)
    if not ok or type(item) ~= "table" or type(item.name) ~= "string" then
      return reply(400, { error = 'expected a JSON object with a "name" string' })
    end
    local stored = { id = next_id, name = item.name }
    next_id = next_id + 1
    items[#items + 1] = stored
    return reply(201, stored)
  end,
}

return {
  name = "json_api",
  protocol = "http",
  listen = "127.0.0.1:8081",

  handle = function(req, res)
    local route = routes[req.method .. " " .. req.path]
    if not route then return reply(404, { error = "no route for " .. req.method .. " " .. req.path }) end
    return route(req, res)
  end,
}
