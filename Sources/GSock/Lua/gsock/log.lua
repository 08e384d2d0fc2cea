-- Logging from Lua (SPEC §9): gsock.log(level, message [, fields]) writes one log
-- line through the Swift core. What a line says of where it comes from (from a
-- connection's fiber: its service and peer) the servers add through log.add_context.
local core, errors = ...

local error, type = error, type
local core_log = core.log
local contexts = {}

local log = {}

--- gsock.log(level, message [, fields]): a log line (SPEC §9). From a connection's
--- fiber it carries the service and the peer unless `fields` names them.
function log.log(level, message, fields)
  if fields ~= nil and type(fields) ~= "table" then
    error(errors.bad_type(3, "log", "table", fields), 2)
  end
  for i = 1, #contexts do fields = contexts[i](fields) end
  return core_log(level, message, fields)
end

--- Adds `context` to every log line: context(fields) returns the fields (nil or a table,
--- never the caller's table changed) with what it knows of the running fiber.
function log.add_context(context)
  contexts[#contexts + 1] = context
end

return log
