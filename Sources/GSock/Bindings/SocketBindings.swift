// `socket.core`: LuaSocket's socket objects, cooperative. This file holds what every
// class shares (creation, classes, timeouts, options, names, close); stream I/O is in
// SocketBindings+Stream.swift, datagrams in +Datagram, names and select in +Names.
// Functions return LuaSocket's `nil, message` instead of raising (LUASOCKET.md).
import CLibev
import CLua
import CShims
import Glibc

enum SocketBindings {
    static let functions: [(String, LuaBody)] = [
        ("tcp", { L in create(L!, AF_UNSPEC, .tcpMaster) }),
        ("tcp4", { L in create(L!, AF_INET, .tcpMaster) }),
        ("tcp6", { L in create(L!, AF_INET6, .tcpMaster) }),
        ("udp", { L in create(L!, AF_UNSPEC, .udpUnconnected) }),
        ("udp4", { L in create(L!, AF_INET, .udpUnconnected) }),
        ("udp6", { L in create(L!, AF_INET6, .udpUnconnected) }),
        ("unix_stream", { L in create(L!, AF_UNIX, .unixMaster) }),
        ("unix_dgram", { L in create(L!, AF_UNIX, .unixDgramUnconnected) }),
        ("gettime", { L in lua_pushnumber(L!, ev_time()); return 1 }),
        ("resolve", NameBindings.resolve), ("nameinfo", NameBindings.nameinfo),
        ("gethostname", NameBindings.gethostname), ("servicename", NameBindings.servicename), ("select_fds", NameBindings.selectDescriptors),
    ]

    static let commonMethods: [(String, LuaBody)] = [
        ("close", close), ("getfd", getfd), ("setfd", setfd), ("dirty", dirty),
        ("settimeout", settimeout), ("gettimeout", gettimeout), ("settimeouts", settimeouts),
        ("getstats", getstats), ("setstats", setstats), ("getfamily", getfamily),
        ("getsockname", getsockname), ("getpeername", getpeername),
        ("setoption", setoption), ("getoption", getoption),
    ]

    /// The class metatables; streams and datagrams have separate methods (their `send`,
    /// `receive`, `setpeername` differ). Each class has its own `__index` table, holding
    /// the methods and `class` (the class name: LuaSocket's `sock.class`).
    static func register(_ L: LuaState) {
        let groups: [([(String, LuaBody)], [Socket.Class])] = [
            (commonMethods + StreamBindings.methods + TLSBindings.tcpMethods,
             [.tcpMaster, .tcpClient, .tcpServer, .unixMaster, .unixClient, .unixServer]),
            (commonMethods + StreamBindings.connectionMethods + TLSBindings.connectionMethods, [.tlsConnection]),
            (commonMethods + DatagramBindings.methods,
             [.udpUnconnected, .udpConnected, .unixDgramUnconnected, .unixDgramConnected]),
        ]
        for (methods, classes) in groups {
            for c in classes {
                _ = luaL_newmetatable(L, c.rawValue)
                luaSetFunctions(L, [("__gc", collect), ("__tostring", tostring), ("__close", close)])
                lua_createtable(L, 0, Int32(methods.count) + 1)
                luaSetFunctions(L, methods)
                lua_pushstring(L, c.rawValue)
                luaRawSetField(L, -2, "class")
                luaRawSetField(L, -2, "__index")
                gs_pop(L, 1)
            }
        }
    }

    // MARK: - Objects

    static func push(_ L: LuaState, _ socket: Socket) {
        LuaObjects.push(L, socket, kind: .socket, metatable: socket.socketClass.rawValue)
        if socket.runtime.tracksResources { track(L, lua_gettop(L), open: true) }
    }

    /// Enters the socket at `index` in the registry of open resources (for `gsockd test`),
    /// or removes it.
    static func track(_ L: LuaState, _ index: Int32, open: Bool) {
        let i = lua_absindex(L, index)
        Runtime.from(L).pushOpenResources(L)
        lua_pushvalue(L, i)
        if open { lua_pushvalue(L, i) } else { lua_pushnil(L) }
        _ = gs_rawset(L, -3)  // a userdata key: always set
        gs_pop(L, 1)
    }

    @inline(__always)
    static func get(_ L: LuaState, _ index: Int32) -> Socket? {
        LuaObjects.get(L, index, kind: .socket, as: Socket.self)
    }

    /// The socket at index 1 if its class is one of `classes`; else the argument error
    /// LuaSocket raises (`tcp{client} expected, got tcp{master}`).
    @inline(__always)
    static func socket(_ L: LuaState, _ classes: Socket.Classes? = nil,
                       expected: @autoclosure () -> String) throws(LuaError) -> Socket {
        guard let s = get(L, 1) else { throw .type(L, 1, expected()) }
        if let classes, !classes.contains(s.socketClass.bit) {
            throw .argument(L, 1, "\(expected()) expected, got \(s.socketClass.rawValue)")
        }
        return s
    }

