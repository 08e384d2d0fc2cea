// The methods of stream sockets (tcp and unixstream): bind, listen, accept, connect,
// receive, send, shutdown, and the OpenResty extensions receiveany, receiveuntil and the
// client connection pool. Each reads its arguments, runs the socket's operation
// (Sockets/Socket+Receive.swift, Socket+Connection.swift) and pushes its results; when the
// operation must wait, the fiber parks on the socket's reader or writer watcher and the
// continuation takes the wake once and runs the operation again.
import CLibev
import CLua
import CShims
import Glibc

enum StreamBindings {
    static let methods: [(String, LuaBody)] = [
        ("bind", bind), ("setsockname", bind), ("listen", listen), ("accept", accept),
        ("connect", connect), ("setpeername", connect), ("receive", receive), ("send", send),
        ("shutdown", shutdown), ("receiveany", receiveany), ("_receiveuntil", receiveUntil),
        ("setkeepalive", setkeepalive), ("getreusedtimes", getreusedtimes),
    ]

    /// An SSL:Connection's: it is connected already, and LuaSec's has no bind, listen,
    /// accept or connect (each was a call that could only fail).
    static let connectionMethods = methods.filter {
        !["bind", "setsockname", "listen", "accept", "connect", "setpeername"].contains($0.0)
    }

    static let masters: Socket.Classes = [.tcpMaster, .unixMaster]
    static let clients: Socket.Classes = [.tcpClient, .unixClient, .tlsConnection]
    static let servers: Socket.Classes = [.tcpServer, .unixServer]
    static let streams = masters.union(clients).union(servers)
    /// What connect takes: a TLS connection is connected already.
    static let connectable = masters.union(clients).subtracting(.tlsConnection)

    private static func expected(_ classes: Socket.Classes, _ L: LuaState) -> String {
        if SocketBindings.get(L, 1)?.socketClass == .tlsConnection { return "SSL:Connection" }
        let unix = SocketBindings.get(L, 1)?.socketClass.isUnix ?? false
        if classes == clients { return unix ? "unixstream{client}" : "tcp{client}" }
        if classes == servers { return unix ? "unixstream{server}" : "tcp{server}" }
        if classes == masters { return unix ? "unixstream{master}" : "tcp{master}" }
        return unix ? "unixstream{any}" : "tcp{any}"
    }

    /// The stream socket at index 1 if its class is one of `classes`.
    @inline(__always)
    static func stream(_ L: LuaState, _ classes: Socket.Classes) throws(LuaError) -> Socket {
        try SocketBindings.socket(L, classes, expected: expected(classes, L))
    }

    /// stream() for the hot methods: the socket is lent to `body` (SocketBindings.withSocketArg).
    @inline(__always)
    static func withStreamArg(_ L: LuaState, _ classes: Socket.Classes, _ body: (Socket) -> Int32) -> Int32 {
        SocketBindings.withSocketArg(L, classes, expected: expected(classes, L), body)
    }

    private static func fail(_ L: LuaState, _ message: String) -> Int32 { SocketBindings.fail(L, message) }

    /// `nil, message, partial`: the partial result is the receive's accumulator.
    private static func fail(_ L: LuaState, _ message: String, _ s: Socket) -> Int32 {
        let status = s.receiveAccumulator.withUnsafeBufferPointer { SocketBindings.fail(L, message, partial: $0) }
        s.receiveAccumulator.removeAll(keepingCapacity: true)
        return status
    }

    /// LuaSocket's words for a failed operation.
    static func message(for failure: SocketFailure) -> String {
        switch failure {
        case .closed: return "closed"
        case .timeout: return "timeout"
        case .outOfMemory: return "not enough memory"
        case .system(let e): return SocketBindings.message(for: e.errno)
        case .tls(let message): return message
        }
    }

    private static func fail(_ L: LuaState, _ failure: SocketFailure) -> Int32 { fail(L, message(for: failure)) }

    /// The words of a wait that timed out: LuaSec's connection objects say which way they
    /// waited ("wantread", "wantwrite").
    static func timeoutMessage(_ s: Socket) -> String {
        guard s.socketClass == .tlsConnection else { return "timeout" }
        return s.parkedDirection == .read ? "wantread" : "wantwrite"
    }

