// The Lua face of the HTTP layer (SPEC §11), for http.lua: services (`host.http_service`)
// and the connection methods its request runner calls. None of these waits: each does
// what it can now and returns what to wait for (a descriptor and a direction), and
// http.lua waits with gsock.wait_read/wait_write, so every way a wait ends (data, timeout,
// close, kill) is the one §3 already defines.
import CHTTP
import CLua
import CShims

enum HTTPBindings {
    static let serviceMetatable = "gsock.http.service"
    static let connectionMetatable = "gsock.http.connection"

    static let hostFunctions: [(String, LuaBody)] = [
        ("http_service", { L in luaCall(L, newService) }),
        ("http_response_setup", { L in luaCall(L, responseSetup) }),
        ("http_request_field", HTTPRequestObject.field),
        ("http_header_values", HTTPRequestObject.headerValues),
    ]

    static let serviceMethods: [(String, LuaBody)] = [
        ("adopt", { L in luaCall(L, adopt) }),
        ("accept", { L in luaCall(L, accept) }),
        ("shutdown", { L in luaCall(L) { L throws(LuaError) in try service(L).shutdown(); return 0 } }),
        ("close_all", { L in luaCall(L) { L throws(LuaError) in try service(L).closeAll(); return 0 } }),
        ("count", { L in luaCall(L) { L throws(LuaError) in
            lua_pushinteger(L, lua_Integer(try service(L).count)); return 1 } }),
        ("fibers", { L in luaCall(L, fibers) }),
        ("set_handle", { L in luaCall(L, setHandle) }),
    ]

    static let connectionMethods: [(String, LuaBody)] = [
        ("body", { L in luaCall(L, body) }),
        ("send", { L in luaCall(L, send) }),
        ("reply", { L in luaCall(L, reply) }),
        ("flush", { L in luaCall(L, flush) }),
        ("done", { L in luaCall(L, done) }),
        ("idle", { L in luaCall(L) { L throws(LuaError) in try connection(L).awaitRequest(L); return 0 } }),
        ("close", { L in luaCall(L) { L throws(LuaError) in try connection(L).close(); return 0 } }),
        ("abort", { L in luaCall(L) { L throws(LuaError) in try connection(L).abortResponse(); return 0 } }),
        ("cut_short", { L in luaCall(L) { L throws(LuaError) in try connection(L).endCutShort(); return 0 } }),
        ("linger_close", { L in luaCall(L) { L throws(LuaError) in try connection(L).lingerThenClose(); return 0 } }),
        ("fail", { L in luaCall(L, fail) }),
        ("body_failed", { L in luaCall(L, bodyFailed) }),
        ("upgrade", { L in luaCall(L, upgrade) }),
        ("socket", { L in luaCall(L) { L throws(LuaError) in try connection(L).pushSocket(L); return 1 } }),
        ("peer", { L in luaCall(L, peer) }),
        ("info", { L in luaCall(L, info) }),
        ("killed", { L in luaCall(L) { L throws(LuaError) in
            lua_pushboolean(L, try connection(L).fiber?.killed == true ? 1 : 0); return 1 } }),
    ]

    static func register(_ L: LuaState) {
        LuaObjects.register(L, serviceMetatable, methods: serviceMethods)
        LuaObjects.register(L, connectionMetatable, methods: connectionMethods)
    }

    /// `conn:body_failed(err)`: waiting for the body ended ("timeout" or "closed"): the
    /// connection ends with this response, a handler that sends nothing answers 408 (or
    /// 400), and every later read of the body says `err` again.
    private static func bodyFailed(_ L: LuaState) throws(LuaError) -> Int32 {
        let c = try connection(L)
        let timedOut = try Arg.string(L, 2) == "timeout"
        c.failBody(timedOut ? 408 : 400, closed: !timedOut)
        return 0
    }

    /// nil, the message and the status of the body's error.
    private static func pushBodyError(_ L: LuaState, _ c: HTTPConnection) -> Int32 {
        lua_pushnil(L)
        lua_pushstring(L, cString(c.bodyErrorMessage))
        lua_pushinteger(L, lua_Integer(c.bodyError))
        return 3
    }

