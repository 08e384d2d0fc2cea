-- gsock's errors (SPEC §2 "Errors"): the error values gsock raises, which carry a
-- kind, a message and an errno, and the one wording of argument errors for gsockd's
-- Lua files, lauxlib's.
local core = ...

local getmetatable, setmetatable, type = getmetatable, setmetatable, type

local errors = {}

local error_mt = core.error_metatable
error_mt.__tostring = function(e) return e.message end

--- An error value of `kind` (SPEC §2); tostring gives `message`.
function errors.new(kind, message, errno)
  return setmetatable({ kind = kind, message = message, errno = errno }, error_mt)
end

--- The error a timeout raises by default: kind "timeout", message "timed out".
function errors.timeout() return errors.new("timeout", "timed out") end

--- True when `e` is a timeout error raised by gsock.
function errors.is_timeout(e)
  return getmetatable(e) == error_mt and e.kind == "timeout"
end

-- The argument errors are messages the caller raises with error(message, level), the
-- level pointing at the caller of the function whose argument is bad: a helper that
-- raised would add its own frame to every traceback of such an error.

--- luaL_argerror's "bad argument #arg to 'fname' (message)".
function errors.bad_argument(arg, fname, message)
  return ("bad argument #%d to '%s' (%s)"):format(arg, fname, message)
end

--- luaL_typeerror's "bad argument #arg to 'fname' (EXPECTED expected, got TYPE)" for
--- `value`. TYPE is type(value), as the messages this replaced said, where
--- luaL_typeerror would say a metatable's __name.
function errors.bad_type(arg, fname, expected, value)
  return errors.bad_argument(arg, fname, ("%s expected, got %s"):format(expected, type(value)))
end

return errors