    // MARK: - Addresses

    /// The port argument: a number or a numeric string, 0...65535.
    static func port(_ L: LuaState, _ index: Int32) throws(LuaError) -> UInt16 {
        var isNum: Int32 = 0
        let v = lua_tointegerx(L, index, &isNum)
        guard isNum != 0, (0...65535).contains(v) else {
            if lua_type(L, index) == LUA_TNUMBER || lua_type(L, index) == LUA_TSTRING {
                throw .argument(L, index, "invalid port")
            }
            throw .type(L, index, "number")
        }
        return UInt16(v)
    }

    /// Arguments 2 and 3: a host and a port, or a path alone for unix sockets.
    static func address(_ L: LuaState, _ s: Socket) throws(LuaError) -> (host: String, port: UInt16) {
        let host = try Arg.string(L, 2)
        if s.socketClass.isUnix { return (host, 0) }
        return (host, try port(L, 3))
    }

    /// Resolves `host` for a stream socket of `s`'s family: parks the fiber when the host
    /// is a name, and continues in `then` (which finds the addresses in s.clientState.connectCandidates).
    static func resolve(_ L: LuaState, _ s: Socket, host: String, port: UInt16, passive: Bool,
                        what: String, then kont: LuaBody) throws(LuaError) -> Int32? {
        if s.socketClass.isUnix {
            guard let a = SocketAddress(unixPath: host) else { return fail(L, "path too long") }
            s.clientState.connectCandidates = [a]
            return nil
        }
        var name = host
        if host == "*" { name = s.family == AF_INET6 ? "::" : "0.0.0.0" }
        if let a = SocketAddress(numericHost: name, port: port) {
            s.clientState.connectCandidates = [a]
            return nil
        }
        let fiber = try FiberBindings.runningFiber(L, what)
        let socktype = s.socketClass.isStream ? SOCK_STREAM : SOCK_DGRAM
        let job = ResolveJob(.addresses(host: name, service: String(port), family: s.family,
                                        socktype: Int32(socktype.rawValue), flags: passive ? AI_PASSIVE : 0))
        s.clientState.resolveJob = job
        return Runtime.from(L).park(L, fiber, on: .resolve(job), timeout: nil, what: what, then: kont)
    }

    /// The continuation of a wait for name resolution: the socket's candidates become the
    /// resolved addresses and `step` goes on with them, or the lookup's failure is returned.
    static func continueResolved(_ L: LuaState, then step: (Socket) -> Int32) throws(LuaError) -> Int32 {
        guard let s = SocketBindings.get(L, 1) else { return 0 }
        _ = try Runtime.from(L).woken(L)
        guard let job = s.clientState.resolveJob else { return fail(L, "closed") }
        s.clientState.resolveJob = nil
        if job.status != 0 { return fail(L, NameBindings.message(forLookupError: job.status, errno: job.systemErrno)) }
        s.clientState.connectCandidates = job.addresses.map(\.address)
        return step(s)
    }

    // MARK: - bind, listen

    private static let bind: LuaBody = { L in luaCall(L, bind) }

    private static func bind(_ L: LuaState) throws(LuaError) -> Int32 {
        let s = try stream(L, masters)
        let (host, port) = try address(L, s)
        if let status = try resolve(L, s, host: host, port: port, passive: true, what: "bind", then: bindResolved) {
            return status
        }
        return bindCandidates(L, s)
    }

    private static let bindResolved: LuaBody = { L in luaCall(L, bindResolved) }
    private static func bindResolved(_ L: LuaState) throws(LuaError) -> Int32 {
        try continueResolved(L) { bindCandidates(L, $0) }
    }

    /// Binds to the first of s.clientState.connectCandidates that works: 1, or nil and the last error.
    static func bindCandidates(_ L: LuaState, _ s: Socket, datagram: Bool = false) -> Int32 {
        do {
            try s.bindCandidates()
            return SocketBindings.ok(L)
        } catch {
            return fail(L, SocketBindings.message(for: error.errno, datagram: datagram))
        }
    }

    private static let listen: LuaBody = { L in luaCall(L, listen) }

