// One HTTP/1.1 connection (SPEC §11). Between requests it is the host's: the socket's
// read watcher calls it back (`HostWaiter`), the service's timer (HTTPWaits.swift) bounds
// the head and the idle time, and it holds no fiber and no Lua thread. A complete head
// becomes a request object, a response table and a fiber whose function is the handler
// (http.lua's runner when the service keeps an access log); the handler's return ends the
// response here (`fiberFinishing`), and only what needs Lua goes on in http.lua's
// `complete`. The bindings the handler's res methods call (HTTPBindings) read the body
// and queue the response in `output`.
//
// Pipelining: when a response is finished and the next head is already buffered, the
// next request starts before the output is written, so the responses to the requests
// found in one read leave in one send.
import CHTTP
import CLibev
import CLua
import CShims
import Glibc

final class HTTPConnection: HostWaiter, FiberObserver {
    /// `aborted`: a write of the running request's response failed (res:write's timeout or
    /// the peer's reset); the connection is shut down and closes when the handler ends.
    enum State { case awaitingHead, running, aborted, lingering, upgraded, closed }

    enum Body {
        case none
        case length(left: Int)
        case chunked
    }

    // The stored properties are in order of size, since Swift lays them out in the order
    // declared: the words, then the 32- and 16-bit values, then the byte-sized state and
    // flags (200 bytes instead of 296 in the order of their meaning: an idle connection's
    // allocation is 208 bytes).
    unowned(unsafe) let service: HTTPService
    let socket: Socket
    var next: HTTPConnection?
    unowned(unsafe) var prev: HTTPConnection?

    // Only the loop thread touches the state below, never overlapping itself: no dynamic
    // exclusivity checks (they cost 1,600 instructions a request, callgrind said).
    /// When the head now arriving must be complete; 0 before its first byte.
    @exclusivity(unchecked) private var headDeadline = 0.0
    /// When the current wait for input must end (the loop's clock, ev_now), and the
    /// service's queue of that kind of wait it is in (HTTPWaits.swift, `waitKind`).
    @exclusivity(unchecked) var deadline = 0.0
    @exclusivity(unchecked) var waitNext: Unmanaged<HTTPConnection>?
    @exclusivity(unchecked) var waitPrev: Unmanaged<HTTPConnection>?
    /// The socket's watcher the connection waits on; unretained: the socket owns it.
    @exclusivity(unchecked) private var watching: Unmanaged<IOWatcher>?

    // The request being answered (and below, its flags).
    @exclusivity(unchecked) private(set) var fiber: Fiber?
    // Its response.
    @exclusivity(unchecked) var bodyBytes = 0
    /// For /metrics (Operating/Metrics.swift): when the request started (and its method).
    @exclusivity(unchecked) private var metricsStarted = 0.0
    @exclusivity(unchecked) var output = OutputBuffer()
    /// The chunked body's decoder, made for the connection's first chunked request: most
    /// connections never have one (41 bytes less for each of them).
    @exclusivity(unchecked) private(set) var chunked: UnsafeMutablePointer<gs_http_chunked>?
    /// The res of the request whose handler the host runs (its address, compared only):
    /// a res kept past its request, by a fiber it spawned, must not write into the next
    /// one's response. Nil when http.lua's runner made the res (it marks it done).
    @exclusivity(unchecked) private var currentResponse: UnsafeRawPointer?

    /// The buffered length the parser last found incomplete (at most max_header_size).
    @exclusivity(unchecked) private var lastLength: UInt32 = 0
    /// Requests started on the connection. It wraps after 2^32, which only a
    /// keepalive_requests above that lets a connection reach.
    @exclusivity(unchecked) private var requestCount: UInt32 = 0
    var requests: Int { Int(requestCount) }
    /// The socket's userdata, made when Lua first asks for the socket (`res:upgrade()`):
    /// until then the connection holds none (the accept's was emptied by `adopt`).
    private var socketRef: Int32 = LUA_NOREF
    /// The peer table (`req.peer`), made on first use unless the server gave one.
    var peerRef: Int32
    /// The connection's own userdata, made at its first request.
    var selfRef: Int32 = LUA_NOREF
    @exclusivity(unchecked) private var responseStatus: UInt16 = 0
    @exclusivity(unchecked) private var bodyErrorStatus: UInt16 = 0
    /// The response's status (100...999; 0 before its head).
    var status: Int {
        get { Int(responseStatus) }
        set { responseStatus = UInt16(truncatingIfNeeded: newValue) }
    }
    /// The status a body error calls for (413, 400), answered if the handler sends nothing.
    var bodyError: Int {
        get { Int(bodyErrorStatus) }
        set { bodyErrorStatus = UInt16(truncatingIfNeeded: newValue) }
    }
    @exclusivity(unchecked) var body = Body.none

