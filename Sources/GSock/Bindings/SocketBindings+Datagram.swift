// Datagram sockets (udp and unixdgram): sendto, receivefrom, send, receive,
// setsockname and setpeername. Sends do not wait in practice; receives park on the
// socket's reader watcher, bounded by settimeout.
import CLibev
import CLua
import CShims
import Glibc

enum DatagramBindings {
    static let methods: [(String, LuaBody)] = [
        ("sendto", sendto), ("send", send), ("receive", receive), ("receivefrom", receivefrom),
        ("setsockname", setsockname), ("bind", setsockname), ("setpeername", setpeername), ("connect", setpeername),
    ]

    static let unconnected: Socket.Classes = [.udpUnconnected, .unixDgramUnconnected]
    static let connected: Socket.Classes = [.udpConnected, .unixDgramConnected]
    static let any = unconnected.union(connected)
    static let maxDatagram = 65536

    private static func datagramArg(_ L: LuaState, _ classes: Socket.Classes) throws(LuaError) -> Socket {
        try SocketBindings.socket(L, classes, expected: expected(classes, L))
    }

    private static func expected(_ classes: Socket.Classes, _ L: LuaState) -> String {
        let name = SocketBindings.get(L, 1)?.socketClass.isUnix ?? false ? "unixdgram" : "udp"
        if classes == unconnected { return "\(name){unconnected}" }
        return classes == connected ? "\(name){connected}" : "\(name){any}"
    }

    private static func fail(_ L: LuaState, _ e: Int32) -> Int32 {
        SocketBindings.fail(L, SocketBindings.message(for: e, datagram: true))
    }

    /// A string (or a number, which LuaSocket converts): the bytes stay in the Lua string.
    private static func dataArg(_ L: LuaState, _ index: Int32) throws(LuaError) -> UnsafeRawBufferPointer {
        guard lua_type(L, index) == LUA_TSTRING || lua_type(L, index) == LUA_TNUMBER else {
            throw .type(L, index, "string")
        }
        var len = 0
        let p = lua_tolstring(L, index, &len)!
        return UnsafeRawBufferPointer(start: p, count: len)
    }

    private static let sendto: LuaBody = { L in luaCall(L, sendto) }
    private static func sendto(_ L: LuaState) throws(LuaError) -> Int32 {
        let s = try datagramArg(L, unconnected)
        let data = try dataArg(L, 2)
        // The destination: a numeric address and port, or a unix path.
        let host = try Arg.string(L, 3)
        let address: SocketAddress
        if s.socketClass.isUnix {
            guard let a = SocketAddress(unixPath: host) else { return SocketBindings.fail(L, "path too long") }
            address = a
        } else {
            let port = try StreamBindings.port(L, 4)
            guard let a = SocketAddress(numericHost: host, port: port) else {
                return SocketBindings.fail(L, NameBindings.message(forLookupError: EAI_NONAME, errno: 0))
            }
            address = a
        }
        do {
            try s.openDescriptor(family: address.family)
        } catch {
            return fail(L, error.errno)
        }
        return sent(L, s.sendDatagram(data, to: address))
    }

    /// What sendto and send return: the bytes sent, or nil and the error.
    private static func sent(_ L: LuaState, _ step: Socket.Step<Int>) -> Int32 {
        switch step {
        case .done(let n):
            lua_pushnumber(L, lua_Number(n))
            return 1
        case .failed(.system(let e)): return fail(L, e.errno)
        case .failed(let failure): return SocketBindings.fail(L, StreamBindings.message(for: failure))
        case .wait: return SocketBindings.fail(L, "timeout")
        }
    }

    private static let send: LuaBody = { L in luaCall(L, send) }
    private static func send(_ L: LuaState) throws(LuaError) -> Int32 {
        let s = try datagramArg(L, connected)
        let data = try dataArg(L, 2)
        if s.isClosed { return SocketBindings.fail(L, "refused") }
        return sent(L, s.sendDatagram(data, to: nil))
    }

    private static func sizeArg(_ L: LuaState) throws(LuaError) -> Int {
        guard let v = try Arg.optionalNumber(L, 2) else { return 8192 }
        if v.isNaN { throw .argument(L, 2, "number has no integer representation") }
        // Clamped as a double: Int(_:) of inf or of 1e308 traps.
        return Int(min(max(v, 0), Double(maxDatagram)))
    }

    private static let receive: LuaBody = { L in luaCall(L, receive) }
    private static let receivefrom: LuaBody = { L in luaCall(L, receivefrom) }
    private static func receive(_ L: LuaState) throws(LuaError) -> Int32 { try receiveEntry(L, from: false) }
    private static func receivefrom(_ L: LuaState) throws(LuaError) -> Int32 { try receiveEntry(L, from: true) }