    private static func listen(_ L: LuaState) throws(LuaError) -> Int32 {
        let s = try stream(L, masters)
        let backlog = try Arg.optionalInteger(L, 2) ?? 32
        do throws(SystemError) {
            if s.fd < 0 { try s.openDescriptor(family: s.family == AF_UNSPEC ? AF_INET : s.family) }
            if case .failed(let e) = Syscall.listen(s.fd, Int32(clamping: backlog)) { throw e }
        } catch {
            return fail(L, SocketBindings.message(for: error.errno))
        }
        SocketBindings.setClass(L, 1, s, s.socketClass.isUnix ? .unixServer : .tcpServer)
        return SocketBindings.ok(L)
    }

    // MARK: - accept

    private static let accept: LuaBody = { L in luaCall(L, accept) }

    private static func accept(_ L: LuaState) throws(LuaError) -> Int32 {
        beginAccept(L, try stream(L, servers), then: acceptContinue, deliver: pushClient)
    }

    private static func pushClient(_ L: LuaState, _ client: Socket) -> Int32 {
        SocketBindings.push(L, client)
        return 1
    }

    /// An accept on `s`: `deliver` takes the client and returns the results; a wait parks
    /// with `kont` (which calls `continueAccept`). `service:accept` (HTTPBindings) accepts
    /// with a `deliver` of its own.
    static func beginAccept(_ L: LuaState, _ s: Socket, then kont: LuaBody,
                            deliver: (LuaState, Socket) -> Int32) -> Int32 {
        if s.isReceiving { return fail(L, "busy") }
        s.receiveDeadline = s.deadline(for: .read)
        return acceptStep(L, s, woken: false, then: kont, deliver: deliver)
    }

    /// The continuation of an accept whose listener is at `index`.
    static func continueAccept(_ L: LuaState, listenerAt index: Int32, then kont: LuaBody,
                               deliver: (LuaState, Socket) -> Int32) throws(LuaError) -> Int32 {
        guard let s = SocketBindings.get(L, index) else { return 0 }
        if case .timedOut = try Runtime.from(L).woken(L) { return fail(L, "timeout") }
        return acceptStep(L, s, woken: true, then: kont, deliver: deliver)
    }

    private static func acceptStep(_ L: LuaState, _ s: Socket, woken: Bool, then kont: LuaBody,
                                   deliver: (LuaState, Socket) -> Int32) -> Int32 {
        switch s.accept(woken: woken) {
        case .done(let client):
            return deliver(L, client)
        case .wait(let direction):
            return park(L, s, direction, deadline: s.receiveDeadline, what: "accept", then: kont) {
                fail(L, "timeout")
            }
        case .failed(let failure):
            return fail(L, failure)
        }
    }

    private static let acceptContinue: LuaBody = { L in luaCall(L, acceptContinue) }
    private static func acceptContinue(_ L: LuaState) throws(LuaError) -> Int32 {
        try continueAccept(L, listenerAt: 1, then: acceptContinue, deliver: pushClient)
    }

    /// server.lua's `accepted_peer()`, right after an accept gave it a client: that client's
    /// peer as an integer (an IPv4 peer, packed as gs_accept packs it; false for another
    /// family), so that a server has its peer without a getpeername and formats it only when
    /// something reads it.
    static let acceptedPeer: LuaBody = { L in
        let peer = Runtime.from(L!).acceptedPeer
        if peer != 0 { lua_pushinteger(L, lua_Integer(peer)) } else { lua_pushboolean(L, 0) }
        return 1
    }

    /// Parks the running fiber until the socket is ready for `direction`, bounded by the
    /// socket's timeouts; `timedOut` gives the result when no wait is allowed at all. An
    /// operation of one side (`operation`, the direction by default) waiting for the other
    /// side's readiness (TLS) waits on a watcher of its own.
    static func park(_ L: LuaState, _ s: Socket, _ direction: Socket.Direction, for operation: Socket.Direction? = nil,
                     deadline: Double?, what: String, then kont: LuaBody, timedOut: () -> Int32) -> Int32 {
        s.parkedDirection = direction
        let limit = s.waitLimit(deadline: deadline)
        if limit == 0 { return timedOut() }
        return s.withRuntime { runtime in
            // A connection waiting for data with nothing buffered is idle: it keeps no buffer.
            if direction == .read && s.buffer.isEmpty { s.buffer.release(to: &runtime.spareChunks) }
            let watcher = s.watcher(for: operation ?? direction, waitingFor: direction)
            return runtime.withCurrent { fiber in
                runtime.park(L, fiber, on: .io(watcher), timeout: limit, what: what, then: kont)
            } ?? luaRaise(L, "\(what): not called from a fiber")
        }
    }

