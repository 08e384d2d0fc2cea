-- How the LuaSec oracle scripts (luasec_oracle.lua, luasec_oracle_test.lua's probe) print
-- a value, under plain lua5.4 and under gsockd alike: its type and value ("number:6.0",
-- "string:\"x\""), a table's pairs by sorted key, a userdata's tostring without its address.
--
--   local shown = dofile(here .. "show.lua")
local function shown(v)
  if type(v) == "string" then return "string:" .. ("%q"):format(v):gsub("\\\n", "\\n") end
  if type(v) == "table" then
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    local parts = {}
    for _, k in ipairs(keys) do parts[#parts + 1] = tostring(k) .. "=" .. shown(v[k]) end
    return "table:{" .. table.concat(parts, ", ") .. "}"
  end
  if type(v) == "userdata" then return "userdata:" .. tostring(v):gsub("0x%x+", "0x...") end
  return type(v) .. ":" .. tostring(v)
end

return shown
