-- gsock's errors (SPEC §2 "Errors"): the error values gsock raises, which carry a
-- kind, a message and an errno, and the one wording of argument errors for gsockd's
-- Lua files, lauxlib's.
local core = ...

local getmetatable, ipairs, math, setmetatable, type = getmetatable, ipairs, math, setmetatable, type

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

--- Edit distance of two short strings (for "did you mean").
local function distance(a, b)
  local row = {}
  for j = 0, #b do row[j] = j end
  for i = 1, #a do
    local diagonal, ca = row[0], a:byte(i)
    row[0] = i
    for j = 1, #b do
      local above = row[j]
      row[j] = math.min(above + 1, row[j - 1] + 1, diagonal + (ca == b:byte(j) and 0 or 1))
      diagonal = above
    end
  end
  return row[#b]
end

--- The string of the list `known` closest to `key`, when it is close enough to be a typo
--- of it; else nil. For the "unknown key 'x'; did you mean 'y'?" of the tables gsockd checks.
function errors.closest(key, known)
  local best, best_d
  for _, k in ipairs(known) do
    local d = distance(key, k)
    if d < (best_d or math.huge) then best, best_d = k, d end
  end
  if best_d and best_d <= math.max(1, #key // 3) then return best end
end

return errors
