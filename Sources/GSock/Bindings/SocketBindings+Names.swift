// Name resolution for socket.dns (off the loop thread, see Resolver) and the
// descriptor wait behind socket.select.
import CLibev
import CLua
import CShims
import Glibc

enum NameBindings {
    /// LuaSocket's wording for a getaddrinfo/getnameinfo failure.
    static func message(forLookupError code: Int32, errno: Int32) -> String {
        switch code {
        case EAI_AGAIN: return "temporary failure in name resolution"
        case EAI_BADFLAGS: return "invalid value for ai_flags"
        case EAI_FAIL: return "non-recoverable failure in name resolution"
        case EAI_FAMILY: return "ai_family not supported"
        case EAI_MEMORY: return "memory allocation failure"
        case EAI_NONAME: return "host or service not provided, or not known"
        case EAI_OVERFLOW: return "argument buffer overflow"
        case EAI_SERVICE: return "service not supported for socket type"
        case EAI_SOCKTYPE: return "ai_socktype not supported"
        case EAI_SYSTEM: return String(cString: strerror(errno))
        default: return String(cString: gai_strerror(code))
        }
    }

    /// `resolve(host [, family [, canonical]])` → `{ {family=, addr=, canonname=}, ... }` or
    /// `nil, message`. Parks the fiber while a worker thread resolves a name.
    static let resolve: LuaBody = { L in luaCall(L, resolve) }
    private static func resolve(_ L: LuaState) throws(LuaError) -> Int32 {
        let host = try Arg.string(L, 1)
        var family = AF_UNSPEC
        switch luaString(L, 2) {
        case "inet": family = AF_INET
        case "inet6": family = AF_INET6
        default: break
        }
        let canonical = lua_toboolean(L, 3) != 0
        let job = ResolveJob(.addresses(host: host, service: nil, family: family, socktype: Int32(SOCK_STREAM.rawValue),
                                        flags: canonical ? AI_CANONNAME : 0))
        return try park(L, on: job, what: "resolve", then: resolved)
    }

    /// Parks the running fiber until a worker thread has done `job`.
    private static func park(_ L: LuaState, on job: ResolveJob, what: String, then kont: LuaBody) throws(LuaError) -> Int32 {
        let fiber = try FiberBindings.runningFiber(L, what)
        fiber.resolveJob = job
        return Runtime.from(L).park(L, fiber, on: .resolve(job), timeout: nil, what: what, then: kont)
    }

    /// In a lookup's continuation: the finished job (nil when there is none: no results),
    /// or the error delivered to the fiber while it waited, thrown.
    private static func finishedJob(_ L: LuaState) throws(LuaError) -> ResolveJob? {
        let rt = Runtime.from(L)
        _ = try rt.woken(L)
        guard let fiber = rt.current, let job = fiber.resolveJob else { return nil }
        fiber.resolveJob = nil
        return job
    }

    private static let resolved: LuaBody = { L in luaCall(L, resolved) }
    private static func resolved(_ L: LuaState) throws(LuaError) -> Int32 {
        guard let job = try finishedJob(L) else { return 0 }
        if job.status != 0 {
            return SocketBindings.fail(L, message(forLookupError: job.status, errno: job.systemErrno))
        }
        lua_createtable(L, Int32(job.addresses.count), 0)
        for (i, a) in job.addresses.enumerated() {
            let (host, _, family) = a.address.hostPortFamily
            lua_createtable(L, 0, 3)
            lua_pushstring(L, family)
            luaRawSetField(L, -2, "family")
            lua_pushstring(L, host)
            luaRawSetField(L, -2, "addr")
            if let c = a.canonicalName {
                lua_pushstring(L, c)
                luaRawSetField(L, -2, "canonname")
            }
            lua_rawseti(L, -2, lua_Integer(i + 1))
        }
        return 1
    }

    /// `nameinfo(address)` → the host name of a numeric address, or `nil, message`.
    static let nameinfo: LuaBody = { L in luaCall(L, nameinfo) }
    private static func nameinfo(_ L: LuaState) throws(LuaError) -> Int32 {
        let host = try Arg.string(L, 1)
        guard let address = SocketAddress(numericHost: host, port: 0) else {
            return SocketBindings.fail(L, message(forLookupError: EAI_NONAME, errno: 0))
        }
        return try park(L, on: ResolveJob(.names(address, flags: NI_NAMEREQD)), what: "nameinfo", then: named)
    }