    // MARK: - connect

    private static let connect: LuaBody = { L in luaCall(L, connect) }

    private static func connect(_ L: LuaState) throws(LuaError) -> Int32 {
        let s = try stream(L, connectable)
        let (host, port) = try address(L, s)
        if s.reusePooledConnection(s.socketClass.isUnix ? "unix:\(host)" : "\(host):\(port)", host: host) {
            becomeClient(L, s)
            return SocketBindings.ok(L)
        }
        s.sendDeadline = s.deadline(for: .write, connecting: true)
        s.clientState.connectError = nil
        if let status = try resolve(L, s, host: host, port: port, passive: false, what: "connect", then: connectResolved) {
            return status
        }
        return connectStep(L, s, s.connectCandidates { becomeClient(L, s) })
    }

    private static func becomeClient(_ L: LuaState, _ s: Socket) {
        SocketBindings.setClass(L, 1, s, s.socketClass.isUnix ? .unixClient : .tcpClient)
    }

    private static let connectResolved: LuaBody = { L in luaCall(L, connectResolved) }
    private static func connectResolved(_ L: LuaState) throws(LuaError) -> Int32 {
        try continueResolved(L) { s in connectStep(L, s, s.connectCandidates { becomeClient(L, s) }) }
    }

    private static func connectStep(_ L: LuaState, _ s: Socket, _ step: Socket.Step<Void>) -> Int32 {
        switch step {
        case .done: return SocketBindings.ok(L)
        case .wait(let direction):
            return park(L, s, direction, deadline: s.sendDeadline, what: "connect", then: connectContinue) {
                s.abandonConnect()
                return fail(L, "timeout")
            }
        case .failed(let failure): return fail(L, failure)
        }
    }

    private static let connectContinue: LuaBody = { L in luaCall(L, connectContinue) }
    private static func connectContinue(_ L: LuaState) throws(LuaError) -> Int32 {
        guard let s = SocketBindings.get(L, 1) else { return 0 }
        if case .timedOut = try Runtime.from(L).woken(L) {
            s.abandonConnect()
            return fail(L, "timeout")
        }
        return connectStep(L, s, s.connectFinished { becomeClient(L, s) })
    }

    // MARK: - receive

    static func pattern(_ L: LuaState, _ index: Int32) throws(LuaError) -> Socket.Pattern {
        switch lua_type(L, index) {
        case LUA_TNONE, LUA_TNIL:
            return .line
        case LUA_TNUMBER:
            let n = lua_tonumberx(L, index, nil)
            guard n >= 0, n < Double(Int.max) else { throw .argument(L, index, "invalid receive pattern") }
            return .count(Int(n))
        case LUA_TSTRING:
            var len = 0
            let p = lua_tolstring(L, index, &len)!
            let first = len > 0 && p[0] == 42 /* * */ ? (len > 1 ? p[1] : 0) : (len > 0 ? p[0] : 0)
            if first == 108 /* l */ { return .line }
            if first == 97 /* a */ { return .all }
            if lua_isnumber(L, index) != 0 {  // "3" counts as 3, as in LuaSocket
                let n = lua_tonumberx(L, index, nil)
                if n >= 0, n < Double(Int.max) { return .count(Int(n)) }
            }
            throw .argument(L, index, "invalid receive pattern")
        default:
            throw .argument(L, index, "invalid receive pattern")
        }
    }

    private static let receive: LuaBody = { L in
        withStreamArg(L!, clients) { s in luaCall(L) { L throws(LuaError) in try receive(L, s) } }
    }

    /// pattern(), quicker for "*l" and "*a": Lua interns short strings, so those are
    /// the runtime's anchored copies.
    @inline(__always)
    private static func receivePatternArg(_ L: LuaState, _ s: Socket) throws(LuaError) -> Socket.Pattern {
        if lua_type(L, 2) == LUA_TSTRING {
            let p = lua_tolstring(L, 2, nil)
            let known = s.withRuntime { ($0.linePatternName, $0.allPatternName) }
            if p == known.0 { return .line }
            if p == known.1 { return .all }
        }
        return try pattern(L, 2)
    }