    private static func service(_ L: LuaState) throws(LuaError) -> HTTPService {
        try Arg.object(L, 1, kind: .httpService, as: HTTPService.self, expected: "http service")
    }

    private static func connection(_ L: LuaState) throws(LuaError) -> HTTPConnection {
        try Arg.object(L, 1, kind: .httpConnection, as: HTTPConnection.self, expected: "http connection")
    }

    // MARK: - Services

    /// `http_response_setup(metatable, connection_key, describe)`: what the host needs of
    /// http.lua to make a request's `res` and to describe a handler's failure.
    private static func responseSetup(_ L: LuaState) throws(LuaError) -> Int32 {
        try Arg.table(L, 1)
        try Arg.table(L, 2)
        guard lua_type(L, 3) == LUA_TFUNCTION else { throw .type(L, 3, "function") }
        var refs = [Int32]()
        for i: Int32 in 1...3 {
            lua_pushvalue(L, i)
            refs.append(luaRef(L))
        }
        let rt = Runtime.from(L)
        for old in [rt.httpResponseRefs.metatable, rt.httpResponseRefs.connectionKey, rt.httpResponseRefs.describe] {
            luaUnref(L, old)
        }
        rt.httpResponseRefs = (metatable: refs[0], connectionKey: refs[1], describe: refs[2])
        return 0
    }

    /// `service:set_handle(handle)`: the handler the host runs from the next request on
    /// (nil: the runner runs every request).
    private static func setHandle(_ L: LuaState) throws(LuaError) -> Int32 {
        let s = try service(L)
        let ref = try handleRef(L, 2)
        luaUnref(L, s.handleRef)
        s.handleRef = ref
        return 0
    }

    /// A reference to the handler at `i` (a function, or a table or userdata a call
    /// reaches through __call: server.lua has checked it), or LUA_NOREF for nil.
    private static func handleRef(_ L: LuaState, _ i: Int32) throws(LuaError) -> Int32 {
        if luaIsNoneOrNil(L, i) { return LUA_NOREF }
        guard lua_type(L, i) >= LUA_TTABLE else { throw .type(L, i, "function") }
        lua_pushvalue(L, i)
        return luaRef(L)
    }

    /// `http_service(limits, runner, on_close, complete [, handle])`: limits is a table of
    /// the §11 keys (already checked by server.lua); missing ones take their defaults.
    private static func newService(_ L: LuaState) throws(LuaError) -> Int32 {
        try Arg.table(L, 1)
        for i: Int32 in 2...4 where lua_type(L, i) != LUA_TFUNCTION { throw .type(L, i, "function") }
        guard Runtime.from(L).httpResponseRefs.metatable != LUA_NOREF else {
            throw .raise(L, "http_service: http.lua has not called http_response_setup")
        }
        var limits = HTTPLimits()
        func number(_ name: String) -> Double? {
            defer { gs_pop(L, 1) }
            return luaRawGetField(L, 1, name) == LUA_TNUMBER ? lua_tonumberx(L, -1, nil) : nil
        }
        if let v = number("max_request_line") { limits.maxRequestLine = Int(v) }
        if let v = number("max_header_size") { limits.maxHeaderSize = Int(v) }
        if let v = number("max_headers") { limits.maxHeaders = Int(v) }
        if let v = number("max_body") { limits.maxBody = Int(v) }
        if let v = number("header_timeout") { limits.headerTimeout = v }
        if let v = number("body_timeout") { limits.bodyTimeout = v }
        if let v = number("keepalive_timeout") { limits.keepaliveTimeout = v }
        if let v = number("keepalive_requests") { limits.keepaliveRequests = Int(v) }
        let handle = try handleRef(L, 5)
        var refs: [Int32] = []
        for i: Int32 in 2...4 {
            lua_pushvalue(L, i)
            refs.append(luaRef(L))
        }
        let service = HTTPService(runtime: Runtime.from(L), limits: limits, runnerRef: refs[0], onCloseRef: refs[1],
                                  completeRef: refs[2], handleRef: handle)
        LuaObjects.push(L, service, kind: .httpService)
        return 1
    }