    /// Runs `body` with the socket at index 1 if its class is one of `classes`; else
    /// returns socket(L, classes, expected:)'s argument error. The socket is lent, not retained: its userdata
    /// at index 1 keeps it alive until the method returns.
    @inline(__always)
    static func withSocketArg(_ L: LuaState, _ classes: Socket.Classes, expected: @autoclosure () -> String,
                              _ body: (Socket) -> Int32) -> Int32 {
        guard let socket = LuaObjects.unretained(L, 1, kind: .socket, as: Socket.self) else {
            return luaTypeError(L, 1, expected())
        }
        return socket._withUnsafeGuaranteedRef { s in
            guard classes.contains(s.socketClass.bit) else {
                return luaArgError(L, 1, "\(expected()) expected, got \(s.socketClass.rawValue)")
            }
            return body(s)
        }
    }

    /// Runs `body` with the socket at index 1, lent as withSocketArg lends it; 0 results
    /// when there is none (a continuation's socket was checked when its method began).
    @inline(__always)
    static func withSocket(_ L: LuaState, _ body: (Socket) -> Int32) -> Int32 {
        guard let socket = LuaObjects.unretained(L, 1, kind: .socket, as: Socket.self) else { return 0 }
        return socket._withUnsafeGuaranteedRef(body)
    }

    static func setClass(_ L: LuaState, _ index: Int32, _ socket: Socket, _ c: Socket.Class) {
        socket.socketClass = c
        let i = lua_absindex(L, index)
        _ = gs_getmetatable(L, c.rawValue)
        lua_setmetatable(L, i)
    }

