// Registering Swift functions as a Lua module (SPEC §8).
import CLua
import CShims

/// A Swift function callable from Lua. Throwing raises a Lua error with the error's description.
public typealias SwiftFunction = ([LuaValue]) throws -> [LuaValue]

/// The boxed closure behind one registered function.
private final class SwiftFunctionBox {
    let name: String
    let function: SwiftFunction
    init(name: String, function: @escaping SwiftFunction) {
        self.name = name
        self.function = function
    }
}

extension Runtime {
    /// Makes `require(name)` return a table of the given Swift functions.
    public func register(module name: String, functions: [String: SwiftFunction]) {
        lua_checkstack(L, 6)
        lua_createtable(L, 0, Int32(functions.count))
        for (fname, function) in functions.sorted(by: { $0.key < $1.key }) {
            pushFunction(name: fname, function)
            luaRawSetField(L, -2, fname)
        }
        setLoaded(name)
    }

    /// Makes `require(name)` return a table of trampolined Swift bodies (gsockd's own modules).
    func register(module name: String, bodies: [(String, LuaBody)]) {
        lua_checkstack(L, 6)
        lua_createtable(L, 0, Int32(bodies.count))
        luaSetFunctions(L, bodies)
        setLoaded(name)
    }

    /// package.loaded[name] = the table on top of the stack (popped).
    private func setLoaded(_ name: String) {
        lua_rawgeti(L, gs_registryindex(), lua_Integer(LUA_RIDX_GLOBALS))
        luaRawGetField(L, -1, "package")
        luaRawGetField(L, -1, "loaded")
        lua_pushvalue(L, -4)
        luaRawSetField(L, -2, name)
        lua_settop(L, -5)
    }

    /// Pushes a Lua function that calls `function`; `name` names it in error messages.
    func pushFunction(name: String, _ function: @escaping SwiftFunction) {
        registerBoxMetatable()
        LuaObjects.push(L, SwiftFunctionBox(name: name, function: function), kind: .swiftFunction)
        gs_pushbody(L, callSwiftFunction, 1, 0)
    }

    private func registerBoxMetatable() {
        guard !boxMetatableRegistered else { return }
        LuaObjects.register(L, LuaObjectKind.swiftFunction.metatable, methods: [])
        boxMetatableRegistered = true
    }
}

private let callSwiftFunction: LuaBody = { L in luaCall(L, callSwiftFunction) }
private func callSwiftFunction(_ L: LuaState) throws(LuaError) -> Int32 {
    guard let box = LuaObjects.get(L, gs_upvalueindex(2), kind: .swiftFunction,
                                   as: SwiftFunctionBox.self) else { return 0 }
    let n = lua_gettop(L)
    var args: [LuaValue] = []
    args.reserveCapacity(Int(n))
    if n > 0 { for i in 1...n { args.append(LuaValue.read(L, i)) } }
    do {
        let results = try box.function(args)
        for r in results { r.push(L) }
        return Int32(results.count)
    } catch {
        throw .raise(L, "\(box.name): \(error)")
    }
}