    /// `service:adopt(sock [, peer])`: the service takes the accepted connection. The
    /// socket leaves its userdata, which is garbage from now on (`sock` is closed for Lua):
    /// an idle connection holds no Lua object for its socket (80 bytes less each).
    private static func adopt(_ L: LuaState) throws(LuaError) -> Int32 {
        let service = try service(L)
        guard let taken = LuaObjects.take(L, 2, kind: .socket) else { throw .type(L, 2, "socket") }
        let socket = taken.takeRetainedValue() as! Socket
        if socket.runtime.tracksResources { SocketBindings.track(L, 2, open: false) }
        var peerRef = LUA_NOREF
        if lua_type(L, 3) == LUA_TTABLE {
            lua_pushvalue(L, 3)
            peerRef = luaRef(L)
        }
        service.adopt(L, socket, peerRef: peerRef)
        return 0
    }

    /// `service:accept(listener [, idle_timeout [, path]])`: `listener:accept()`, with the
    /// connection going to the service as it comes, never to Lua: true and whether it is
    /// still open (when not, the server was not told of its close: it counts it first), or
    /// accept's nil and error. `idle_timeout` is the socket's timeout once a handler
    /// upgrades it; `path` makes the peer table of a unix listener's connections.
    private static func accept(_ L: LuaState) throws(LuaError) -> Int32 {
        _ = try service(L)
        guard let listener = SocketBindings.get(L, 2), StreamBindings.servers.contains(listener.socketClass.bit) else {
            throw .type(L, 2, "tcp{server}")
        }
        _ = try Arg.timeout(L, 3)
        if !luaIsNoneOrNil(L, 4) { _ = try Arg.string(L, 4) }
        return StreamBindings.beginAccept(L, listener, then: acceptContinue, deliver: adoptAccepted)
    }

    private static let acceptContinue: LuaBody = { L in luaCall(L, acceptContinue) }
    private static func acceptContinue(_ L: LuaState) throws(LuaError) -> Int32 {
        try StreamBindings.continueAccept(L, listenerAt: 2, then: acceptContinue, deliver: adoptAccepted)
    }

    /// `service:accept`'s client goes to the service at 1, with arguments 3 and 4.
    private static func adoptAccepted(_ L: LuaState, _ client: Socket) -> Int32 {
        guard let service = LuaObjects.get(L, 1, kind: .httpService, as: HTTPService.self) else { return 0 }
        if lua_type(L, 3) == LUA_TNUMBER { client.timeoutSettings.block = lua_tonumberx(L, 3, nil) }
        var peerRef = LUA_NOREF
        if lua_type(L, 4) == LUA_TSTRING {
            lua_createtable(L, 0, 1)
            lua_pushvalue(L, 4)
            luaRawSetField(L, -2, "path")
            peerRef = luaRef(L)
        }
        let open = service.adopt(L, client, peerRef: peerRef, told: false)
        lua_pushboolean(L, 1)
        lua_pushboolean(L, open ? 1 : 0)
        return 2
    }

    private static func fibers(_ L: LuaState) throws(LuaError) -> Int32 {
        let fibers = try service(L).requestFibers
        let rt = Runtime.from(L)
        lua_createtable(L, Int32(fibers.count), 0)
        for (i, fiber) in fibers.enumerated() {
            rt.pushHandle(L, fiber)
            lua_rawseti(L, -2, lua_Integer(i + 1))
        }
        return 1
    }

    // MARK: - Connections

    private static func pushWait(_ L: LuaState, _ c: HTTPConnection, _ direction: Socket.Direction) -> Int32 {
        lua_pushboolean(L, 0)
        lua_pushinteger(L, lua_Integer(c.socket.fd))
        lua_pushstring(L, direction == .read ? "read" : "write")
        lua_pushnumber(L, c.service.limits.bodyTimeout)
        return 4
    }

    /// Writes what is queued: nil when all is gone, else the count of values pushed: what
    /// to wait for, or nil and "closed".
    private static func flushOutput(_ L: LuaState, _ c: HTTPConnection) -> Int32? {
        switch c.writeOutput() {
        case .all:
            return nil
        case .wait(let direction):
            return pushWait(L, c, direction)
        case .failed:
            lua_pushnil(L)
            lua_pushstring(L, "closed")
            return 2
        }
    }

