// Stream sockets (tcp and unixstream): bind, listen, accept, connect, receive, send,
// shutdown, and the OpenResty extensions receiveany, receiveuntil and the client
// connection pool. Each wait parks on the socket's reader or writer watcher; the
// operation's progress lives in the Socket between parks.
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

    static let masters: Socket.Classes = [.tcpMaster, .unixMaster]
    static let clients: Socket.Classes = [.tcpClient, .unixClient]
    static let servers: Socket.Classes = [.tcpServer, .unixServer]
    static let streams = masters.union(clients).union(servers)

    private static func expected(_ classes: Socket.Classes, _ L: LuaState) -> String {
        let unix = SocketBindings.get(L, 1)?.socketClass.isUnix ?? false
        if classes == clients { return unix ? "unixstream{client}" : "tcp{client}" }
        if classes == servers { return unix ? "unixstream{server}" : "tcp{server}" }
        if classes == masters { return unix ? "unixstream{master}" : "tcp{master}" }
        return unix ? "unixstream{any}" : "tcp{any}"
    }

    @inline(__always)
    static func streamArg(_ L: LuaState, _ classes: Socket.Classes) -> ArgResult<Socket> {
        SocketBindings.socketArg(L, classes, expected: expected(classes, L))
    }

    /// streamArg for the hot methods: the socket is lent to `body` (SocketBindings.withSocketArg).
    @inline(__always)
    static func withStreamArg(_ L: LuaState, _ classes: Socket.Classes, _ body: (Socket) -> Int32) -> Int32 {
        SocketBindings.withSocketArg(L, classes, expected: expected(classes, L), body)
    }

    private static func fail(_ L: LuaState, _ message: String) -> Int32 { SocketBindings.fail(L, message) }

    private static func fail(_ L: LuaState, _ message: String, _ s: Socket) -> Int32 {
        let status = s.receiveAccumulator.withUnsafeBufferPointer { SocketBindings.fail(L, message, partial: $0) }
        s.receiveAccumulator.removeAll(keepingCapacity: true)
        return status
    }

    // MARK: - Addresses

    /// The port argument: a number or a numeric string, 0...65535.
    static func portArg(_ L: LuaState, _ index: Int32) -> ArgResult<UInt16> {
        var isNum: Int32 = 0
        let v = lua_tointegerx(L, index, &isNum)
        guard isNum != 0, (0...65535).contains(v) else {
            if lua_type(L, index) == LUA_TNUMBER || lua_type(L, index) == LUA_TSTRING {
                return .error(luaArgError(L, index, "invalid port"))
            }
            return .error(luaTypeError(L, index, "number"))
        }
        return .value(UInt16(v))
    }

    static func hostArg(_ L: LuaState, _ index: Int32) -> ArgResult<String> {
        guard let s = luaString(L, index) else { return .error(luaTypeError(L, index, "string")) }
        return .value(s)
    }

    /// Arguments 2 and 3: a host and a port, or a path alone for unix sockets.
    static func addressArgs(_ L: LuaState, _ s: Socket) -> ArgResult<(host: String, port: UInt16)> {
        let host: String
        switch hostArg(L, 2) {
        case .error(let status): return .error(status)
        case .value(let h): host = h
        }
        if s.socketClass.isUnix { return .value((host, 0)) }
        switch portArg(L, 3) {
        case .error(let status): return .error(status)
        case .value(let port): return .value((host, port))
        }
    }

    /// Resolves `host` for a stream socket of `s`'s family: parks the fiber when the host
    /// is a name, and continues in `then` (which finds the addresses in s.seldom.connectCandidates).
    static func resolve(_ L: LuaState, _ s: Socket, host: String, port: UInt16, passive: Bool,
                                what: String, then kont: LuaBody) -> Int32? {
        if s.socketClass.isUnix {
            guard let a = SocketAddress(unixPath: host) else { return fail(L, "path too long") }
            s.seldom.connectCandidates = [a]
            return nil
        }
        var name = host
        if host == "*" { name = s.family == AF_INET6 ? "::" : "0.0.0.0" }
        if let a = SocketAddress(numericHost: name, port: port) {
            s.seldom.connectCandidates = [a]
            return nil
        }
        let fiber: Fiber
        switch FiberBindings.currentFiber(L, what) {
        case .error(let status): return status
        case .value(let f): fiber = f
        }
        let socktype = s.socketClass.isStream ? SOCK_STREAM : SOCK_DGRAM
        let job = ResolveJob(.addresses(host: name, service: String(port), family: s.family,
                                        socktype: Int32(socktype.rawValue), flags: passive ? AI_PASSIVE : 0))
        s.seldom.resolveJob = job
        return Runtime.from(L).park(L, fiber, on: .resolve(job), timeout: nil, what: what, then: kont)
    }

    /// The continuation of a wait for name resolution: the socket's candidates become the
    /// resolved addresses and `step` goes on with them, or the lookup's failure is returned.
    static func continueResolved(_ L: LuaState, then step: (Socket) -> Int32) -> Int32 {
        guard let s = SocketBindings.get(L, 1) else { return 0 }
        switch Runtime.from(L).takeWake(L) {
        case .raise(let status): return status
        case .woken: break
        }
        guard let job = s.seldom.resolveJob else { return fail(L, "closed") }
        s.seldom.resolveJob = nil
        if job.status != 0 { return fail(L, NameBindings.message(forLookupError: job.status, errno: job.systemErrno)) }
        s.seldom.connectCandidates = job.addresses.map(\.address)
        return step(s)
    }

    // MARK: - bind, listen

    private static let bind: LuaBody = { L in
        let L = L!
        let s: Socket
        switch streamArg(L, masters) {
        case .error(let status): return status
        case .value(let v): s = v
        }
        let (host, port): (String, UInt16)
        switch addressArgs(L, s) {
        case .error(let status): return status
        case .value(let a): (host, port) = a
        }
        if let status = resolve(L, s, host: host, port: port, passive: true, what: "bind", then: bindResolved) {
            return status
        }
        return bindCandidates(L, s)
    }

    private static let bindResolved: LuaBody = { L in continueResolved(L!) { bindCandidates(L!, $0) } }

    /// Binds to the first of s.seldom.connectCandidates that works: 1, or nil and the last error.
    static func bindCandidates(_ L: LuaState, _ s: Socket, datagram: Bool = false) -> Int32 {
        var error: Int32 = EADDRNOTAVAIL
        defer { s.seldom.connectCandidates = [] }
        for address in s.seldom.connectCandidates {
            if let e = SocketBindings.ensureDescriptor(s, family: address.family) {
                error = e
                continue
            }
            switch Posix.bind(s.fd, address) {
            case .ok: return SocketBindings.ok(L)
            case .failed(let e): error = e
            }
        }
        return SocketBindings.fail(L, SocketBindings.message(for: error, datagram: datagram))
    }

    private static let listen: LuaBody = { L in luaCall(L, listen) }

    private static func listen(_ L: LuaState) throws(LuaError) -> Int32 {
        let s = try Arg.get(streamArg(L, masters))
        let backlog = try Arg.optionalInteger(L, 2) ?? 32
        if s.fd < 0, let e = SocketBindings.ensureDescriptor(s, family: s.family == AF_UNSPEC ? AF_INET : s.family) {
            return fail(L, SocketBindings.message(for: e))
        }
        switch Posix.listen(s.fd, Int32(clamping: backlog)) {
        case .failed(let e): return fail(L, SocketBindings.message(for: e))
        case .ok:
            SocketBindings.setClass(L, 1, s, s.socketClass.isUnix ? .unixServer : .tcpServer)
            return SocketBindings.ok(L)
        }
    }

    // MARK: - accept

    private static let accept: LuaBody = { L in
        let L = L!
        let s: Socket
        switch streamArg(L, servers) {
        case .error(let status): return status
        case .value(let v): s = v
        }
        if s.reader.isWaitedOn { return fail(L, "busy") }
        s.receiveDeadline = s.deadline(for: .read)
        return acceptStep(L, s)
    }

    private static func acceptStep(_ L: LuaState, _ s: Socket) -> Int32 {
        while true {
            if s.isClosed { return fail(L, "closed") }
            switch Posix.accept(s.fd) {
            case .ok(let fd):
                let client = Socket(runtime: s.runtime, fd: Int32(fd), family: s.family,
                                    socketClass: s.socketClass.isUnix ? .unixClient : .tcpClient)
                SocketBindings.push(L, client)
                return 1
            case .failed(ECONNABORTED):
                continue
            case .failed(let e) where e == EAGAIN || e == EWOULDBLOCK:
                return park(L, s, .read, deadline: s.receiveDeadline, what: "accept", then: acceptContinue) {
                    fail(L, "timeout")
                }
            case .failed(let e):
                return fail(L, SocketBindings.message(for: e))
            }
        }
    }

    private static let acceptContinue: LuaBody = { L in
        let L = L!
        guard let s = SocketBindings.get(L, 1) else { return 0 }
        switch Runtime.from(L).takeWake(L) {
        case .raise(let status): return status
        case .woken(.timedOut): return fail(L, "timeout")
        case .woken: return acceptStep(L, s)
        }
    }

    /// Parks the running fiber on the socket's watcher for `direction`, bounded by the
    /// socket's timeouts; `timedOut` gives the result when no wait is allowed at all.
    static func park(_ L: LuaState, _ s: Socket, _ direction: Socket.Direction, deadline: Double?,
                             what: String, then kont: LuaBody, timedOut: () -> Int32) -> Int32 {
        let limit = s.waitLimit(deadline: deadline)
        if limit == 0 { return timedOut() }
        return s.withRuntime { runtime in
            // A connection waiting for data with nothing buffered is idle: it keeps no buffer.
            if direction == .read && s.buffer.isEmpty { s.buffer.release(to: &runtime.spareChunks) }
            return runtime.withCurrent { fiber in
                runtime.park(L, fiber, on: .io(s.watcher(direction)), timeout: limit, what: what, then: kont)
            } ?? luaRaise(L, "\(what): not called from a fiber")
        }
    }

    // MARK: - connect

    private static let connect: LuaBody = { L in
        let L = L!
        let s: Socket
        switch streamArg(L, streams.subtracting(servers)) {
        case .error(let status): return status
        case .value(let v): s = v
        }
        let (host, port): (String, UInt16)
        switch addressArgs(L, s) {
        case .error(let status): return status
        case .value(let a): (host, port) = a
        }
        let key = s.socketClass.isUnix ? "unix:\(host)" : "\(host):\(port)"
        s.seldom.poolKey = key
        if s.fd < 0, let pooled = Runtime.from(L).takePooledConnection(key) {
            s.adopt(fd: pooled.fd, family: pooled.family)
            s.seldom.reusedTimes = pooled.reusedTimes + 1
            SocketBindings.setClass(L, 1, s, s.socketClass.isUnix ? .unixClient : .tcpClient)
            return SocketBindings.ok(L)
        }
        s.seldom.reusedTimes = 0
        s.sendDeadline = s.deadline(for: .write, connecting: true)
        s.seldom.connectError = 0
        if let status = resolve(L, s, host: host, port: port, passive: false, what: "connect", then: connectResolved) {
            return status
        }
        return connectCandidates(L, s)
    }

    private static let connectResolved: LuaBody = { L in continueResolved(L!) { connectCandidates(L!, $0) } }

    private static func connectCandidates(_ L: LuaState, _ s: Socket) -> Int32 {
        while !s.seldom.connectCandidates.isEmpty {
            let address = s.seldom.connectCandidates.removeFirst()
            if let e = SocketBindings.ensureDescriptor(s, family: address.family) {
                s.seldom.connectError = e
                continue
            }
            // LuaSocket makes the object a client whatever the outcome (non-blocking connects).
            SocketBindings.setClass(L, 1, s, s.socketClass.isUnix ? .unixClient : .tcpClient)
            switch Posix.connect(s.fd, address) {
            case .ok:
                s.seldom.connectCandidates = []
                return SocketBindings.ok(L)
            case .failed(let e) where e == EINPROGRESS || e == EAGAIN:
                return park(L, s, .write, deadline: s.sendDeadline, what: "connect", then: connectFinished) {
                    s.seldom.connectCandidates = []
                    return fail(L, "timeout")
                }
            case .failed(let e):
                s.seldom.connectError = e
            }
        }
        return fail(L, SocketBindings.message(for: s.seldom.connectError == 0 ? EADDRNOTAVAIL : s.seldom.connectError))
    }

    private static let connectFinished: LuaBody = { L in
        let L = L!
        guard let s = SocketBindings.get(L, 1) else { return 0 }
        switch Runtime.from(L).takeWake(L) {
        case .raise(let status): return status
        case .woken(.timedOut):
            s.seldom.connectCandidates = []
            return fail(L, "timeout")
        case .woken:
            if s.isClosed { return fail(L, "closed") }
            let (r, error) = Posix.getsockopt(s.fd, SOL_SOCKET, SO_ERROR, Int32(0))
            if case .ok = r, error == 0 {
                s.seldom.connectCandidates = []
                return SocketBindings.ok(L)
            }
            s.seldom.connectError = error
            return connectCandidates(L, s)
        }
    }

    // MARK: - receive

    enum Pattern {
        case line, all
        case count(Int)
    }

    static func patternArg(_ L: LuaState, _ index: Int32) -> ArgResult<Pattern> {
        switch lua_type(L, index) {
        case LUA_TNONE, LUA_TNIL:
            return .value(.line)
        case LUA_TNUMBER:
            let n = lua_tonumberx(L, index, nil)
            guard n >= 0, n < Double(Int.max) else { return .error(luaArgError(L, index, "invalid receive pattern")) }
            return .value(.count(Int(n)))
        case LUA_TSTRING:
            var len = 0
            let p = lua_tolstring(L, index, &len)!
            let first = len > 0 && p[0] == 42 /* * */ ? (len > 1 ? p[1] : 0) : (len > 0 ? p[0] : 0)
            if first == 108 /* l */ { return .value(.line) }
            if first == 97 /* a */ { return .value(.all) }
            if lua_isnumber(L, index) != 0 {  // "3" counts as 3, as in LuaSocket
                let n = lua_tonumberx(L, index, nil)
                if n >= 0, n < Double(Int.max) { return .value(.count(Int(n))) }
            }
            return .error(luaArgError(L, index, "invalid receive pattern"))
        default:
            return .error(luaArgError(L, index, "invalid receive pattern"))
        }
    }

    private static let receive: LuaBody = { L in
        let L = L!
        return withStreamArg(L, clients) { s in receive(L, s) }
    }

    /// patternArg, quicker for "*l" and "*a": Lua interns short strings, so those are
    /// the runtime's anchored copies.
    @inline(__always)
    private static func receivePatternArg(_ L: LuaState, _ s: Socket) -> ArgResult<Pattern> {
        if lua_type(L, 2) == LUA_TSTRING {
            let p = lua_tolstring(L, 2, nil)
            let known = s.withRuntime { ($0.linePatternName, $0.allPatternName) }
            if p == known.0 { return .value(.line) }
            if p == known.1 { return .value(.all) }
        }
        return patternArg(L, 2)
    }

    private static func receive(_ L: LuaState, _ s: Socket) -> Int32 {
        let pattern: Pattern
        switch receivePatternArg(L, s) {
        case .error(let status): return status
        case .value(let p): pattern = p
        }
        // Before the accumulator is touched: it holds the parked receive's partial data.
        if s.reader.isWaitedOn { return fail(L, "busy") }
        if !s.receiveAccumulator.isEmpty { s.receiveAccumulator.removeAll(keepingCapacity: true) }
        if lua_gettop(L) >= 3 && !luaIsNoneOrNil(L, 3) {
            guard lua_type(L, 3) == LUA_TSTRING || lua_type(L, 3) == LUA_TNUMBER else {
                return luaTypeError(L, 3, "string")
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
        return receiveStep(L, s, pattern)
    }

    static func pushBytes(_ L: LuaState, _ bytes: UnsafeBufferPointer<UInt8>) {
        _ = bytes.withMemoryRebound(to: CChar.self) { lua_pushlstring(L, $0.baseAddress, $0.count) }
    }

    /// The index of the first `byte` in `bytes` (memchr).
    @inline(__always)
    private static func find(_ byte: UInt8, in bytes: UnsafeBufferPointer<UInt8>) -> Int? {
        guard let base = bytes.baseAddress, bytes.count > 0,
              let hit = memchr(base, Int32(byte), bytes.count) else { return nil }
        return UnsafeRawPointer(hit) - UnsafeRawPointer(base)
    }

    private static func succeed(_ L: LuaState, _ s: Socket) -> Int32 {
        s.receiveAccumulator.withUnsafeBufferPointer { pushBytes(L, $0) }
        if s.receiveAccumulator.capacity > 1 << 20 {
            s.receiveAccumulator = []   // a big result's memory is not kept for the next one
            _ = s.countReceiveMemory()
        } else if !s.receiveAccumulator.isEmpty {
            s.receiveAccumulator.removeAll(keepingCapacity: true)
        }
        return received(L)
    }

    /// A receive's success as LuaSocket returns it: the data (on the stack), nil, nil.
    @inline(__always)
    private static func received(_ L: LuaState) -> Int32 {
        lua_pushnil(L)
        lua_pushnil(L)
        return 3
    }

    /// memory_limit reached by what a receive holds: `nil, "not enough memory"`, and the
    /// connection is closed.
    private static func failOutOfMemory(_ L: LuaState, _ s: Socket) -> Int32 {
        s.dropReceiveMemory()
        return fail(L, "not enough memory")
    }

    /// Reads once into the buffer; nil when bytes came, else the status to return (or
    /// to park with).
    private enum Fill { case data, closed, wait, failed(Int32) }

    /// When no wait is allowed (timeout 0, or the deadline has passed), a socket thought
    /// drained is read once more before "timeout": data may have come since.
    private static func mustProbe(_ s: Socket, _ probed: inout Bool) -> Bool {
        guard !probed, s.drained, s.waitLimit(deadline: s.receiveDeadline) == 0 else { return false }
        probed = true
        s.drained = false
        return true
    }

    private static func fill(_ s: Socket) -> Fill {
        if s.drained { return .wait }
        let (result, space) = s.withRuntime { s.buffer.fill(from: s.fd, spares: &$0.spareChunks) }
        switch result {
        case .ok(0):
            return .closed
        case .ok(let n):
            s.received += n
            s.withRuntime { $0.bytesIn += n }
            s.drained = n < space
            return .data
        case .failed(let e) where e == EAGAIN || e == EWOULDBLOCK:
            s.drained = true
            return .wait
        case .failed(let e):
            return .failed(e)
        }
    }

    static func receiveStep(_ L: LuaState, _ s: Socket, _ pattern: Pattern) -> Int32 {
        var probed = false
        while true {
            let bytes = s.buffer.bytes
            switch pattern {
            case .count(let n):
                // LuaSocket reads at least once unless the prefix alone covers n, so even
                // receive(0) waits for data when nothing is buffered.
                if n == 0 && s.receivePrefixLength == 0 && bytes.isEmpty { break }
                if s.receiveAccumulator.isEmpty && bytes.count >= n {
                    pushBytes(L, UnsafeBufferPointer(rebasing: bytes[0..<n]))
                    s.buffer.consume(n)
                    return received(L)
                }
                let take = min(n - s.receiveAccumulator.count, bytes.count)
                if take > 0 {
                    s.receiveAccumulator.append(contentsOf: bytes[0..<take])
                    s.buffer.consume(take)
                }
                if s.receiveAccumulator.count >= n { return succeed(L, s) }
            case .line:
                if let nl = find(10, in: bytes) {
                    // The common line, "...\r\n" or "...\n" with no other CR, goes to Lua
                    // straight from the buffer.
                    let end = nl > 0 && bytes[nl - 1] == 13 ? nl - 1 : nl
                    if s.receiveAccumulator.isEmpty && find(13, in: UnsafeBufferPointer(rebasing: bytes[0..<end])) == nil {
                        if end == 0 {  // a blank line, as ends HTTP's headers
                            s.withRuntime { luaPushRef(L, $0.emptyStringRef) }
                        } else {
                            pushBytes(L, UnsafeBufferPointer(rebasing: bytes[0..<end]))
                        }
                        s.buffer.consume(nl + 1)
                        return received(L)
                    }
                    let line = UnsafeBufferPointer(rebasing: bytes[0..<nl])
                    s.receiveAccumulator.append(contentsOf: line.lazy.filter { $0 != 13 })
                    s.buffer.consume(nl + 1)
                    return succeed(L, s)
                }
                if bytes.count > 0 {
                    s.receiveAccumulator.append(contentsOf: bytes.lazy.filter { $0 != 13 })
                    s.buffer.consume(bytes.count)
                }
            case .all:
                if bytes.count > 0 {
                    s.receiveAccumulator.append(contentsOf: bytes)
                    s.buffer.consume(bytes.count)
                }
            }
            switch fill(s) {
            case .data:
                if !s.countReceiveMemory() { return failOutOfMemory(L, s) }
                continue
            case .closed:
                // `*a` succeeds at the close if it read anything (LuaSocket's recvall).
                if case .all = pattern, s.receiveAccumulator.count > s.receivePrefixLength { return succeed(L, s) }
                return fail(L, "closed", s)
            case .failed(let e):
                return fail(L, SocketBindings.message(for: e), s)
            case .wait:
                if mustProbe(s, &probed) { continue }
                return park(L, s, .read, deadline: s.receiveDeadline, what: "receive", then: continuation(of: pattern)) {
                    fail(L, "timeout", s)
                }
            }
        }
    }

    /// A read's continuation: an error delivered while it waited is raised; a closed socket
    /// or a timeout ends the read with `failed(message)`; otherwise `step` reads on.
    private static func continueReading(_ L: LuaState, failed: (Socket, String) -> Int32,
                                        step: (Socket) -> Int32) -> Int32 {
        SocketBindings.withSocket(L) { s in
            switch s.withRuntime({ $0.takeWake(L) }) {
            case .raise(let status):
                s.receiveAccumulator.removeAll(keepingCapacity: true)
                return status
            case .woken(let wake):
                if s.isClosed { return failed(s, "closed") }
                if case .timedOut = wake { return failed(s, "timeout") }
                s.drained = false
                return step(s)
            }
        }
    }

    /// receive's continuations: one per kind of pattern, so that a line or `*a` receive
    /// need not read its pattern again.
    private static func continuation(of pattern: Pattern) -> LuaBody {
        switch pattern {
        case .line: return receiveLineContinue
        case .all: return receiveAllContinue
        case .count: return receiveCountContinue
        }
    }

    private static let receiveLineContinue: LuaBody = { L in continueReceiving(L!, .line) }
    private static let receiveAllContinue: LuaBody = { L in continueReceiving(L!, .all) }
    private static let receiveCountContinue: LuaBody = { L in
        let L = L!
        guard case .value(let pattern) = patternArg(L, 2) else { return 0 }
        return continueReceiving(L, pattern)
    }

    private static func continueReceiving(_ L: LuaState, _ pattern: Pattern) -> Int32 {
        continueReading(L, failed: { s, message in fail(L, message, s) }, step: { s in receiveStep(L, s, pattern) })
    }

    /// OpenResty's receiveany(max): whatever is available, 1 to max bytes, once there is any.
    private static let receiveany: LuaBody = { L in
        let L = L!
        return withStreamArg(L, clients) { s in receiveany(L, s) }
    }

    private static func receiveany(_ L: LuaState, _ s: Socket) -> Int32 {
        var max = 0
        var isInteger: Int32 = 0
        if lua_type(L, 2) == LUA_TNUMBER { max = Int(lua_tointegerx(L, 2, &isInteger)) }
        if isInteger == 0 {  // luaIntegerArg's errors
            if case .error(let status) = luaIntegerArg(L, 2) { return status }
        }
        if max < 1 { return luaArgError(L, 2, "bad max argument") }
        if s.reader.isWaitedOn { return fail(L, "busy") }
        if s.isClosed { return fail(L, "closed") }
        if !s.receiveAccumulator.isEmpty { s.receiveAccumulator.removeAll(keepingCapacity: true) }
        s.receiveDeadline = s.deadline(for: .read)
        s.receiveAnyMax = max
        return receiveAnyStep(L, s)
    }

    private static func receiveAnyStep(_ L: LuaState, _ s: Socket) -> Int32 {
        var probed = false
        while true {
            let bytes = s.buffer.bytes
            if bytes.count > 0 {
                let n = min(s.receiveAnyMax, bytes.count)
                pushBytes(L, UnsafeBufferPointer(rebasing: bytes[0..<n]))
                s.buffer.consume(n)
                return 1
            }
            switch fill(s) {
            case .data: continue
            case .closed: return fail(L, "closed")
            case .failed(let e): return fail(L, SocketBindings.message(for: e))
            case .wait:
                if mustProbe(s, &probed) { continue }
                return park(L, s, .read, deadline: s.receiveDeadline, what: "receiveany", then: receiveAnyContinue) {
                    fail(L, "timeout")
                }
            }
        }
    }

    private static let receiveAnyContinue: LuaBody = { L in
        let L = L!
        return continueReading(L, failed: { _, message in fail(L, message) }, step: { s in receiveAnyStep(L, s) })
    }

    /// `_receiveuntil(pattern [, size])` → data, found: the bytes before the next `pattern`
    /// (consumed), or with `size` at most `size` bytes that cannot belong to it.
    private static let receiveUntil: LuaBody = { L in
        let L = L!
        let s: Socket
        switch streamArg(L, clients) {
        case .error(let status): return status
        case .value(let v): s = v
        }
        guard let pattern = luaString(L, 2), !pattern.isEmpty else { return luaArgError(L, 2, "pattern is empty") }
        if !luaIsNoneOrNil(L, 3), case .error(let status) = luaIntegerArg(L, 3) { return status }
        if s.reader.isWaitedOn { return fail(L, "busy") }
        if s.isClosed { return fail(L, "closed") }
        s.receiveAccumulator.removeAll(keepingCapacity: true)
        s.receiveDeadline = s.deadline(for: .read)
        return receiveUntilStep(L, s)
    }

    private static func receiveUntilStep(_ L: LuaState, _ s: Socket) -> Int32 {
        let pattern = Array((luaString(L, 2) ?? "").utf8)
        // Clamped so that size + pattern.count cannot overflow: no buffer gets near Int.max / 4.
        let size: Int? = luaIsNoneOrNil(L, 3) ? nil : min(max(1, Int(lua_tointegerx(L, 3, nil))), Int.max / 4)
        var probed = false
        while true {
            // Everything unread stays in the buffer until a result is taken from it.
            let bytes = s.buffer.bytes
            if let at = firstIndex(of: pattern, in: bytes, below: size.map { $0 + 1 }) {
                pushBytes(L, UnsafeBufferPointer(rebasing: bytes[0..<at]))
                s.buffer.consume(at + pattern.count)
                lua_pushboolean(L, 1)
                return 2
            }
            if let size, bytes.count >= size + pattern.count - 1 {
                pushBytes(L, UnsafeBufferPointer(rebasing: bytes[0..<size]))
                s.buffer.consume(size)
                lua_pushboolean(L, 0)
                return 2
            }
            switch fill(s) {
            case .data:
                if !s.countReceiveMemory() { return failOutOfMemory(L, s) }
                continue
            case .closed:
                return failTakingBuffer(L, "closed", s)
            case .failed(let e):
                return failTakingBuffer(L, SocketBindings.message(for: e), s)
            case .wait:
                if mustProbe(s, &probed) { continue }
                return park(L, s, .read, deadline: s.receiveDeadline, what: "receiveuntil", then: receiveUntilContinue) {
                    failTakingBuffer(L, "timeout", s)
                }
            }
        }
    }

    /// `nil, message, partial` where the partial result is what the buffer holds.
    private static func failTakingBuffer(_ L: LuaState, _ message: String, _ s: Socket) -> Int32 {
        s.receiveAccumulator.append(contentsOf: s.buffer.bytes)
        s.buffer.consume(s.buffer.count)
        return fail(L, message, s)
    }

    /// Where `pattern` first starts in `bytes`, looking only at starts below `below`.
    private static func firstIndex(of pattern: [UInt8], in bytes: UnsafeBufferPointer<UInt8>, below: Int?) -> Int? {
        guard bytes.count >= pattern.count else { return nil }
        var end = bytes.count - pattern.count
        if let below { end = min(end, below - 1) }
        guard end >= 0 else { return nil }
        let first = pattern[0]
        var i = 0
        while i <= end {
            if bytes[i] == first && UnsafeBufferPointer(rebasing: bytes[i..<(i + pattern.count)]).elementsEqual(pattern) {
                return i
            }
            i += 1
        }
        return nil
    }

    private static let receiveUntilContinue: LuaBody = { L in
        let L = L!
        return continueReading(L, failed: { s, message in
            message == "timeout" ? failTakingBuffer(L, message, s) : fail(L, message)
        }, step: { s in receiveUntilStep(L, s) })
    }

    // MARK: - send

    private static let send: LuaBody = { L in
        let L = L!
        return withStreamArg(L, clients) { s in send(L, s) }
    }

    private static func send(_ L: LuaState, _ s: Socket) -> Int32 {
        // A number becomes a string in place, as luaL_checklstring converts it.
        var length = 0
        guard let data = lua_tolstring(L, 2, &length) else { return luaTypeError(L, 2, "string") }
        if lua_gettop(L) > 2 {  // send(data, i [, j])
            for i in Int32(3)...4 where !luaIsNoneOrNil(L, i) {
                if case .error(let status) = luaIntegerArg(L, i) { return status }
            }
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
        while s.sendProgress < count {
            if s.isClosed { return sendFailed(L, "closed", i, s) }
            switch Posix.send(s.fd, data + (i - 1) + s.sendProgress, count - s.sendProgress) {
            case .ok(let n):
                s.sendProgress += n
                s.sent += n
                s.withRuntime { $0.bytesOut += n }
            case .failed(let e) where e == EAGAIN || e == EWOULDBLOCK:
                return park(L, s, .write, deadline: s.sendDeadline, what: "send", then: sendContinue) {
                    sendFailed(L, "timeout", i, s)
                }
            case .failed(let e):
                return sendFailed(L, SocketBindings.message(for: e), i, s)
            }
        }
        // LuaSocket's shapes: the index as a float and two nils; nil, message, the index.
        lua_pushnumber(L, lua_Number(i - 1 + count))
        lua_pushnil(L)
        lua_pushnil(L)
        return 3
    }

    private static func sendFailed(_ L: LuaState, _ message: String, _ i: Int, _ s: Socket) -> Int32 {
        lua_pushnil(L)
        lua_pushstring(L, message)
        lua_pushnumber(L, lua_Number(i - 1 + s.sendProgress))
        return 3
    }

    private static let sendContinue: LuaBody = { L in
        let L = L!
        return SocketBindings.withSocket(L) { s in
            switch s.withRuntime({ $0.takeWake(L) }) {
            case .raise(let status): return status
            case .woken(let wake):
                var length = 0
                let data = UnsafeRawPointer(lua_tolstring(L, 2, &length)!)
                let (i, _) = sendRange(L, length: length)
                if s.isClosed { return sendFailed(L, "closed", i, s) }
                if case .timedOut = wake { return sendFailed(L, "timeout", i, s) }
                return sendStep(L, s, data, length)
            }
        }
    }

    // MARK: - shutdown, the connection pool

    private static let shutdown: LuaBody = { L in
        let L = L!
        let s: Socket
        switch streamArg(L, clients) {
        case .error(let status): return status
        case .value(let v): s = v
        }
        let how: Int32
        switch luaString(L, 2) ?? (luaIsNoneOrNil(L, 2) ? "both" : "?") {
        case "both": how = Int32(SHUT_RDWR)
        case "send": how = Int32(SHUT_WR)
        case "receive": how = Int32(SHUT_RD)
        default: return luaArgError(L, 2, "invalid option '\(luaString(L, 2) ?? "?")'")
        }
        if !s.isClosed { _ = Posix.shutdown(s.fd, how) }
        return SocketBindings.ok(L)
    }

    /// `setkeepalive([max_idle [, pool_size]])`: puts the connection in the runtime's pool
    /// for the next connect to the same address, instead of closing it.
    private static let setkeepalive: LuaBody = { L in
        let L = L!
        let s: Socket
        switch streamArg(L, clients) {
        case .error(let status): return status
        case .value(let v): s = v
        }
        var maxIdle: Double?
        switch luaOptNumber(L, 2) {
        case .error(let status): return status
        case .value(let v): maxIdle = v.flatMap { $0 > 0 ? $0 : nil }
        }
        var poolSize = 30
        if !luaIsNoneOrNil(L, 3) {
            switch luaIntegerArg(L, 3) {
            case .error(let status): return status
            case .value(let n) where n < 1: return luaArgError(L, 3, "pool size must be positive")
            case .value(let n): poolSize = n
            }
        }
        if s.isClosed { return fail(L, "closed") }
        if !s.buffer.isEmpty { return fail(L, "unread data in buffer") }
        if s.reader.isWaitedOn || s.isSending { return fail(L, "busy") }
        let key: String
        if let k = s.seldom.poolKey {
            key = k
        } else if let peer = Posix.name(of: s.fd, peer: true) {
            let (host, port, _) = peer.hostPortFamily
            key = "\(host):\(port)"
        } else {
            return fail(L, "not connected")
        }
        let family = s.family
        let fd = s.detachDescriptor()
        Runtime.from(L).poolConnection(PooledConnection(fd: fd, family: family, since: ev_time(), maxIdle: maxIdle,
                                                        reusedTimes: s.seldom.reusedTimes),
                                       key: key, poolSize: poolSize)
        return SocketBindings.ok(L)
    }

    private static let getreusedtimes: LuaBody = { L in
        let L = L!
        switch SocketBindings.socketArg(L, expected: "socket") {
        case .error(let status): return status
        case .value(let s):
            lua_pushinteger(L, lua_Integer(s.seldom.reusedTimes))
            return 1
        }
    }
}
