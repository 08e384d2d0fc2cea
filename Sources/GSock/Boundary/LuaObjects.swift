// Swift objects held by Lua userdata. The block holds one retained pointer and a tag
// naming the object's kind: checking the tag costs two loads, where a metatable check
// by name would look a string up (and allocate its C copy) on every method call.
// `__gc` releases the pointer once. Every metatable is named, so `tostring` and
// argument errors show the type.
import CLua
import CShims

/// The kinds of Swift objects Lua holds; the raw value is the tag in the block.
enum LuaObjectKind: UInt {
    case fiber = 0x6773_6669_6265_7201
    case watcher = 0x6773_6669_6265_7202
    case waitList = 0x6773_6669_6265_7203
    case timeout = 0x6773_6669_6265_7204
    case swiftFunction = 0x6773_6669_6265_7205
    case socket = 0x6773_6669_6265_7206
    case tlsContext = 0x6773_6669_6265_7207
    case tlsSession = 0x6773_6669_6265_7208
    case x509 = 0x6773_6669_6265_7209
    case httpService = 0x6773_6669_6265_720a
    case httpConnection = 0x6773_6669_6265_720b

    /// The metatable of every object of this kind (sockets have one per class).
    var metatable: String {
        switch self {
        case .fiber: return "gsock.fiber"
        case .watcher: return "gsock.io"
        case .waitList: return "gsock.waitlist"
        case .timeout: return "gsock.timeout"
        case .swiftFunction: return "gsock.swiftfunction"
        case .socket: return "socket"
        case .tlsContext: return TLSBindings.contextMetatable
        case .tlsSession: return TLSBindings.sessionMetatable
        case .x509: return X509Bindings.metatable
        case .httpService: return HTTPBindings.serviceMetatable
        case .httpConnection: return HTTPBindings.connectionMetatable
        }
    }
}

enum LuaObjects {
    static let blockSize = 2 * MemoryLayout<UInt>.size

    /// Pushes a new userdata holding `object` retained, with the kind's metatable (or
    /// `metatable`) and `userValues` slots.
    static func push(_ L: LuaState, _ object: AnyObject, kind: LuaObjectKind, metatable: String? = nil,
                     userValues: Int32 = 0) {
        let block = lua_newuserdatauv(L, blockSize, userValues)!
        block.storeBytes(of: Unmanaged.passRetained(object).toOpaque(), as: UnsafeMutableRawPointer.self)
        block.storeBytes(of: kind.rawValue, toByteOffset: MemoryLayout<UInt>.size, as: UInt.self)
        // withCString: a short name (most are) is copied to the stack; passed as an argument,
        // a small String is copied to a heap array (utf8CString) on every push.
        _ = (metatable ?? kind.metatable).withCString { gs_getmetatable(L, $0) }
        lua_setmetatable(L, -2)
    }

    /// The object in the userdata at `index`, if it is of `kind`.
    @inline(__always)
    static func get<T: AnyObject>(_ L: LuaState, _ index: Int32, kind: LuaObjectKind, as: T.Type) -> T? {
        unretained(L, index, kind: kind, as: T.self)?.takeUnretainedValue()
    }

    /// The object in the userdata at `index`, if it is of `kind`, not retained: hot methods
    /// lend it to their body (`_withUnsafeGuaranteedRef`), which is safe while the userdata
    /// stays on the stack, and saves a retain and a release per call.
    @inline(__always)
    static func unretained<T: AnyObject>(_ L: LuaState, _ index: Int32, kind: LuaObjectKind,
                                         as: T.Type) -> Unmanaged<T>? {
        // Only a full userdata has a raw length and a block address (a string's is its
        // length, and lua_touserdata gives it no address).
        guard lua_rawlen(L, index) == blockSize, let block = lua_touserdata(L, index),
              block.load(fromByteOffset: MemoryLayout<UInt>.size, as: UInt.self) == kind.rawValue,
              let p = block.load(as: UnsafeMutableRawPointer?.self) else { return nil }
        return Unmanaged<T>.fromOpaque(p)
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

    /// Whether the userdata at `index` is an object block whose object `__gc` released.
    static func isReleased(_ L: LuaState, _ index: Int32) -> Bool {
        guard lua_type(L, index) == LUA_TUSERDATA, lua_rawlen(L, index) == blockSize,
              let block = lua_touserdata(L, index),
              LuaObjectKind(rawValue: block.load(fromByteOffset: MemoryLayout<UInt>.size, as: UInt.self)) != nil
        else { return false }
        return block.load(as: UnsafeMutableRawPointer?.self) == nil
    }

    /// Takes the object out of a block (for `__gc`), so that it is released exactly once.
    /// Lua code can call a `__gc` on any value (`getmetatable(s).__gc(io.stdout)`): only a
    /// block with one of our tags (and `kind`'s, when given) holds a pointer to release.
    static func take(_ L: LuaState, _ index: Int32, kind: LuaObjectKind? = nil) -> Unmanaged<AnyObject>? {
        guard lua_type(L, index) == LUA_TUSERDATA, lua_rawlen(L, index) == blockSize,
              let block = lua_touserdata(L, index),
              let tag = LuaObjectKind(rawValue: block.load(fromByteOffset: MemoryLayout<UInt>.size, as: UInt.self)),
              kind == nil || tag == kind,
              let p = block.load(as: UnsafeMutableRawPointer?.self) else { return nil }
        block.storeBytes(of: nil, as: UnsafeMutableRawPointer?.self)
        return Unmanaged<AnyObject>.fromOpaque(p)
    }
}

extension Arg {
    /// The object of `kind` at `index`: "expected expected, got T" otherwise.
    @inline(__always)
    static func object<T: AnyObject>(_ L: LuaState, _ index: Int32, kind: LuaObjectKind, as: T.Type,
                                     expected: String) throws(LuaError) -> T {
        guard let object = LuaObjects.get(L, index, kind: kind, as: T.self) else { throw .type(L, index, expected) }
        return object
    }
}

/// `__gc` of every object userdata: releases the Swift object once.
private let releaseBody: LuaBody = { L in
    LuaObjects.take(L!, 1)?.release()
    return 0
}