    /// `conn:flush()` → true | false, fd, "read"/"write" | nil, "closed"
    private static func flush(_ L: LuaState) throws(LuaError) -> Int32 {
        let c = try connection(L)
        if let n = flushOutput(L, c) { return n }
        lua_pushboolean(L, 1)
        return 1
    }

    /// `conn:body(max, req)` → the next bytes of `req`'s body | false, fd, direction (wait, then call
    /// again) | nil at its end | nil, message, status.
    private static func body(_ L: LuaState) throws(LuaError) -> Int32 {
        let c = try connection(L)
        let most = max(1, try Arg.optionalInteger(L, 2) ?? 65536)
        guard c.isCurrentRequest(try HTTPRequestObject.number(L, 3)) else {
            lua_pushnil(L)
            lua_pushstring(L, "the request is over")
            return 2
        }
        if c.bodyError != 0 { return pushBodyError(L, c) }
        if c.expectContinue {
            c.expectContinue = false
            if !c.headSent { c.output.append(static: "HTTP/1.1 100 Continue\r\n\r\n") }
        }
        if let n = flushOutput(L, c) { return n }
        let socket = c.socket
        while true {
            let buffered = socket.buffer.count
            switch c.body {
            case .none:
                return 0
            case .length(let left):
                if buffered > 0 {
                    let n = min(left, buffered, most)
                    socket.buffer.bytes.baseAddress!.withMemoryRebound(to: CChar.self, capacity: n) {
                        _ = lua_pushlstring(L, $0, n)
                    }
                    socket.buffer.consume(n)
                    c.body = left == n ? .none : .length(left: left - n)
                    return 1
                }
            case .chunked:
                if buffered > 0 {
                    // At most `most` bytes in: decoding never makes more than it is given.
                    let fed = min(buffered, most)
                    var size = fed
                    let p = UnsafeMutableRawPointer(mutating: socket.buffer.bytes.baseAddress!)
                        .assumingMemoryBound(to: CChar.self)
                    let r = gs_http_decode_chunked(c.chunked, p, &size)
                    if r == GS_HTTP_INCOMPLETE {
                        if size > 0 { lua_pushlstring(L, p, size) }
                        socket.buffer.consume(fed)
                        if size > 0 { return 1 }
                        continue
                    }
                    if r < 0 {
                        c.failBody(Int(gs_http_status(r)), closed: false)
                        socket.buffer.consume(buffered)
                        return pushBodyError(L, c)
                    }
                    if size > 0 { lua_pushlstring(L, p, size) }
                    // What follows the body: the r bytes after it in what was fed, then
                    // what was not fed.
                    let unfed = buffered - fed
                    if unfed > 0 { memmove(p + size + Int(r), p + fed, unfed) }
                    socket.buffer.consume(size)
                    socket.buffer.keepFirst(Int(r) + unfed)
                    c.body = .none
                    return size > 0 ? 1 : 0
                }
            }
            if socket.isClosed { return closedBody(L, c) }
            // Called again after a wait for readiness: read, whatever the last read said.
            socket.drained = false
            switch socket.fill() {
            case .data: continue
            case .wait(let direction): return pushWait(L, c, direction)
            case .closed, .failed: return closedBody(L, c)
            }
        }
    }

    private static func closedBody(_ L: LuaState, _ c: HTTPConnection) -> Int32 {
        c.failBody(400, closed: true)
        return pushBodyError(L, c)
    }

    /// `conn:send(res, data, final)`: queues the head (on the first call) and `data`.
    private static func send(_ L: LuaState) throws(LuaError) -> Int32 {
        let c = try connection(L)
        guard c.state == .running, c.isCurrentResponse(L, 2) else { throw .raise(L, "res: the response is already over") }
        var length = 0
        let data = lua_type(L, 3) == LUA_TSTRING ? lua_tolstring(L, 3, &length) : nil
        if lua_type(L, 3) > LUA_TNIL && data == nil { throw .type(L, 3, "string") }
        let final = lua_toboolean(L, 4) != 0
        if !c.headSent {
            guard lua_type(L, 2) == LUA_TTABLE else { throw .type(L, 2, "table") }
            _ = luaRawGetField(L, 2, "status")
            _ = luaRawGetField(L, 2, "headers")
            try appendHead(L, c, status: -2, headers: -1, final: final, bodyLength: length, upgrade: false)
            gs_pop(L, 2)
        }
        appendBody(c, data, length, final: final)
        if final { c.finished = true }
        return 0
    }

