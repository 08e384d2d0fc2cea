// setoption/getoption with LuaSocket's option names, value shapes and answers: each
// class has the options LuaSocket's tcp.c or udp.c lists for it (an option of the other
// kind is "unsupported"), numbers come back as floats (LuaSocket pushes lua_Number), and a
// failing or impossible get/set says "getsockopt failed"/"setsockopt failed" as opt.c does.
import CLua
import CShims
import Glibc

enum SocketOptions {
    private enum Shape { case boolean, integer, linger, membership4, membership6, address4, error }

    /// Which classes have an option, as LuaSocket's per-class lists say.
    private enum Kinds { case stream, datagram, both }

    private struct Option {
        let level: Int32
        let name: Int32
        let shape: Shape
        let settable: Bool
        let gettable: Bool
        var kinds: Kinds = .both
        /// Gettable on datagram sockets only (LuaSocket's tcp.c cannot get ipv6-v6only).
        var gettableOnStreams = true
    }

    private static let tcp = Int32(IPPROTO_TCP), ip = Int32(IPPROTO_IP), ip6 = Int32(IPPROTO_IPV6)
    private static let options: [String: Option] = [
        "keepalive": Option(level: SOL_SOCKET, name: SO_KEEPALIVE, shape: .boolean, settable: true, gettable: true, kinds: .stream),
        "linger": Option(level: SOL_SOCKET, name: SO_LINGER, shape: .linger, settable: true, gettable: true, kinds: .stream),
        "reuseaddr": Option(level: SOL_SOCKET, name: SO_REUSEADDR, shape: .boolean, settable: true, gettable: true),
        "reuseport": Option(level: SOL_SOCKET, name: SO_REUSEPORT, shape: .boolean, settable: true, gettable: true),
        "dontroute": Option(level: SOL_SOCKET, name: SO_DONTROUTE, shape: .boolean, settable: true, gettable: true, kinds: .datagram),
        "broadcast": Option(level: SOL_SOCKET, name: SO_BROADCAST, shape: .boolean, settable: true, gettable: true, kinds: .datagram),
        "recv-buffer-size": Option(level: SOL_SOCKET, name: SO_RCVBUF, shape: .integer, settable: true, gettable: true),
        "send-buffer-size": Option(level: SOL_SOCKET, name: SO_SNDBUF, shape: .integer, settable: true, gettable: true),
        "error": Option(level: SOL_SOCKET, name: SO_ERROR, shape: .error, settable: false, gettable: true),
        "tcp-nodelay": Option(level: tcp, name: TCP_NODELAY, shape: .boolean, settable: true, gettable: true, kinds: .stream),
        "tcp-keepidle": Option(level: tcp, name: TCP_KEEPIDLE, shape: .integer, settable: true, gettable: true, kinds: .stream),
        "tcp-keepcnt": Option(level: tcp, name: TCP_KEEPCNT, shape: .integer, settable: true, gettable: true, kinds: .stream),
        "tcp-keepintvl": Option(level: tcp, name: TCP_KEEPINTVL, shape: .integer, settable: true, gettable: true, kinds: .stream),
        "tcp-defer-accept": Option(level: tcp, name: TCP_DEFER_ACCEPT, shape: .integer, settable: true, gettable: false, kinds: .stream),
        "tcp-fastopen": Option(level: tcp, name: TCP_FASTOPEN, shape: .integer, settable: true, gettable: false, kinds: .stream),
        "tcp-fastopen-connect": Option(level: tcp, name: 30 /* TCP_FASTOPEN_CONNECT */, shape: .integer, settable: true, gettable: false, kinds: .stream),
        "ipv6-v6only": Option(level: ip6, name: IPV6_V6ONLY, shape: .boolean, settable: true, gettable: true, gettableOnStreams: false),
        "ip-multicast-ttl": Option(level: ip, name: IP_MULTICAST_TTL, shape: .integer, settable: true, gettable: false, kinds: .datagram),
        "ip-multicast-loop": Option(level: ip, name: IP_MULTICAST_LOOP, shape: .boolean, settable: true, gettable: true, kinds: .datagram),
        "ip-multicast-if": Option(level: ip, name: IP_MULTICAST_IF, shape: .address4, settable: true, gettable: true, kinds: .datagram),
        "ip-add-membership": Option(level: ip, name: IP_ADD_MEMBERSHIP, shape: .membership4, settable: true, gettable: false, kinds: .datagram),
        "ip-drop-membership": Option(level: ip, name: IP_DROP_MEMBERSHIP, shape: .membership4, settable: true, gettable: false, kinds: .datagram),
        "ipv6-unicast-hops": Option(level: ip6, name: IPV6_UNICAST_HOPS, shape: .integer, settable: true, gettable: true, kinds: .datagram),
        "ipv6-multicast-hops": Option(level: ip6, name: IPV6_MULTICAST_HOPS, shape: .integer, settable: true, gettable: true, kinds: .datagram),
        "ipv6-multicast-loop": Option(level: ip6, name: IPV6_MULTICAST_LOOP, shape: .boolean, settable: true, gettable: true, kinds: .datagram),
        "ipv6-add-membership": Option(level: ip6, name: IPV6_ADD_MEMBERSHIP, shape: .membership6, settable: true, gettable: false, kinds: .datagram),
        "ipv6-drop-membership": Option(level: ip6, name: IPV6_DROP_MEMBERSHIP, shape: .membership6, settable: true, gettable: false, kinds: .datagram),
    ]