    private static func receive(_ L: LuaState, _ s: Socket) throws(LuaError) -> Int32 {
        let pattern = try receivePatternArg(L, s)
        // Before the accumulator is touched: it holds the parked receive's partial data.
        if s.isReceiving { return fail(L, "busy") }
        if !s.receiveAccumulator.isEmpty { s.receiveAccumulator.removeAll(keepingCapacity: true) }
        if lua_gettop(L) >= 3 && !luaIsNoneOrNil(L, 3) {
            guard lua_type(L, 3) == LUA_TSTRING || lua_type(L, 3) == LUA_TNUMBER else {
                throw .type(L, 3, "string")
            }
            var len = 0
            let p = lua_tolstring(L, 3, &len)!
            p.withMemoryRebound(to: UInt8.self, capacity: len) {
                s.receiveAccumulator.append(contentsOf: UnsafeBufferPointer(start: $0, count: len))
            }
        }
        s.receivePrefixLength = s.receiveAccumulator.count
        if s.isClosed { return fail(L, "closed", s) }
        s.receiveDeadline = s.deadline(for: .read)
        s.reading = .pattern(pattern)
        return receiveStep(L, s, pattern)
    }

    static func pushBytes(_ L: LuaState, _ bytes: UnsafeBufferPointer<UInt8>) {
        _ = bytes.withMemoryRebound(to: CChar.self) { lua_pushlstring(L, $0.baseAddress, $0.count) }
    }

    private static func receiveStep(_ L: LuaState, _ s: Socket, _ pattern: Socket.Pattern) -> Int32 {
        let emptyString = s.withRuntime { $0.emptyStringRef }
        let step = s.receive(pattern) { bytes in
            if bytes.isEmpty {  // a blank line, as ends HTTP's headers
                luaPushRef(L, emptyString)
            } else {
                pushBytes(L, bytes)
            }
        }
        // A receive's success as LuaSocket returns it: the data, nil, nil.
        return finishReceive(L, s, step, what: "receive") {
            lua_pushnil(L)
            lua_pushnil(L)
            return 3
        }
    }

    /// Returns a receive step's results (`received` pushes what follows the data), its
    /// failure, or parks until it can go on.
    @inline(__always)
    private static func finishReceive(_ L: LuaState, _ s: Socket, _ step: Socket.ReceiveStep, what: String,
                                      received: () -> Int32) -> Int32 {
        switch step {
        case .received:
            return received()
        case .failed(let failure, let partial):
            return partial ? fail(L, message(for: failure), s) : fail(L, failure)
        case .wait(let direction):
            return park(L, s, direction, for: .read, deadline: s.receiveDeadline, what: what, then: receiveContinue) {
                let partial = s.receiveTimedOut()
                return partial ? fail(L, timeoutMessage(s), s) : fail(L, timeoutMessage(s))
            }
        }
    }

    /// The continuation of every receive: an error delivered while it waited is raised; a
    /// closed socket or a timeout ends the read; otherwise the read goes on.
    private static let receiveContinue: LuaBody = { L in receiveContinued(L!) }
    private static func receiveContinued(_ L: LuaState) -> Int32 {
        SocketBindings.withSocket(L) { s in
            switch s.withRuntime({ $0.takeWake(L) }) {
            case .raise(let status):
                s.receiveAccumulator.removeAll(keepingCapacity: true)
                return status
            case .woken(let wake):
                if s.isClosed { return s.receiveClosedKeepsPartial ? fail(L, "closed", s) : fail(L, "closed") }
                if case .timedOut = wake {
                    return s.receiveTimedOut() ? fail(L, timeoutMessage(s), s) : fail(L, timeoutMessage(s))
                }
                s.drained = false
                switch s.reading {
                case .pattern(let pattern): return receiveStep(L, s, pattern)
                case .any(let max): return receiveAnyStep(L, s, max: max)
                case .until(let delimiter, let size, _): return receiveUntilStep(L, s, delimiter, size: size)
                }
            }
        }
    }