    /// `nil, message` (and a third value if given).
    static func fail(_ L: LuaState, _ message: String, partial: UnsafeBufferPointer<UInt8>? = nil) -> Int32 {
        lua_pushnil(L)
        message.withCString { _ = lua_pushstring(L, $0) }  // no heap copy of a short message ("closed")
        if let partial {
            lua_pushlstring(L, partial.baseAddress.map { UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self) }, partial.count)
            return 3
        }
        return 2
    }

    /// LuaSocket's success: 1, a float (its C code pushes lua_Number).
    static func ok(_ L: LuaState) -> Int32 {
        lua_pushnumber(L, 1)
        return 1
    }

    /// LuaSocket's wording for an errno.
    static func message(for errno: Int32, datagram: Bool = false) -> String {
        switch errno {
        case EADDRINUSE: return "address already in use"
        case EISCONN: return "already connected"
        case EACCES: return "permission denied"
        case ECONNREFUSED: return "connection refused"
        // LuaSocket's datagram sockets say "refused" where streams say "closed".
        case ECONNABORTED, ECONNRESET, EPIPE: return datagram ? "refused" : "closed"
        case ETIMEDOUT: return "timeout"
        default: return String(cString: strerror(errno))
        }
    }

    private static func create(_ L: LuaState, _ family: Int32, _ c: Socket.Class) -> Int32 {
        let rt = Runtime.from(L)
        var fd: Int32 = -1
        if family != AF_UNSPEC {
            let type = c.isStream ? Int32(SOCK_STREAM.rawValue) : Int32(SOCK_DGRAM.rawValue)
            switch Syscall.socket(family, type) {
            case .failed(let e): return fail(L, message(for: e.errno))
            case .wouldBlock: return fail(L, message(for: EAGAIN))
            case .ok(let n): fd = Int32(n)
            }
        }
        let socket = Socket(runtime: rt, fd: fd, family: family, socketClass: c)
        if family == AF_INET6 {
            socket.v6only = true
            _ = Syscall.setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, Int32(1))
        }
        push(L, socket)
        return 1
    }

    /// `adopt_listener(fd)`: a listening stream socket made by another process (a
    /// supervisor, systemd) as a tcp{server} or unixstream{server}; nil and the reason
    /// when `fd` is no listening stream socket. The descriptor becomes the object's.
    static let adoptListener: LuaBody = { L in luaCall(L, adoptListener) }
    private static func adoptListener(_ L: LuaState) throws(LuaError) -> Int32 {
        let fd = Int32(try Arg.integer(L, 1, in: 0...Int(Int32.max)))
        if WaitableDescriptor.isRuntimeOwned(fd) { throw .argument(L, 1, "descriptor owned by the runtime") }
        let (typeResult, type) = Syscall.getsockopt(fd, SOL_SOCKET, SO_TYPE, Int32(0))
        let (listenResult, listening) = Syscall.getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, Int32(0))
        let (domainResult, family) = Syscall.getsockopt(fd, SOL_SOCKET, SO_DOMAIN, Int32(0))
        guard case .ok = typeResult, case .ok = listenResult, case .ok = domainResult else {
            return fail(L, "descriptor \(fd) is not a socket")
        }
        guard type == Int32(SOCK_STREAM.rawValue), listening != 0, [AF_INET, AF_INET6, AF_UNIX].contains(family) else {
            return fail(L, "descriptor \(fd) is not a listening stream socket")
        }
        if case .failed(let e) = Syscall.makeNonBlocking(fd) { return fail(L, message(for: e.errno)) }
        let socket = Socket(runtime: Runtime.from(L), fd: fd, family: family,
                            socketClass: family == AF_UNIX ? .unixServer : .tcpServer)
        if family == AF_INET6 {
            socket.v6only = Syscall.getsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, Int32(0)).1 != 0
        }
        push(L, socket)
        return 1
    }

    // MARK: - Common methods

    private static let collect: LuaBody = { L in luaCall(L, collect) }
    private static func collect(_ L: LuaState) throws(LuaError) -> Int32 {
        guard let object = LuaObjects.take(L, 1, kind: .socket) else { return 0 }
        if let socket = object.takeRetainedValue() as? Socket {
            socket.close()
            if socket.runtime.tracksResources { track(L, 1, open: false) }
        }
        return 0
    }

    private static let tostring: LuaBody = { L in luaCall(L, tostring) }
    private static func tostring(_ L: LuaState) throws(LuaError) -> Int32 {
        let address = String(UInt(bitPattern: lua_touserdata(L, 1)), radix: 16)
        // A finalized socket may still be reachable for a moment (a weak table's key).
        guard let s = get(L, 1) else {
            lua_pushstring(L, "socket (collected): 0x\(address)")
            return 1
        }
        guard s.socketClass == .tlsConnection else {
            lua_pushstring(L, "\(s.socketClass.rawValue): 0x\(address)")
            return 1
        }
        lua_pushstring(L, "SSL connection: 0x\(address)\(s.isClosed ? " (closed)" : "")")  // LuaSec's words
        return 1
    }

    static let close: LuaBody = { L in luaCall(L, close) }
    private static func close(_ L: LuaState) throws(LuaError) -> Int32 {
        if lua_type(L, 1) == LUA_TUSERDATA, LuaObjects.isReleased(L, 1) { return ok(L) }  // finalized: closed
        let s = try socket(L, expected: "socket")
        s.close()
        if s.runtime.tracksResources { track(L, 1, open: false) }
        if s.socketClass == .tlsConnection { return 0 }  // LuaSec's close returns nothing
        return ok(L)
    }

    private static let getfd: LuaBody = { L in luaCall(L, getfd) }
    private static func getfd(_ L: LuaState) throws(LuaError) -> Int32 {
        lua_pushinteger(L, lua_Integer(try socket(L, expected: "socket").fd))
        return 1
    }

    private static let setfd: LuaBody = { L in luaCall(L, setfd) }
    private static func setfd(_ L: LuaState) throws(LuaError) -> Int32 {
        let s = try socket(L, expected: "socket")
        let fd = Int32(try Arg.integer(L, 2, in: -1...Int(Int32.max)))
        // The socket would close it: closing the loop's epoll fd aborts the process, and so
        // does a watcher on a descriptor closed under it (another socket's, or a number no
        // longer open that the next socket or accept gets).
        if fd >= 0 && fd != s.fd {
            if WaitableDescriptor.isRuntimeOwned(fd) { throw .argument(L, 2, "descriptor owned by the runtime") }
            if fcntl(fd, F_GETFD) == -1 { throw .argument(L, 2, "not an open descriptor") }
            if s.runtime.socketDescriptors.contains(fd) { throw .argument(L, 2, "descriptor owned by another socket") }
        }
        s.adopt(fd: fd, family: s.family)
        return 0
    }

    private static let dirty: LuaBody = { L in luaCall(L, dirty) }
    private static func dirty(_ L: LuaState) throws(LuaError) -> Int32 {
        let s = try socket(L, expected: "socket")
        lua_pushboolean(L, s.buffer.isEmpty && s.transportBufferedInput == 0 ? 0 : 1)
        return 1
    }

    private static let settimeout: LuaBody = { L in luaCall(L, settimeout) }
    private static func settimeout(_ L: LuaState) throws(LuaError) -> Int32 {
        let s = try socket(L, expected: "socket")
        _ = try Arg.timeout(L, 2, negative: .meansForever)   // checked; kept as given
        let given = luaIsNoneOrNil(L, 2) ? -1 : lua_tonumberx(L, 2, nil)
        switch luaString(L, 3) ?? "b" {
        case "b": s.timeoutSettings.block = given
        case "t", "r": s.timeoutSettings.total = given
        default: throw .argument(L, 3, "invalid timeout mode")
        }
        s.operationTimeouts = nil
        return ok(L)
    }

    private static let gettimeout: LuaBody = { L in luaCall(L, gettimeout) }
    private static func gettimeout(_ L: LuaState) throws(LuaError) -> Int32 {
        let s = try socket(L, expected: "socket")
        lua_pushnumber(L, s.timeoutSettings.block)
        lua_pushnumber(L, s.timeoutSettings.total)
        return 2
    }

    /// OpenResty's settimeouts(connect, send, read), in seconds; nil or negative: for ever.
    private static let settimeouts: LuaBody = { L in luaCall(L, settimeouts) }
    private static func settimeouts(_ L: LuaState) throws(LuaError) -> Int32 {
        let s = try socket(L, expected: "socket")
        let connect = try Arg.timeout(L, 2, negative: .meansForever)
        let send = try Arg.timeout(L, 3, negative: .meansForever)
        let read = try Arg.timeout(L, 4, negative: .meansForever)
        s.operationTimeouts = (connect, send, read)
        return ok(L)
    }

    private static let getstats: LuaBody = { L in luaCall(L, getstats) }
    private static func getstats(_ L: LuaState) throws(LuaError) -> Int32 {
        let s = try socket(L, expected: "socket")
        lua_pushnumber(L, lua_Number(s.received))
        lua_pushnumber(L, lua_Number(s.sent))
        lua_pushnumber(L, ev_time() - s.birthday)
        return 3
    }

    private static let setstats: LuaBody = { L in luaCall(L, setstats) }
    private static func setstats(_ L: LuaState) throws(LuaError) -> Int32 {
        let s = try socket(L, expected: "socket")
        let received = try Arg.clampedInteger(L, 2, 0...Int.max) ?? 0
        let sent = try Arg.clampedInteger(L, 3, 0...Int.max) ?? 0
        let age = try Arg.optionalNumber(L, 4)
        if let age, !age.isFinite { throw .argument(L, 4, "age must be a finite number") }
        s.received = received
        s.sent = sent
        if let age { s.birthday = ev_time() - age }
        return ok(L)
    }

    private static let getfamily: LuaBody = { L in luaCall(L, getfamily) }
    private static func getfamily(_ L: LuaState) throws(LuaError) -> Int32 {
        switch try socket(L, expected: "socket").family {
        case AF_INET6: lua_pushstring(L, "inet6")
        case AF_UNIX: lua_pushstring(L, "unix")
        default: lua_pushstring(L, "inet4")  // also before tcp()'s first bind or connect
        }
        return 1
    }

    private static func pushName(_ L: LuaState, _ s: Socket, peer: Bool) -> Int32 {
        guard s.fd >= 0 else { return fail(L, message(for: EBADF)) }
        let (result, name) = Syscall.name(of: s.fd, peer: peer)
        guard let address = name else {
            if case .failed(let e) = result { return fail(L, message(for: e.errno)) }
            return fail(L, message(for: ENOTCONN))
        }
        let (host, port, family) = address.hostPortFamily
        lua_pushstring(L, host)
        if family == "unix" { return 1 }
        // As Debian's LuaSocket gives them: the peer's port an integer, our own a string.
        if peer { lua_pushinteger(L, lua_Integer(port)) } else { lua_pushstring(L, String(port)) }
        lua_pushstring(L, family)
        return 3
    }

    private static let getsockname: LuaBody = { L in luaCall(L, getsockname) }
    private static func getsockname(_ L: LuaState) throws(LuaError) -> Int32 {
        pushName(L, try socket(L, expected: "socket"), peer: false)
    }

    private static let getpeername: LuaBody = { L in luaCall(L, getpeername) }
    private static func getpeername(_ L: LuaState) throws(LuaError) -> Int32 {
        if let s = get(L, 1), !s.socketClass.isStream, !DatagramBindings.connected.contains(s.socketClass.bit) {
            let name = s.socketClass.isUnix ? "unixdgram{connected}" : "udp{connected}"
            throw .argument(L, 1, "\(name) expected, got \(s.socketClass.rawValue)")
        }
        return pushName(L, try socket(L, expected: "socket"), peer: true)
    }

    private static let setoption: LuaBody = { L in luaCall(L, setoption) }
    private static func setoption(_ L: LuaState) throws(LuaError) -> Int32 {
        try SocketOptions.set(L, try socket(L, expected: "socket"))
    }

    private static let getoption: LuaBody = { L in luaCall(L, getoption) }
    private static func getoption(_ L: LuaState) throws(LuaError) -> Int32 {
        try SocketOptions.get(L, try socket(L, expected: "socket"))
    }
}