    private static func lookup(_ L: LuaState, _ s: Socket, settable: Bool) throws(LuaError) -> Option {
        let name = try Arg.string(L, 2)
        let stream = s.socketClass.isStream
        guard let option = options[name], settable ? option.settable : option.gettable,
              option.kinds == .both || (option.kinds == .stream) == stream,
              settable || !stream || option.gettableOnStreams else {
            throw .argument(L, 2, "unsupported option `\(name)'")
        }
        return option
    }

    private static func result(_ L: LuaState, _ r: Syscall.Result) -> Int32 {
        switch r {
        case .ok: return SocketBindings.ok(L)
        case .failed, .wouldBlock: return SocketBindings.fail(L, "setsockopt failed")
        }
    }

    private static func getFailed(_ L: LuaState) -> Int32 { SocketBindings.fail(L, "getsockopt failed") }

    static func set(_ L: LuaState, _ s: Socket) throws(LuaError) -> Int32 {
        let option = try lookup(L, s, settable: true)
        if s.fd < 0 { return SocketBindings.fail(L, "setsockopt failed") }
        if option.level == SOL_SOCKET && option.name == Int32(SO_REUSEADDR) || option.name == IPV6_V6ONLY && option.level == ip6 {
            if option.name == IPV6_V6ONLY { s.v6only = lua_toboolean(L, 3) != 0 }
        }
        switch option.shape {
        case .boolean:
            guard lua_type(L, 3) == LUA_TBOOLEAN else { throw .type(L, 3, "boolean") }
            return result(L, Syscall.setsockopt(s.fd, option.level, option.name, Int32(lua_toboolean(L, 3))))
        case .integer:
            var isNumber: Int32 = 0
            let v = lua_tointegerx(L, 3, &isNumber)
            guard isNumber != 0, lua_type(L, 3) == LUA_TNUMBER else { throw .type(L, 3, "number") }
            return result(L, Syscall.setsockopt(s.fd, option.level, option.name, Int32(clamping: v)))
        case .linger:
            guard lua_type(L, 3) == LUA_TTABLE else { throw .type(L, 3, "table") }
            luaRawGetField(L, 3, "on")
            let on = lua_toboolean(L, -1)
            luaRawGetField(L, 3, "timeout")
            let timeout = Int32(clamping: lua_tointegerx(L, -1, nil))
            gs_pop(L, 2)
            return result(L, Syscall.setsockopt(s.fd, option.level, option.name, linger(l_onoff: on, l_linger: timeout)))
        case .address4:
            guard let text = luaString(L, 3) else { throw .type(L, 3, "string") }
            var address = in_addr()
            guard inet_pton(AF_INET, text == "*" ? "0.0.0.0" : text, &address) == 1 else {
                throw .argument(L, 3, "invalid IP address")
            }
            return result(L, Syscall.setsockopt(s.fd, option.level, option.name, address))
        case .membership4:
            guard lua_type(L, 3) == LUA_TTABLE else { throw .type(L, 3, "table") }
            luaRawGetField(L, 3, "multiaddr")
            luaRawGetField(L, 3, "interface")
            let group = luaString(L, -2) ?? "", interface = luaString(L, -1) ?? "0.0.0.0"
            gs_pop(L, 2)
            var mreq = ip_mreq()
            guard inet_pton(AF_INET, group, &mreq.imr_multiaddr) == 1,
                  inet_pton(AF_INET, interface == "*" ? "0.0.0.0" : interface, &mreq.imr_interface) == 1 else {
                throw .argument(L, 3, "invalid 'multiaddr' or 'interface' address")
            }
            return result(L, Syscall.setsockopt(s.fd, option.level, option.name, mreq))
        case .membership6:
            guard lua_type(L, 3) == LUA_TTABLE else { throw .type(L, 3, "table") }
            luaRawGetField(L, 3, "multiaddr")
            luaRawGetField(L, 3, "interface")
            let group = luaString(L, -2) ?? ""
            let interface = UInt32(clamping: lua_tointegerx(L, -1, nil))
            gs_pop(L, 2)
            var mreq = ipv6_mreq()
            guard inet_pton(AF_INET6, group, &mreq.ipv6mr_multiaddr) == 1 else {
                throw .argument(L, 3, "invalid 'multiaddr' address")
            }
            mreq.ipv6mr_interface = interface
            return result(L, Syscall.setsockopt(s.fd, option.level, option.name, mreq))
        case .error:
            throw .argument(L, 2, "unsupported option `error'")
        }
    }