    @exclusivity(unchecked) private(set) var state = State.awaitingHead
    @exclusivity(unchecked) var waitKind = HTTPWaitKind.none
    /// `fiber`'s function is the handler itself, with req and res kept below it.
    @exclusivity(unchecked) private var runsHandler = false
    @exclusivity(unchecked) var keepAlive = true
    @exclusivity(unchecked) var minorVersion: UInt8 = 1
    @exclusivity(unchecked) var isHead = false
    @exclusivity(unchecked) var expectContinue = false
    @exclusivity(unchecked) var headSent = false
    /// The response was ended (res:finish, the shorthand, an error response, an upgrade):
    /// what the handler returns after that changes nothing.
    @exclusivity(unchecked) var finished = false
    @exclusivity(unchecked) var responseChunked = false
    @exclusivity(unchecked) private var metricsMethod: UInt8 = 0
    /// The body's error is the peer's close (or the socket's, from another fiber).
    @exclusivity(unchecked) private var bodyClosed = false

    init(service: HTTPService, socket: Socket, peerRef: Int32) {
        self.service = service
        self.socket = socket
        self.peerRef = peerRef
    }

    deinit { chunked?.deallocate() }

    private var runtime: Runtime { service.runtime }

    /// The service, lent to `body` without the retain and release that a call through the
    /// unowned reference costs (a pair is ~25 instructions; a request makes a dozen calls).
    @inline(__always)
    func withService<R, E: Error>(_ body: (HTTPService) throws(E) -> R) throws(E) -> R {
        try Unmanaged.passUnretained(service)._withUnsafeGuaranteedRef { s in Result { () throws(E) -> R in try body(s) } }.get()
    }

    /// The runtime, lent likewise.
    @inline(__always)
    func withRuntime<R>(_ body: (Runtime) -> R) -> R {
        withService { s in Unmanaged.passUnretained(s.runtime)._withUnsafeGuaranteedRef(body) }
    }
    private var now: Double {
        ev_now_update(runtime.loop)
        return ev_now(runtime.loop)
    }

    func pushSocket(_ L: LuaState) {
        if socketRef == LUA_NOREF {
            SocketBindings.push(L, socket)
            lua_pushvalue(L, -1)
            socketRef = luaRef(L)
        } else {
            luaPushRef(L, socketRef)
        }
    }

    // MARK: - Between requests

    /// Waits for the next request (the first, or the one after a response).
    func awaitRequest(_ L: LuaState) {
        state = .awaitingHead
        lastLength = 0
        headDeadline = 0
        readHead(L, mayRead: true)
    }

    /// Parses what is buffered; reads more while the head is incomplete (when `mayRead`),
    /// then waits for the descriptor. Returns whether a request was started. With `runNow`
    /// (at loop level, from the descriptor's callback) a request's fiber runs at once
    /// instead of at the end of the loop iteration.
    @discardableResult
    func readHead(_ L: LuaState, mayRead: Bool, runNow: Bool = false) -> Bool {
        while true {
            let bytes = socket.buffer.bytes
            if let base = bytes.baseAddress, bytes.count > 0 {
                if headDeadline == 0 { headDeadline = now + service.limits.headerTimeout }
                let r = base.withMemoryRebound(to: CChar.self, capacity: bytes.count) {
                    gs_http_parse_request($0, bytes.count, Int(lastLength), &service.parserLimits,
                                          &service.scratchRequest, service.scratchHeaders)
                }
                if r >= 0 {
                    dispatch(L, headLength: r, runNow: runNow)
                    return true
                }
                if r != GS_HTTP_INCOMPLETE {
                    reject(Int(gs_http_status(r)), "malformed or over a limit")
                    return false
                }
                lastLength = UInt32(clamping: bytes.count)
            }
            guard mayRead else { return false }
            if socket.isClosed { close(); return false }
            switch socket.fill() {
            case .data: continue
            case .closed, .failed: close(); return false
            case .wait(let direction): waitForInput(direction); return false
            }
        }
    }