    /// `conn:reply(status, body, headers, finishing [, res])`: the whole response at once
    /// (the handler's `return status, body, headers`) when the body is a string or nil, the
    /// headers a table or nil, and `res` (when given) holds no res.headers to merge them
    /// into; else false, with nothing queued (http.lua converts, checks and merges, then
    /// calls again without `res`). With `finishing`, the response is then done as by
    /// conn:done(), and this returns what that would; else true.
    private static func reply(_ L: LuaState) throws(LuaError) -> Int32 {
        let c = try connection(L)
        guard c.state == .running, !c.headSent else { throw .raise(L, "res: the response is already over") }
        let bodyType = lua_type(L, 3), headersType = lua_type(L, 4)
        if (bodyType != LUA_TSTRING && bodyType != LUA_TNIL) || (headersType != LUA_TTABLE && headersType != LUA_TNIL)
            || (lua_type(L, 6) == LUA_TTABLE && luaRawGetField(L, 6, static: "headers") != LUA_TNIL) {
            lua_pushboolean(L, 0)
            return 1
        }
        var length = 0
        let data = bodyType == LUA_TSTRING ? lua_tolstring(L, 3, &length) : nil
        try appendHead(L, c, status: 2, headers: 4, final: true, bodyLength: length, upgrade: false)
        appendBody(c, data, length, final: true)
        c.finished = true
        guard lua_toboolean(L, 5) != 0 else {
            lua_pushboolean(L, 1)
            return 1
        }
        return finishResponse(L, c)
    }

    static func appendBody(_ c: HTTPConnection, _ data: UnsafePointer<CChar>?, _ length: Int, final: Bool) {
        let hasBody = !c.isHead && !HTTPResponseHead.hasNoBody(c.status)
        if let data, length > 0, hasBody {
            if c.responseChunked {
                c.output.append(hex: length)
                c.output.append(static: "\r\n")
            }
            c.output.append(data, count: length)
            if c.responseChunked { c.output.append(static: "\r\n") }
            c.bodyBytes += length
        }
        if final && c.responseChunked && hasBody { c.output.append(static: "0\r\n\r\n") }
    }

    /// Queues the head: the status at stack index `status` (nil: res.status was not set,
    /// 200), the fields of the table at `headers` (or none), and the framing, `Date` and
    /// `Connection` the server adds.
    static func appendHead(_ L: LuaState, _ c: HTTPConnection, status statusIndex: Int32, headers: Int32,
                           final: Bool, bodyLength: Int, upgrade: Bool) throws(LuaError) {
        var isInteger: Int32 = lua_type(L, statusIndex) == LUA_TNIL ? 1 : 0
        let status = isInteger != 0 ? 200 : Int(lua_tointegerx(L, statusIndex, &isInteger))
        guard isInteger != 0, (100...999).contains(status) else {
            lua_pushstring(L, "res.status must be an integer status code (100-999)")
            throw .value   // without the runner's position, as a bad field's message
        }
        if final {
            // A body the handler left unread and that is not all here yet: the next request
            // is behind it, so this connection ends with the response.
            switch c.body {
            case .none: break
            case .length(let left): if left > c.socket.buffer.count { c.keepAlive = false }
            case .chunked: c.keepAlive = false
            }
        }
        let start = c.output.count
        let seen: HTTPResponseHead.Seen
        do {
            seen = try c.withService { (service) throws(LuaError) in
                service.appendStatusLine(status, to: &c.output)
                return try HTTPResponseHead.appendFields(L, headers: lua_absindex(L, headers),
                                                         fields: &service.scratchFields, to: &c.output)
            }
        } catch {
            c.output.truncate(to: start)
            throw error
        }
        if seen.connectionClose { c.keepAlive = false }
        c.status = status
        c.responseChunked = false
        if !upgrade && !HTTPResponseHead.hasNoBody(status) && !seen.transferEncoding && seen.contentLength == nil {
            if final {
                c.output.append(static: "Content-Length: ")
                c.output.append(decimal: bodyLength)
                c.output.append(static: "\r\n")
            } else if c.minorVersion == 1 {
                c.output.append(static: "Transfer-Encoding: chunked\r\n")
                c.responseChunked = true
            } else {
                c.keepAlive = false   // the body ends when the connection does
            }
        }
        if !seen.date { c.withService { $0.appendDateLine(to: &c.output) } }
        if !upgrade {
            if !c.keepAlive && !seen.connectionClose {
                c.output.append(static: "Connection: close\r\n")
            } else if c.keepAlive && c.minorVersion == 0 {
                c.output.append(static: "Connection: keep-alive\r\n")
            }
        }
        c.output.append(static: "\r\n")
        c.headSent = true
    }