    private static func receiveEntry(_ L: LuaState, from: Bool) throws(LuaError) -> Int32 {
        let s = try datagramArg(L, from ? unconnected : any)
        _ = try sizeArg(L)
        if s.reader.isWaitedOn { return SocketBindings.fail(L, "busy") }
        if s.isClosed { return SocketBindings.fail(L, "refused") }
        s.receiveDeadline = s.deadline(for: .read)
        return receiveStep(L, s, from: from)
    }

    private static func receiveStep(_ L: LuaState, _ s: Socket, from: Bool) -> Int32 {
        guard let size = try? sizeArg(L) else { return 0 }
        var results: Int32 = 1
        let step = s.receiveDatagram(size: size) { bytes, peer in
            StreamBindings.pushBytes(L, bytes)
            guard from, let peer else { return }
            let (host, port, family) = peer.hostPortFamily
            lua_pushstring(L, host)
            results = 2
            if family == "unix" { return }
            lua_pushinteger(L, lua_Integer(port))
            results = 3
        }
        switch step {
        case .done:
            return results
        case .wait(let direction):
            return StreamBindings.park(L, s, direction, deadline: s.receiveDeadline, what: from ? "receivefrom" : "receive",
                                       then: from ? receiveFromContinue : receiveContinue) {
                SocketBindings.fail(L, "timeout")
            }
        case .failed(.system(let e)):
            return fail(L, e.errno)
        case .failed(let failure):
            return SocketBindings.fail(L, StreamBindings.message(for: failure))
        }
    }

    private static let receiveContinue: LuaBody = { L in luaCall(L, receiveContinue) }
    private static let receiveFromContinue: LuaBody = { L in luaCall(L, receiveFromContinue) }
    private static func receiveContinue(_ L: LuaState) throws(LuaError) -> Int32 { try continueReceive(L, from: false) }
    private static func receiveFromContinue(_ L: LuaState) throws(LuaError) -> Int32 { try continueReceive(L, from: true) }

    private static func continueReceive(_ L: LuaState, from: Bool) throws(LuaError) -> Int32 {
        guard let s = SocketBindings.get(L, 1) else { return 0 }
        let wake = try Runtime.from(L).woken(L)
        // Closed by another fiber while this one waited: SPEC §4 says "closed" (a later call
        // on the closed socket says "refused", as LuaSocket's datagram sockets do).
        if s.isClosed { return SocketBindings.fail(L, "closed") }
        if case .timedOut = wake { return SocketBindings.fail(L, "timeout") }
        return receiveStep(L, s, from: from)
    }

    // MARK: - Addresses

    private static let setsockname: LuaBody = { L in luaCall(L, setsockname) }
    private static func setsockname(_ L: LuaState) throws(LuaError) -> Int32 {
        try addressCall(L, try datagramArg(L, unconnected), passive: true, then: setsocknameResolved)
    }

    private static let setsocknameResolved: LuaBody = { L in luaCall(L, setsocknameResolved) }
    private static func setsocknameResolved(_ L: LuaState) throws(LuaError) -> Int32 {
        try StreamBindings.continueResolved(L) { StreamBindings.bindCandidates(L, $0, datagram: true) }
    }

    private static let setpeername: LuaBody = { L in luaCall(L, setpeername) }
    private static func setpeername(_ L: LuaState) throws(LuaError) -> Int32 {
        let s = try datagramArg(L, any)
        if luaString(L, 2) == "*" {
            var unspec = sockaddr()
            unspec.sa_family = sa_family_t(AF_UNSPEC)
            if s.fd >= 0 { _ = Glibc.connect(s.fd, &unspec, socklen_t(MemoryLayout<sockaddr>.size)) }
            SocketBindings.setClass(L, 1, s, s.socketClass.isUnix ? .unixDgramUnconnected : .udpUnconnected)
            return SocketBindings.ok(L)
        }
        return try addressCall(L, s, passive: false, then: setpeernameResolved)
    }

    private static let setpeernameResolved: LuaBody = { L in luaCall(L, setpeernameResolved) }
    private static func setpeernameResolved(_ L: LuaState) throws(LuaError) -> Int32 {
        try StreamBindings.continueResolved(L) { connectCandidates(L, $0) }
    }

    private static func addressCall(_ L: LuaState, _ s: Socket, passive: Bool, then kont: LuaBody) throws(LuaError) -> Int32 {
        let (host, port) = try StreamBindings.address(L, s)
        if let status = try StreamBindings.resolve(L, s, host: host, port: port, passive: passive,
                                               what: passive ? "setsockname" : "setpeername", then: kont) {
            return status
        }
        return passive ? StreamBindings.bindCandidates(L, s, datagram: true) : connectCandidates(L, s)
    }

    private static func connectCandidates(_ L: LuaState, _ s: Socket) -> Int32 {
        do {
            try s.connectDatagram()
        } catch {
            return fail(L, error.errno)
        }
        SocketBindings.setClass(L, 1, s, s.socketClass.isUnix ? .unixDgramConnected : .udpConnected)
        return SocketBindings.ok(L)
    }
}