    private func waitForInput(_ direction: Socket.Direction) {
        let watcher = Unmanaged.passUnretained(direction == .read ? socket.reader
                                               : socket.watcher(for: .read, waitingFor: direction))
        let loop = runtime.loop
        if let watching, watching.toOpaque() != watcher.toOpaque() { stop(watching, loop) }
        watcher._withUnsafeGuaranteedRef {
            $0.host = self
            ev_io_start(loop, $0.io)
        }
        watching = watcher
        let loopNow = ev_now(loop)
        switch state {
        case .lingering:
            withService { $0.wait(self, .linger, until: loopNow + 2) }
        default:
            if headDeadline != 0 {
                withService { $0.wait(self, .head, until: headDeadline) }
            } else {
                if requests == 0 {
                    withService { $0.wait(self, .head, until: loopNow + service.limits.headerTimeout) }
                } else {
                    withService { $0.wait(self, .idle, until: loopNow + service.limits.keepaliveTimeout) }
                }
                // An idle connection holds no buffer memory.
                if socket.buffer.isEmpty { withRuntime { socket.buffer.release(to: &$0.spareChunks) } }
            }
        }
    }

    private func stop(_ watcher: Unmanaged<IOWatcher>, _ loop: OpaquePointer) {
        watcher._withUnsafeGuaranteedRef {
            $0.host = nil
            ev_io_stop(loop, $0.io)
        }
    }

    private func stopWaiting() {
        if let watching {
            stop(watching, runtime.loop)
            self.watching = nil
        }
        withService { $0.endWait(self) }
    }

    /// The watcher stays started while a request runs: most requests end before the next
    /// bytes come, and a watcher stopped and started again across loop iterations costs an
    /// epoll_ctl each time. Bytes that come while a request runs stop it until it is done.
    func descriptorReady(_ revents: Int32) {
        socket.drained = false
        switch state {
        case .awaitingHead: readHead(runtime.L, mayRead: true, runNow: !runtime.isInFiber)
        case .lingering: linger()
        default: stopWaiting()
        }
    }

    /// The wait's deadline passed (the service's timer took it out of its queue).
    func timedOut() {
        stopWaiting()
        if state == .awaitingHead && headDeadline != 0 {
            reject(408, "the head did not arrive within header_timeout")
        } else {
            close()
        }
    }

    // MARK: - Starting a request