    /// OpenResty's receiveany(max): whatever is available, 1 to max bytes, once there is any.
    private static let receiveany: LuaBody = { L in
        withStreamArg(L!, clients) { s in luaCall(L) { L throws(LuaError) in try receiveany(L, s) } }
    }

    private static func receiveany(_ L: LuaState, _ s: Socket) throws(LuaError) -> Int32 {
        var max = 0
        var isInteger: Int32 = 0
        if lua_type(L, 2) == LUA_TNUMBER { max = Int(lua_tointegerx(L, 2, &isInteger)) }
        if isInteger == 0 { max = try Arg.integer(L, 2) }  // Arg.integer's errors
        if max < 1 { throw .argument(L, 2, "bad max argument") }
        if s.isReceiving { return fail(L, "busy") }
        if s.isClosed { return fail(L, "closed") }
        if !s.receiveAccumulator.isEmpty { s.receiveAccumulator.removeAll(keepingCapacity: true) }
        s.receiveDeadline = s.deadline(for: .read)
        s.reading = .any(max: max)
        return receiveAnyStep(L, s, max: max)
    }

    private static func receiveAnyStep(_ L: LuaState, _ s: Socket, max: Int) -> Int32 {
        let step = s.receiveAny(max: max) { bytes in pushBytes(L, bytes) }
        return finishReceive(L, s, step, what: "receiveany") { 1 }
    }

    /// `_receiveuntil(pattern [, size])` → data, found: the bytes before the next `pattern`
    /// (consumed), or with `size` at most `size` bytes that cannot belong to it.
    private static let receiveUntil: LuaBody = { L in luaCall(L, receiveUntil) }

    private static func receiveUntil(_ L: LuaState) throws(LuaError) -> Int32 {
        let s = try stream(L, clients)
        guard let pattern = luaString(L, 2), !pattern.isEmpty else { throw .argument(L, 2, "pattern is empty") }
        // Clamped so that size + pattern.count cannot overflow: no buffer gets near Int.max / 4.
        let size = try Arg.optionalInteger(L, 3).map { min(Swift.max(1, $0), Int.max / 4) }
        if s.isReceiving { return fail(L, "busy") }
        if s.isClosed { return fail(L, "closed") }
        s.receiveAccumulator.removeAll(keepingCapacity: true)
        s.receiveDeadline = s.deadline(for: .read)
        let delimiter = Array(pattern.utf8)
        s.reading = .until(delimiter: delimiter, size: size, searched: 0)
        return receiveUntilStep(L, s, delimiter, size: size)
    }

    private static func receiveUntilStep(_ L: LuaState, _ s: Socket, _ delimiter: [UInt8], size: Int?) -> Int32 {
        let step = s.receiveUntil(delimiter, size: size) { bytes, found in
            pushBytes(L, bytes)
            lua_pushboolean(L, found ? 1 : 0)
        }
        return finishReceive(L, s, step, what: "receiveuntil") { 2 }
    }

    // MARK: - send

    private static let send: LuaBody = { L in
        withStreamArg(L!, clients) { s in luaCall(L) { L throws(LuaError) in try send(L, s) } }
    }

    private static func send(_ L: LuaState, _ s: Socket) throws(LuaError) -> Int32 {
        // A number becomes a string in place, as luaL_checklstring converts it.
        var length = 0
        guard let data = lua_tolstring(L, 2, &length) else { throw .type(L, 2, "string") }
        if lua_gettop(L) > 2 {  // send(data, i [, j])
            _ = try Arg.optionalInteger(L, 3)
            _ = try Arg.optionalInteger(L, 4)
        }
        if s.isSending { return fail(L, "busy") }
        s.sendProgress = 0
        s.sendDeadline = s.deadline(for: .write)
        return sendStep(L, s, UnsafeRawPointer(data), length)
    }

    /// The 1-based range [i, j] of the data to send, as string.sub clamps it.
    private static func sendRange(_ L: LuaState, length: Int) -> (Int, Int) {
        if lua_gettop(L) < 3 { return (1, length) }  // send(data): the usual call
        var i = luaIsNoneOrNil(L, 3) ? 1 : Int(lua_tointegerx(L, 3, nil))
        var j = luaIsNoneOrNil(L, 4) ? -1 : Int(lua_tointegerx(L, 4, nil))
        if i < 0 { i = max(length + i + 1, 1) } else if i == 0 { i = 1 }
        if j < 0 { j = max(length + j + 1, 0) } else if j > length { j = length }
        return (min(i, length + 1), j)  // both in 0...length + 1: j - i + 1 cannot overflow
    }