    private static let named: LuaBody = { L in luaCall(L, named) }
    private static func named(_ L: LuaState) throws(LuaError) -> Int32 {
        guard let job = try finishedJob(L) else { return 0 }
        if job.status != 0 {
            return SocketBindings.fail(L, job.status == EAI_NONAME ? "host not found"
                                       : message(forLookupError: job.status, errno: job.systemErrno))
        }
        lua_pushstring(L, job.host ?? "")
        return 1
    }

    /// `servicename(port)` → the service's name from /etc/services ("http" for 80), or the
    /// port as text.
    static let servicename: LuaBody = { L in luaCall(L, servicename) }
    private static func servicename(_ L: LuaState) throws(LuaError) -> Int32 {
        let port = try Arg.integer(L, 1)
        if (0...65535).contains(port), let entry = getservbyport(Int32(UInt16(port).bigEndian), "tcp") {
            lua_pushstring(L, entry.pointee.s_name)
        } else {
            lua_pushstring(L, String(port))
        }
        return 1
    }

    static let gethostname: LuaBody = { L in luaCall(L, gethostname) }
    private static func gethostname(_ L: LuaState) throws(LuaError) -> Int32 {
        var buf = [CChar](repeating: 0, count: 257)
        guard Glibc.gethostname(&buf, buf.count - 1) == 0 else { return SocketBindings.fail(L, Syscall.lastErrorText()) }
        lua_pushstring(L, buf)
        return 1
    }

    // MARK: - select

    /// `select_fds(read, write [, timeout])` with arrays of descriptors → the arrays of those
    /// ready, or `nil, nil, "timeout"`.
    static let selectDescriptors: LuaBody = { L in luaCall(L, selectDescriptors) }
    private static func selectDescriptors(_ L: LuaState) throws(LuaError) -> Int32 {
        try Arg.table(L, 1)
        try Arg.table(L, 2)
        let timeout = try Arg.timeout(L, 3, negative: .meansForever)
        for fd in descriptors(L, 1) + descriptors(L, 2) where WaitableDescriptor.refusal(Int(fd)) != nil {
            lua_pushnil(L); lua_pushnil(L); lua_pushstring(L, "invalid descriptor \(fd)")
            return 3
        }
        if let status = pollOnce(L) { return status }
        if timeout == 0 { return timedOut(L) }
        let fiber = try FiberBindings.runningFiber(L, "select")
        let wait = SelectWait(runtime: Runtime.from(L), read: descriptors(L, 1), write: descriptors(L, 2))
        return Runtime.from(L).park(L, fiber, on: .select(wait), timeout: timeout, what: "select", then: selectDone)
    }

    private static let selectDone: LuaBody = { L in luaCall(L, selectDone) }
    private static func selectDone(_ L: LuaState) throws(LuaError) -> Int32 {
        _ = try Runtime.from(L).woken(L)
        return pollOnce(L) ?? timedOut(L)
    }

    private static func timedOut(_ L: LuaState) -> Int32 {
        lua_pushnil(L)
        lua_pushnil(L)
        lua_pushstring(L, "timeout")
        return 3
    }

    private static func descriptors(_ L: LuaState, _ index: Int32) -> [Int32] {
        var fds: [Int32] = []
        var i: lua_Integer = 1
        while lua_rawgeti(L, index, i) == LUA_TNUMBER {
            // Out of range stays out of range (-1), where truncating would pick some other descriptor.
            fds.append(Int32(exactly: lua_tointegerx(L, -1, nil)) ?? -1)
            gs_pop(L, 1)
            i += 1
        }
        gs_pop(L, 1)
        return fds
    }

    /// Polls the descriptors without waiting; nil when none is ready, else pushes the results.
    private static func pollOnce(_ L: LuaState) -> Int32? {
        let read = descriptors(L, 1), write = descriptors(L, 2)
        var fds = read.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            + write.map { pollfd(fd: $0, events: Int16(POLLOUT), revents: 0) }
        if fds.isEmpty { return nil }
        switch Syscall.poll(&fds, timeout: 0) {
        case .ok(0): return nil
        case .ok: break
        case .failed, .wouldBlock:
            lua_pushnil(L)
            lua_pushnil(L)
            lua_pushstring(L, "select failed")
            return 3
        }
        for (offset, count) in [(0, read.count), (read.count, write.count)] {
            lua_createtable(L, 0, 0)
            var k: lua_Integer = 1
            for j in offset..<(offset + count) where fds[j].revents != 0 {
                lua_pushinteger(L, lua_Integer(fds[j].fd))
                lua_rawseti(L, -2, k)
                k += 1
            }
        }
        return 2
    }
}
