-- gsock: the fiber API of gsockd (SPEC §2, §3 and §9), the module users require.
--
-- The Swift core provides the primitives: fibers, parking a fiber on a watcher, a
-- timer or a wait list, and timeouts. The modules of Lua/gsock/ compose them into
-- what users call, as gevent's Python layer composes its hub, one concept each:
-- errors, timeouts, fibers, waits, sync (events, queues, semaphores, pools), stats,
-- log, metrics, and coroutines (a wait inside a user's own coroutine reaches the scheduler).
-- Swift loads each and passes them in `core.modules`, so none is a module users can
-- require; this file runs them and assembles the public table from what they return.
local core = ...

local error, pairs = error, pairs
local modules = core.modules

local errors = modules.errors(core)
local timeouts, deadlines = modules.timeouts(core, errors)
local fibers = modules.fibers(core, errors, deadlines)
local sync = modules.sync(core, errors, deadlines, fibers)
local waits = modules.waits(core)
local stats = modules.stats(core)
local log = modules.log(core, errors)
local metrics = modules.metrics(core, errors)
modules.coroutines(core)

local gsock = {
  is_timeout = errors.is_timeout,
  stats = stats.stats,
  log = log.log,
  metrics = metrics,
}
for _, part in pairs({ fibers, timeouts, waits, sync }) do
  for name, value in pairs(part) do gsock[name] = value end
end

-- The parts that files loaded after this one provide: server.lua the servers (it needs
-- the socket module, which needs gsock), testing.lua gsock.testing under `gsockd test`.
local provided_later = {
  server = true, udp_server = true, parse_address = true, check_handler = true, testing = true,
}

--- What gsockd's own Lua files that load after this one (socket.lua, server.lua,
--- testing.lua) use of gsock; not part of the API.
gsock._internal = {
  bad_argument = errors.bad_argument,
  bad_type = errors.bad_type,
  --- closest(key, known): the string of `known` that `key` is likely a typo of, or nil.
  closest = errors.closest,
  --- add_stats(part): part(s) adds its counts to what gsock.stats() returns.
  add_stats = stats.add,
  --- add_log_context(context): context(fields) → the fields of a gsock.log line.
  add_log_context = log.add_context,
}

--- Sets gsock[name] = value for each pair of `part`; each name must be one of
--- `provided_later` (a second `gsockd test` run in one runtime provides testing again).
function gsock._internal.provide(part)
  for name, value in pairs(part) do
    if not provided_later[name] then
      error(("gsock.%s is not a part a later file provides"):format(name), 2)
    end
    gsock[name] = value
  end
end

package.loaded.gsock = gsock
_G.gsock = gsock
return gsock