    private func dispatch(_ L: LuaState, headLength: Int, runNow: Bool) {
        let request = service.scratchRequest
        let headers = service.scratchHeaders
        let base = UnsafeRawPointer(socket.buffer.bytes.baseAddress!).assumingMemoryBound(to: CChar.self)
        var contentLength: UInt64 = 0
        var req = request
        let framing = gs_http_body_framing(base, &req, headers, &contentLength)
        if framing < 0 {
            reject(Int(gs_http_status(ptrdiff_t(framing))), "bad body framing")
            return
        }
        if framing == GS_HTTP_BODY_LENGTH && contentLength > UInt64(service.limits.maxBody) {
            reject(413, "Content-Length over max_body")
            return
        }
        guard HTTPRequestObject.push(L, base: base, headLength: headLength, request: request, headers: headers,
                                     number: requests + 1, runtime: runtime)
        else {
            reject(400, "bad percent-encoding in the path")
            return
        }
        let requestIndex = lua_gettop(L)
        pushSelf(L)
        lua_setiuservalue(L, requestIndex, 2)
        socket.buffer.consume(headLength)
        requestCount &+= 1
        state = .running
        withService { $0.endWait(self) }
        minorVersion = request.minor_version
        isHead = request.method.len == 4 && memcmp(base + Int(request.method.off), HTTPConnection.head.utf8Start, 4) == 0
        let connection = header(named: "connection", base: base, request: request)
        if minorVersion == 0 {
            keepAlive = connection.map { gs_http_list_has($0.0, $0.1, "keep-alive", 10) != 0 } ?? false
        } else {
            keepAlive = connection.map { gs_http_list_has($0.0, $0.1, "close", 5) == 0 } ?? true
        }
        if requests >= service.limits.keepaliveRequests || service.shuttingDown { keepAlive = false }
        expectContinue = minorVersion == 1 && (header(named: "expect", base: base, request: request)
            .map { gs_http_list_has($0.0, $0.1, "100-continue", 12) != 0 } ?? false)
        switch Int(framing) {
        case GS_HTTP_BODY_LENGTH: body = .length(left: Int(contentLength))
        case GS_HTTP_BODY_CHUNKED:
            body = .chunked
            if chunked == nil { chunked = .allocate(capacity: 1) }
            gs_http_chunked_init(chunked, UInt64(service.limits.maxBody))
        default: body = .none
        }
        if case .length(0) = body { body = .none }
        if body.isNone { expectContinue = false }
        bodyError = 0
        bodyClosed = false
        headSent = false
        finished = false
        responseChunked = false
        status = 0
        bodyBytes = 0
        runtime.httpRequests += 1
        if socket.metrics != nil {
            metricsMethod = UInt8(ServiceMetrics.methodIndex(base + Int(request.method.off), Int(request.method.len)))
            metricsStarted = monotonicSeconds()
        }

        withRuntime { runtime in
            let started: Fiber
            if service.handleRef != LUA_NOREF {
                // handle(req, res), with req and res kept below it for fiberFinishing.
                pushResponse(L)
                currentResponse = lua_topointer(L, -1)
                luaPushRef(L, service.handleRef)
                lua_pushvalue(L, requestIndex)
                lua_pushvalue(L, requestIndex + 1)
                started = runtime.makeFiber(from: L, count: 5, pushingHandle: false, keeping: 2)
                runsHandler = true
            } else {
                // runner(conn, req)
                currentResponse = nil
                luaPushRef(L, service.runnerRef)
                pushSelf(L)
                lua_pushvalue(L, requestIndex)
                started = runtime.makeFiber(from: L, count: 3, pushingHandle: false)
                runsHandler = false
            }
            lua_settop(L, requestIndex - 1)
            started.observer = self
            if runNow {
                // Not queued: the ready queue's idle watcher and batch cost more than the
                // handler of a hello. A pipelined request is queued (responseDone), so
                // requests do not nest.
                fiber = started
                runtime.resume(started)
            } else {
                runtime.enqueue(started)
                fiber = consume started
            }
        }
    }

    /// Pushes a new `res`: { [connection key] = this connection }, with http.lua's response
    /// metatable (which says 200 for a res.status not set).
    private func pushResponse(_ L: LuaState) {
        let refs = runtime.httpResponseRefs
        lua_createtable(L, 0, 1)
        luaPushRef(L, refs.connectionKey)
        pushSelf(L)
        _ = gs_rawset(L, -3)
        luaPushRef(L, refs.metatable)
        lua_setmetatable(L, -2)
    }

    /// A StaticString: a String given to memcmp is copied into a new C string first.
    private static let head: StaticString = "HEAD"

    func pushSelf(_ L: LuaState) {
        if selfRef == LUA_NOREF {
            LuaObjects.push(L, self, kind: .httpConnection)
            lua_pushvalue(L, -1)
            selfRef = luaRef(L)
        } else {
            luaPushRef(L, selfRef)
        }
    }

    /// The value of the first field named `name` (lower case) of the head being started.
    private func header(named name: StaticString, base: UnsafePointer<CChar>,
                        request: gs_http_request) -> (UnsafePointer<CChar>, Int)? {
        let i = name.withUTF8Buffer { n in
            n.withMemoryRebound(to: CChar.self) {
                gs_http_find_header(base, service.scratchHeaders, Int(request.num_headers), 0, $0.baseAddress, n.count)
            }
        }
        guard i >= 0 else { return nil }
        let value = service.scratchHeaders[i].value
        return (base + Int(value.off), Int(value.len))
    }

    /// Reading the body failed with `status` (413, 400, 408): the connection ends with
    /// this response, and a handler that sends nothing answers `status`.
    func failBody(_ status: Int, closed: Bool) {
        bodyError = status
        bodyClosed = closed
        keepAlive = false
        body = .none
    }