    /// Sends `data` (argument 2, `length` bytes) from where the send is.
    private static func sendStep(_ L: LuaState, _ s: Socket, _ data: UnsafeRawPointer, _ length: Int) -> Int32 {
        let (i, j) = sendRange(L, length: length)
        let count = max(0, j - i + 1)
        switch s.send(data + (i - 1), count: count) {
        case .done:
            // LuaSocket's shapes: the index as a float and two nils; nil, message, the index.
            lua_pushnumber(L, lua_Number(i - 1 + count))
            lua_pushnil(L)
            lua_pushnil(L)
            return 3
        case .wait(let direction):
            return park(L, s, direction, for: .write, deadline: s.sendDeadline, what: "send", then: sendContinue) {
                sendFailed(L, timeoutMessage(s), i, s)
            }
        case .failed(let failure):
            return sendFailed(L, message(for: failure), i, s)
        }
    }

    private static func sendFailed(_ L: LuaState, _ message: String, _ i: Int, _ s: Socket) -> Int32 {
        lua_pushnil(L)
        lua_pushstring(L, message)
        lua_pushnumber(L, lua_Number(i - 1 + s.sendProgress))
        return 3
    }

    private static let sendContinue: LuaBody = { L in sendContinued(L!) }
    private static func sendContinued(_ L: LuaState) -> Int32 {
        SocketBindings.withSocket(L) { s in
            switch s.withRuntime({ $0.takeWake(L) }) {
            case .raise(let status): return status
            case .woken(let wake):
                var length = 0
                let data = UnsafeRawPointer(lua_tolstring(L, 2, &length)!)
                let (i, _) = sendRange(L, length: length)
                if s.isClosed { return sendFailed(L, "closed", i, s) }
                if case .timedOut = wake { return sendFailed(L, timeoutMessage(s), i, s) }
                return sendStep(L, s, data, length)
            }
        }
    }

    // MARK: - shutdown, the connection pool

    private static let shutdown: LuaBody = { L in luaCall(L, shutdown) }

    private static func shutdown(_ L: LuaState) throws(LuaError) -> Int32 {
        let s = try stream(L, clients)
        let how: Int32
        switch luaString(L, 2) ?? (luaIsNoneOrNil(L, 2) ? "both" : "?") {
        case "both": how = Int32(SHUT_RDWR)
        case "send": how = Int32(SHUT_WR)
        case "receive": how = Int32(SHUT_RD)
        default: throw .argument(L, 2, "invalid option '\(luaString(L, 2) ?? "?")'")
        }
        if !s.isClosed { _ = Syscall.shutdown(s.fd, how) }
        return SocketBindings.ok(L)
    }

    /// `setkeepalive([max_idle [, pool_size]])`: puts the connection in the runtime's pool
    /// for the next connect to the same address, instead of closing it.
    private static let setkeepalive: LuaBody = { L in luaCall(L, setkeepalive) }

    private static func setkeepalive(_ L: LuaState) throws(LuaError) -> Int32 {
        let s = try stream(L, clients)
        let maxIdle = try Arg.optionalNumber(L, 2).flatMap { $0 > 0 ? $0 : nil }
        let poolSize = try Arg.optionalInteger(L, 3) ?? 30
        if poolSize < 1 { throw .argument(L, 3, "pool size must be positive") }
        do {
            try s.keepAlive(maxIdle: maxIdle, poolSize: poolSize)
            return SocketBindings.ok(L)
        } catch {
            return fail(L, error.rawValue)
        }
    }

    private static let getreusedtimes: LuaBody = { L in luaCall(L, getreusedtimes) }

    private static func getreusedtimes(_ L: LuaState) throws(LuaError) -> Int32 {
        let s = try SocketBindings.socket(L, expected: "socket")
        lua_pushinteger(L, lua_Integer(s.clientState.reusedTimes))
        return 1
    }
}