    static func get(_ L: LuaState, _ s: Socket) throws(LuaError) -> Int32 {
        let option = try lookup(L, s, settable: false)
        if s.fd < 0 { return getFailed(L) }
        switch option.shape {
        case .boolean, .integer, .error:
            let (r, value) = Syscall.getsockopt(s.fd, option.level, option.name, Int32(0))
            if case .failed = r { return getFailed(L) }
            switch option.shape {
            case .boolean: lua_pushboolean(L, value != 0 ? 1 : 0)
            case .error:
                if value == 0 { lua_pushnil(L) } else { lua_pushstring(L, SocketBindings.message(for: value)) }
            default: lua_pushnumber(L, lua_Number(value))
            }
            return 1
        case .linger:
            let (r, value) = Syscall.getsockopt(s.fd, option.level, option.name, linger())
            if case .failed = r { return getFailed(L) }
            lua_createtable(L, 0, 2)
            lua_pushboolean(L, value.l_onoff != 0 ? 1 : 0)
            luaRawSetField(L, -2, "on")
            lua_pushnumber(L, lua_Number(value.l_linger))
            luaRawSetField(L, -2, "timeout")
            return 1
        case .address4:
            let (r, value) = Syscall.getsockopt(s.fd, option.level, option.name, in_addr())
            if case .failed = r { return getFailed(L) }
            var a = value
            var buf = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
            inet_ntop(AF_INET, &a, &buf, socklen_t(buf.count))
            lua_pushstring(L, cString(buf))
            return 1
        case .membership4, .membership6:
            throw .argument(L, 2, "unsupported option `\(luaString(L, 2) ?? "")'")
        }
    }
}