    /// Whether the res at `index` of `L` may write the response being answered.
    func isCurrentResponse(_ L: LuaState, _ index: Int32) -> Bool {
        currentResponse == nil || currentResponse == lua_topointer(L, index)
    }

    /// Whether `number` is the request being answered (HTTPRequestObject's number).
    func isCurrentRequest(_ number: Int) -> Bool {
        (state == .running || state == .aborted) && UInt32(truncatingIfNeeded: requests) == UInt32(number)
    }

    /// What every read of a body that failed says, the first time and on each retry.
    var bodyErrorMessage: StaticString {
        if bodyClosed { return "closed" }
        switch bodyError {
        case 413: return "request body too large"
        case 408: return "timeout"
        default: return "malformed request body"
        }
    }

    // MARK: - The handler's end

    /// What is left to http.lua's `complete`, in a fiber of its own.
    private enum Completion {
        /// The handler's results (the first `count`, at most 3, from `first` on its thread).
        case returned(first: Int32, count: Int32)
        /// It raised: its error is on top of its thread, which is still unreset.
        case raised
        /// Ending the response failed (a bad status or field): the message is on top.
        case failed
        /// The output waits for the socket: flush, then what `after` says.
        case flush(After)
    }

    /// The handler returned or raised (see `FiberObserver`): sends the response a plain
    /// `return status, body, headers` (or res:finish, or nothing) makes, or leaves the rest
    /// to Lua. Its thread holds req and res at 1 and 2, then the results or the error.
    func fiberFinishing(_ ended: Fiber, ok: Bool, results: Int32) -> Bool {
        guard ended === fiber, runsHandler else { return false }
        runsHandler = false
        switch state {
        case .running, .aborted: break
        case .upgraded:
            // The handed-over socket ends with the handler; its failure is logged first.
            if !ok && !ended.killed { complete(ended.thread, .raised) } else { close() }
            return true
        default:
            return true   // closed while the handler ran
        }
        let co = ended.thread
        guard ok else {
            // A killed request ends its connection, answering nothing; an error is logged
            // as the request's (after a failed write too).
            if ended.killed { endCutShort() } else { complete(co, .raised) }
            return true
        }
        if state == .aborted {   // a failed res:write ended the response
            close()
            return true
        }
        guard lua_checkstack(co, 8) != 0 else { close(); return true }
        if !finished {
            let first = lua_gettop(co) - results + 1
            let status = results > 0 ? lua_type(co, first) : LUA_TNIL
            do {
                if status == LUA_TNIL {
                    try endWithoutResults(co)
                } else if !headSent, let body = plainBody(co, first, results) {
                    try HTTPBindings.appendHead(co, self, status: first, headers: first + 2, final: true,
                                                bodyLength: body.count, upgrade: false)
                    HTTPBindings.appendBody(self, body.base, body.count, final: true)
                } else {
                    complete(co, .returned(first: first, count: min(results, 3)))
                    return true
                }
            } catch {
                complete(co, .failed)
                return true
            }
            finished = true
        }
        let after = finishResponse(runtime.L)
        if after == .flush || after == .close { complete(co, .flush(after)) }
        return true
    }

    /// The handler returned nothing (or nil) and did not end the response: the body's
    /// error when reading it failed, else the end of what res:write sent, or the head of
    /// res.status and res.headers with an empty body, as `conn:send(res, nil, true)`.
    private func endWithoutResults(_ co: LuaState) throws(LuaError) {
        if !headSent {
            if bodyError != 0 {
                queueErrorResponse(bodyError)
                return
            }
            _ = luaRawGetField(co, 2, static: "status")
            _ = luaRawGetField(co, 2, static: "headers")
            try HTTPBindings.appendHead(co, self, status: -2, headers: -1, final: true, bodyLength: 0, upgrade: false)
            gs_pop(co, 2)
        }
        HTTPBindings.appendBody(self, nil, 0, final: true)
    }