    /// `conn:done()`: the response is complete. → "started" (the next pipelined request
    /// runs; its response takes this one's output along), "idle" (all was written and the
    /// connection awaits its next request), "closed" (written, and the connection closed),
    /// or "flush" / "close" when the output could not all be written now: the runner
    /// flushes, then calls `idle` or `linger_close`.
    private static func done(_ L: LuaState) throws(LuaError) -> Int32 {
        finishResponse(L, try connection(L))
    }

    private static func finishResponse(_ L: LuaState, _ c: HTTPConnection) -> Int32 {
        lua_pushstring(L, cString(c.finishResponse(L).name))
        return 1
    }

    /// `conn:fail(status)`: before the head, queues an error response and returns true;
    /// after it, false (the connection can only be closed). Status 0 answers the body's
    /// error if reading it failed (413, 400, 408), else returns false.
    private static func fail(_ L: LuaState) throws(LuaError) -> Int32 {
        let c = try connection(L)
        var status = try Arg.integer(L, 2)
        if status == 0 { status = c.bodyError }
        guard status != 0, !c.headSent, c.state == .running else {
            lua_pushboolean(L, 0)
            return 1
        }
        c.queueErrorResponse(status)
        lua_pushboolean(L, 1)
        return 1
    }

    /// `conn:upgrade(res)`: queues the head with no body framing; the runner flushes it,
    /// then the handler owns `conn:socket()`.
    private static func upgrade(_ L: LuaState) throws(LuaError) -> Int32 {
        let c = try connection(L)
        guard c.state == .running, c.isCurrentResponse(L, 2) else { throw .raise(L, "res:upgrade(): the response is over") }
        guard !c.headSent else { throw .raise(L, "res:upgrade(): the head was already sent") }
        guard lua_type(L, 2) == LUA_TTABLE else { throw .type(L, 2, "table") }
        _ = luaRawGetField(L, 2, "status")
        _ = luaRawGetField(L, 2, "headers")
        try appendHead(L, c, status: -2, headers: -1, final: false, bodyLength: 0, upgrade: true)
        gs_pop(L, 2)
        c.upgrade()
        return 0
    }

    /// `conn:peer()`: the peer table, made once.
    private static func peer(_ L: LuaState) throws(LuaError) -> Int32 {
        let c = try connection(L)
        if c.peerRef != LUA_NOREF {
            luaPushRef(L, c.peerRef)
            return 1
        }
        lua_createtable(L, 0, 2)
        let (result, address) = Syscall.name(of: c.socket.fd, peer: true)
        if case .ok = result, let address {
            let (host, port, _) = address.hostPortFamily
            lua_pushstring(L, host)
            luaRawSetField(L, -2, "host")
            lua_pushinteger(L, lua_Integer(port))
            luaRawSetField(L, -2, "port")
        }
        lua_pushvalue(L, -1)
        c.peerRef = luaRef(L)
        return 1
    }

    /// `conn:info()` → status, body bytes sent, requests on this connection.
    private static func info(_ L: LuaState) throws(LuaError) -> Int32 {
        let c = try connection(L)
        lua_pushinteger(L, lua_Integer(c.status))
        lua_pushinteger(L, lua_Integer(c.bodyBytes))
        lua_pushinteger(L, lua_Integer(c.requests))
        return 3
    }
}
