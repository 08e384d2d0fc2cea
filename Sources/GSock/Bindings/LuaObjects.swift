// Swift objects held by Lua userdata. The userdata block holds one retained pointer;
// `__gc` releases it. Every such metatable is named, so `tostring` and argument
// errors show the type.
import CLua
import CShims

enum LuaObjects {
    /// Pushes a new userdata holding `object` retained, with the named metatable and `userValues` slots.
    static func push(_ L: LuaState, _ object: AnyObject, metatable: String, userValues: Int32 = 0) {
        let block = lua_newuserdatauv(L, MemoryLayout<UnsafeMutableRawPointer?>.size, userValues)!
        block.storeBytes(of: Unmanaged.passRetained(object).toOpaque(), as: UnsafeMutableRawPointer?.self)
        _ = gs_getmetatable(L, metatable)
        lua_setmetatable(L, -2)
    }

    /// The object in the userdata at `index`, if it carries the named metatable.
    static func get<T: AnyObject>(_ L: LuaState, _ index: Int32, metatable: String, as: T.Type) -> T? {
        guard let block = luaL_testudata(L, index, metatable),
              let p = block.load(as: UnsafeMutableRawPointer?.self) else { return nil }
        return Unmanaged<T>.fromOpaque(p).takeUnretainedValue()
    }

    /// Creates a metatable: `__name`, the generic `__gc`, `__index` = a table of `methods`.
    static func register(_ L: LuaState, _ name: String, methods: [(String, LuaBody)], extra: [(String, LuaBody)] = []) {
        _ = luaL_newmetatable(L, name)
        luaSetFunctions(L, [("__gc", releaseBody)] + extra)
        if !methods.isEmpty {
            lua_createtable(L, 0, Int32(methods.count))
            luaSetFunctions(L, methods)
            luaRawSetField(L, -2, "__index")
        }
        gs_pop(L, 1)
    }
}

/// `__gc` of every object userdata: releases the Swift object once.
private let releaseBody: LuaBody = { L in
    let L = L!
    guard let block = lua_touserdata(L, 1),
          let p = block.load(as: UnsafeMutableRawPointer?.self) else { return 0 }
    block.storeBytes(of: nil, as: UnsafeMutableRawPointer?.self)
    Unmanaged<AnyObject>.fromOpaque(p).release()
    return 0
}