    /// The body of a `return status, body, headers` the host sends as it is: a string or
    /// nil body, table or nil headers, and no res.headers to merge them into.
    private func plainBody(_ co: LuaState, _ first: Int32, _ results: Int32)
        -> (base: UnsafePointer<CChar>?, count: Int)? {
        let bodyType = results >= 2 ? lua_type(co, first + 1) : LUA_TNIL
        let headersType = results >= 3 ? lua_type(co, first + 2) : LUA_TNIL
        guard bodyType == LUA_TSTRING || bodyType == LUA_TNIL, headersType == LUA_TTABLE || headersType == LUA_TNIL
        else { return nil }
        let merged = luaRawGetField(co, 2, static: "headers") != LUA_TNIL
        gs_pop(co, 1)
        guard !merged else { return nil }
        var length = 0
        let base = bodyType == LUA_TSTRING ? lua_tolstring(co, first + 1, &length) : nil
        return (base, length)
    }

    /// Pushes the req and res of the handler that raised on `co` (the connection's userdata
    /// is on top of `L`), or false and false. The kept values at the bottom of its thread
    /// cannot be indexed once it raised: they are read as the arguments of its first call
    /// (the handler's; after a __call table's self), and checked to be this request's.
    private func pushFailedRequest(_ co: LuaState, _ L: LuaState) {
        let conn = lua_gettop(L)
        let n = gs_first_call_locals(co, L, 3)
        func isRequest(_ i: Int32) -> Bool {
            guard lua_type(L, i) == LUA_TUSERDATA else { return false }
            lua_getiuservalue(L, i, 2)
            defer { gs_pop(L, 1) }
            return lua_rawequal(L, -1, conn) != 0
        }
        func isResponse(_ i: Int32) -> Bool {
            guard lua_type(L, i) == LUA_TTABLE else { return false }
            luaPushRef(L, runtime.httpResponseRefs.connectionKey)
            _ = lua_rawget(L, i)
            defer { gs_pop(L, 1) }
            return lua_rawequal(L, -1, conn) != 0
        }
        for skip: Int32 in 0...1 where n >= skip + 2 {
            let req = conn + 1 + skip
            if isRequest(req) && isResponse(req + 1) {
                if skip > 0 { lua_rotate(L, conn + 1, -skip) }
                lua_settop(L, conn + 2)
                return
            }
        }
        lua_settop(L, conn)
        lua_pushboolean(L, 0)
        lua_pushboolean(L, 0)
    }

    /// Starts http.lua's `complete(conn, req, res, how, ...)` in a fiber of its own.
    private func complete(_ co: LuaState, _ how: Completion) {
        let L = runtime.L
        _ = lua_checkstack(co, 4)
        let errorIndex = lua_gettop(co)
        luaPushRef(L, service.completeRef)
        pushSelf(L)
        if case .raised = how {
            pushFailedRequest(co, L)
        } else {
            for i: Int32 in 1...2 {       // req, res
                lua_pushvalue(co, i)
                lua_xmove(co, L, 1)
            }
        }
        var count: Int32 = 5
        switch how {
        case .returned(let first, let n):
            lua_pushboolean(L, 1)
            for i in 0..<n {
                lua_pushvalue(co, first + i)
                lua_xmove(co, L, 1)
            }
            count += n
        case .raised:
            lua_pushboolean(L, 0)
            luaPushRef(L, runtime.httpResponseRefs.describe)
            lua_pushthread(co)
            lua_xmove(co, L, 1)
            lua_pushvalue(co, errorIndex)
            lua_xmove(co, L, 1)
            _ = gs_pcall(L, 2, 1, 0)   // its failure, or describe's own error: either is the error
            count += 1
        case .failed:
            lua_pushboolean(L, 0)
            lua_xmove(co, L, 1)
            count += 1
        case .flush(let after):
            lua_pushstring(L, "flush")
            lua_pushstring(L, cString(after.name))
            count += 1
        }
        let completing = runtime.makeFiber(from: L, count: count, pushingHandle: false)
        completing.observer = self
        fiber = completing
        runtime.enqueue(completing)
    }

    /// The request's fiber waits: the complete responses of the requests pipelined ahead
    /// of it, which wait in the output to go with its response, go now (what the socket
    /// does not take now goes with the next write).
    func fiberParking(_ parking: Fiber) {
        guard parking === fiber, state == .running, !headSent, !output.isEmpty else { return }
        // A failure drops the responses: the connection must not go on without them.
        if case .failed = writeOutput() { keepAlive = false }
    }

