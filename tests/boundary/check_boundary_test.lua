-- scripts/check-boundary (DESIGN.md's one rule): Swift may name only the Lua API
-- functions on its allow-list; every other one is refused, however it is named, and
-- comments and strings do not count.
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/boundary/"
local proc = dofile(here .. "../serve/support/proc.lua")
local root = here .. "../.."

after_each(proc.cleanup)

--- Runs the check on a folder holding one Swift file; returns its exit status and output.
local function check(swift_source)
  local dir = proc.tmpdir()
  proc.write(dir, "Scratch.swift", swift_source)
  local out = os.tmpname()
  local ok, _, status = os.execute(("%s/scripts/check-boundary %s >%s 2>&1"):format(proc.quote(root), proc.quote(dir), out))
  local text = proc.slurp(out) or ""
  os.remove(out)
  return ok and 0 or status, text
end

describe("scripts/check-boundary", function()
  local refused = {
    "lua_next(L, 1)", "lua_rawset(L, -3)", "lua_pcallk(L, 0, 0, 0, 0, nil)", "lua_toclose(L, -1)",
    "luaL_setfuncs(L, nil, 0)", "luaL_buffinit(L, &b)", "luaL_addlstring(&b, p, n)", "luaL_pushresult(&b)",
    "lua_pushfstring(L, \"%d\", 1)", "lua_getfield(L, 1, \"x\")", "lua_error(L)", "luaL_checkinteger(L, 1)",
    "lua_yieldk(L, 0, 0, nil)", "lua_settable(L, 1)", "lua_concat(L, 2)", "lua_len(L, 1)",
  }
  for _, call in ipairs(refused) do
    local fn = call:match("^([%w_]+)")
    it("refuses " .. fn, function()
      local status, out = check("import CLua\nfunc f(_ L: OpaquePointer) {\n    _ = " .. call .. "\n}\n")
      assert.equals(1, status, out)
      assert.matches("Scratch.swift:3: " .. fn, out)
    end)
  end

  it("refuses a function only named, as an alias or qualified", function()
    local status, out = check("import CLua\nlet get = lua_getfield\nlet next = CLua.lua_next\n")
    assert.equals(1, status, out)
    assert.matches("Scratch.swift:2: lua_getfield", out)
    assert.matches("Scratch.swift:3: lua_next", out)
  end)

  it("passes the allowed calls, and names in comments and strings", function()
    local status, out = check([[
import CLua
// lua_error(L) would longjmp: a comment is not code
/* lua_getfield in a block comment */
func f(_ L: OpaquePointer) {
    lua_pushinteger(L, lua_Integer(1))
    _ = lua_rawgeti(L, -1, 1)
    let s = "lua_setfield is a name in a string"
    let t = """
        lua_next in a multi-line string
        """
    _ = (s, t)
}
]])
    assert.equals(0, status, out)
  end)

  it("passes gsockd's own sources", function()
    local ok = os.execute(proc.quote(root) .. "/scripts/check-boundary >/dev/null 2>&1")
    assert.is_true(ok == true or ok == 0)
  end)
end)