    func fiberEnded(_ ended: Fiber) {
        // A runner that never ran (killed before its start) or that was cut short.
        if ended === fiber && (state == .running || state == .aborted) { endCutShort() }
    }

    /// Ends the connection of a request whose fiber was killed or cut short. Before its
    /// head the output holds only the complete responses of the requests pipelined ahead
    /// of it: they are sent (one write, as `reject`'s) before the close.
    func endCutShort() {
        if state == .running && !headSent && !output.isEmpty && !socket.isClosed {
            writeOnceAndDrop()
            fiber = nil
            lingerThenClose()
            return
        }
        close()
    }

    /// One write of what the output holds, from where an earlier write stopped; what the
    /// socket does not take is dropped (the connection is about to close).
    private func writeOnceAndDrop() {
        let from = socket.sendProgress
        if !socket.isClosed, let base = output.base, output.count > from {
            _ = socket.transportWrite(from: base + from, count: output.count - from)
        }
        dropOutput()
    }

    /// Forgets the output and how much of it was written.
    private func dropOutput() {
        socket.sendProgress = 0
        output.removeAll()
    }

    /// A write of the running request's response failed: the peer has part of a response,
    /// so the connection ends with it. It is shut down now (the peer sees the end) and
    /// closed when the handler ends; `req.peer` and the handler's errors are still the
    /// request's until then.
    func abortResponse() {
        guard state == .running else { return }
        state = .aborted
        keepAlive = false
        dropOutput()
        if !socket.isClosed { _ = Syscall.shutdown(socket.fd, Int32(SHUT_RDWR)) }
    }

    // MARK: - After a response

    /// What finishing a response did: the next pipelined request `started` (its response
    /// takes this one's output along), the connection is `idle` (all was written, it awaits
    /// its next request) or `closed` (written, then closed); or the output could not all be
    /// written now, and the caller flushes it, then calls `awaitRequest` (`flush`) or
    /// `lingerThenClose` (`close`).
    enum After {
        case started, idle, closed, flush, close

        var name: StaticString {
            switch self {
            case .started: "started"
            case .idle: "idle"
            case .closed: "closed"
            case .flush: "flush"
            case .close: "close"
            }
        }
    }

    /// The response is complete (conn:done()): see `After`.
    func finishResponse(_ L: LuaState) -> After {
        switch state {
        case .closed: return .closed
        case .aborted:   // a failed res:write ended it
            close()
            return .closed
        default: break
        }
        let next = responseDone(L)
        if next == .started { return .started }
        switch writeOutput() {
        case .all: break
        case .wait: return next == .flush ? .flush : .close
        case .failed:
            close()
            return .closed
        }
        if next == .flush {
            awaitRequest(L)
            return .idle
        }
        lingerThenClose()
        return .closed
    }

    /// Skips what the handler left of the body, then either starts the next pipelined
    /// request (its output waits to go with the next one's) or says what comes after the
    /// flush: awaiting the next request, or closing.
    private enum Next { case started, flush, close }

    private func responseDone(_ L: LuaState) -> Next {
        fiber = nil
        if let m = socket.metrics {
            m.countResponse(method: Int(metricsMethod), status: status, seconds: monotonicSeconds() - metricsStarted)
        }
        skipBody()
        guard keepAlive, !socket.isClosed else { return .close }
        state = .awaitingHead
        lastLength = 0
        headDeadline = 0
        if output.count < 65536 && !socket.buffer.isEmpty && readHead(L, mayRead: false) { return .started }
        if state != .awaitingHead { return .close }   // a rejected head
        return .flush
    }

    /// Discards the rest of the body if it is buffered; otherwise the connection cannot be
    /// reused (its next request is somewhere behind the body).
    private func skipBody() {
        switch body {
        case .none: return
        case .length(let left):
            let n = min(left, socket.buffer.count)
            socket.buffer.consume(n)
            body = left == n ? .none : .length(left: left - n)
        case .chunked:
            var size = socket.buffer.count
            if size > 0 {
                let p = UnsafeMutableRawPointer(mutating: socket.buffer.bytes.baseAddress!).assumingMemoryBound(to: CChar.self)
                let r = gs_http_decode_chunked(chunked, p, &size)
                if r >= 0 {
                    // The bytes after the body moved to p[size ..< size + r].
                    socket.buffer.consume(size)
                    socket.buffer.keepFirst(r)
                    body = .none
                } else {
                    socket.buffer.consume(socket.buffer.count)
                }
            }
        }
        if !body.isNone { keepAlive = false }
    }

    enum Written { case all, wait(Socket.Direction), failed }

    /// Writes as much of `output` as the socket takes now.
    func writeOutput() -> Written {
        guard let base = output.base, !output.isEmpty else { return .all }
        switch socket.send(base, count: output.count) {
        case .done:
            // Freed: a connection between requests holds no output memory (0.25 KiB less
            // per idle connection; a malloc and a free, ~150 instructions, per response).
            dropOutput()
            return .all
        case .wait(let direction):
            return .wait(direction)
        case .failed:
            dropOutput()
            return .failed
        }
    }

    // MARK: - Errors and closing

    /// Queues the error response for `status` (before the head) and ends keep-alive.
    func queueErrorResponse(_ status: Int) {
        output.append(HTTPResponseHead.errorResponse(status, date: service.currentDateLine()))
        bodyBytes = HTTPResponseHead.reason(status).utf8CodeUnitCount + 1
        headSent = true
        finished = true
        self.status = status
        keepAlive = false
    }

    /// Answers a head the server refuses with `status` and `Connection: close`, then closes.
    func reject(_ status: Int, _ reason: String) {
        stopWaiting()
        runtime.httpRejected += 1
        output.append(HTTPResponseHead.errorResponse(status, date: service.currentDateLine()))
        writeOnceAndDrop()
        if let peer = peerText {
            runtime.logger.info("http: \(status) to \(peer): \(reason)", metadata: ["peer": "\(peer)"])
        }
        lingerThenClose()
    }

    private var peerText: String? {
        guard socket.family == AF_INET || socket.family == AF_INET6 else { return nil }
        let (result, address) = Syscall.name(of: socket.fd, peer: true)
        guard case .ok = result, let address else { return nil }
        let (host, port, _) = address.hostPortFamily
        return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    /// Closes after a response the peer may still be sending into: the write side first,
    /// then what arrives is read and dropped for up to 2 s, so that the peer reads the
    /// response before a reset could destroy it (nginx's lingering close).
    func lingerThenClose() {
        guard !socket.isClosed else { close(); return }
        // Nothing unread: the peer sent only what was answered, and closing cannot reset it.
        if state != .awaitingHead && state != .lingering && socket.buffer.isEmpty && body.isNone
            && bodyError == 0 {
            close()
            return
        }
        _ = Syscall.shutdown(socket.fd, Int32(SHUT_WR))
        state = .lingering
        linger()
    }

    private func linger() {
        while true {
            socket.buffer.consume(socket.buffer.count)
            switch socket.fill() {
            case .data: continue
            case .wait(let direction): waitForInput(direction); return
            case .closed, .failed: close(); return
            }
        }
    }

    /// Stops keep-alive: an idle connection closes now, a busy one after its response.
    func shutdown() {
        keepAlive = false
        if state == .lingering || (state == .awaitingHead && socket.buffer.isEmpty && headDeadline == 0) { close() }
    }

    /// Hands the socket to the handler (`res:upgrade()`): the connection only counts it
    /// from now until the runner closes it.
    func upgrade() {
        stopWaiting()
        finished = true
        state = .upgraded
        body = .none
    }

    func close() {
        guard state != .closed else { return }
        state = .closed
        stopWaiting()
        fiber = nil
        output.removeAll()
        socket.close()
        let L = runtime.L
        if socketRef != LUA_NOREF {
            if runtime.tracksResources {   // closed here, not by its Lua close: leave the open list too
                luaPushRef(L, socketRef)
                SocketBindings.track(L, -1, open: false)
                gs_pop(L, 1)
            }
            luaUnref(L, socketRef)
            socketRef = LUA_NOREF
        }
        luaUnref(L, peerRef)
        peerRef = LUA_NOREF
        let ref = selfRef
        selfRef = LUA_NOREF
        service.connectionClosed(self)
        luaUnref(L, ref)
    }
}

extension HTTPConnection.Body {
    var isNone: Bool { if case .none = self { return true } else { return false } }
}
