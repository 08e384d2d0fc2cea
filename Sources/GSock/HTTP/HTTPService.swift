// An HTTP/1.1 service (SPEC §11): the limits and Lua functions of one server with
// `protocol = "http"`, and the connections it holds. Between requests a connection is
// the host's (HTTPConnection, no fiber, no Lua thread); each request runs in a fiber of
// its own: the handler itself, or http.lua's runner when the service keeps an access log.
import CHTTP
import CLibev
import CLua
import CShims
import Glibc

/// SPEC §11's limits, each settable per service.
struct HTTPLimits {
    var maxRequestLine = 8192
    var maxHeaderSize = 65536
    var maxHeaders = 100
    var maxBody = 1 << 20
    var headerTimeout = 10.0
    var bodyTimeout = 30.0
    var keepaliveTimeout = 75.0
    var keepaliveRequests = 10_000

    var parser: gs_http_limits {
        gs_http_limits(max_request_line: UInt32(maxRequestLine), max_header_size: UInt32(maxHeaderSize),
                       max_headers: UInt32(maxHeaders), flags: 0)
    }
}

final class HTTPService {
    unowned(unsafe) let runtime: Runtime
    let limits: HTTPLimits
    @exclusivity(unchecked) var parserLimits: gs_http_limits
    /// Registry references: http.lua's runner `run(conn, req)` (it reads the server's
    /// handler at each request, so a reload's new handler answers the next one), the
    /// function told (with no argument) that a connection closed, and http.lua's
    /// `complete(conn, req, res, how, ...)`, which ends what the host leaves to Lua.
    let runnerRef: Int32
    let onCloseRef: Int32
    let completeRef: Int32
    /// The handler the host resumes itself (`handle(req, res)`), or LUA_NOREF: requests
    /// then go through the runner. A reload replaces it (`set_handle`).
    var handleRef: Int32
    /// The parser's field array, shared by every connection: a head is parsed and copied
    /// into its request object in one go.
    let scratchHeaders: UnsafeMutablePointer<gs_http_header>
    @exclusivity(unchecked) var scratchRequest = gs_http_request()
    /// The response fields being written (HTTPResponseHead.appendHead), shared likewise.
    @exclusivity(unchecked) var scratchFields = gs_http_fields()
    /// The open connections, linked through HTTPConnection.next/prev.
    var head: HTTPConnection?
    private(set) var count = 0
    /// Set by `shutdown`: connections close after their current response.
    private(set) var shuttingDown = false
    /// "Date: ...\r\n", made once per second, in `dateLine` (64 bytes).
    @exclusivity(unchecked) private var dateSecond = -1
    private let dateLine = UnsafeMutablePointer<UInt8>.allocate(capacity: 64)
    @exclusivity(unchecked) private var dateLineLength = 0
    /// The connections waiting for input, by the limit their wait has (HTTPWaits.swift):
    /// a head's header_timeout (and a new connection's first), an idle connection's
    /// keepalive_timeout, a lingering close's 2 s; and their one timer.
    @exclusivity(unchecked) var headWaits = HTTPWaitQueue()
    @exclusivity(unchecked) var idleWaits = HTTPWaitQueue()
    @exclusivity(unchecked) var lingerWaits = HTTPWaitQueue()
    let waitTimer = UnsafeMutablePointer<ev_timer>.allocate(capacity: 1)
    /// When the timer fires while it is started.
    @exclusivity(unchecked) var waitTimerAt = 0.0

    init(runtime: Runtime, limits: HTTPLimits, runnerRef: Int32, onCloseRef: Int32, completeRef: Int32,
         handleRef: Int32) {
        self.runtime = runtime
        self.limits = limits
        parserLimits = limits.parser
        self.runnerRef = runnerRef
        self.onCloseRef = onCloseRef
        self.completeRef = completeRef
        self.handleRef = handleRef
        scratchHeaders = .allocate(capacity: max(limits.maxHeaders, 1))
        gs_timer_init(waitTimer, httpWaitTimerFired, 0)
        waitTimer.pointee.data = Unmanaged.passUnretained(self).toOpaque()
    }

    deinit {
        ev_timer_stop(runtime.loop, waitTimer)
        waitTimer.deallocate()
        scratchHeaders.deallocate()
        statusLines.deallocate()
        statusLineLengths.deallocate()
        dateLine.deallocate()
        free(scratchFields.data)
        if scratchFields.anchor > 0 { luaUnref(runtime.L, scratchFields.anchor) }
        for ref in [runnerRef, onCloseRef, completeRef, handleRef] { luaUnref(runtime.L, ref) }
    }

    /// Takes over an accepted connection; `peerRef` is a registry reference to its peer
    /// table, or LUA_NOREF to make one from the socket when a request asks. Returns false
    /// when the connection closed at once (its first read found the peer gone): with
    /// `told` false the server is not told, since it has not counted it yet.
    @discardableResult
    func adopt(_ L: LuaState, _ socket: Socket, peerRef: Int32, told: Bool = true) -> Bool {
        let connection = HTTPConnection(service: self, socket: socket, peerRef: peerRef)
        connection.next = head
        head?.prev = connection
        head = connection
        count += 1
        runtime.httpConnections += 1
        let telling = tellsClose
        tellsClose = told
        defer { tellsClose = telling }
        connection.awaitRequest(L)
        return connection.state != .closed
    }

    /// Whether a close is told to the server (see `adopt`).
    private var tellsClose = true

    /// A connection closed: unlinked, and the server's count told.
    func connectionClosed(_ connection: HTTPConnection) {
        if let prev = connection.prev { prev.next = connection.next } else { head = connection.next }
        connection.next?.prev = connection.prev
        connection.next = nil
        connection.prev = nil
        count -= 1
        runtime.httpConnections -= 1
        if count == 0 { ev_timer_stop(runtime.loop, waitTimer) }   // no wait left: it keeps no loop alive
        guard tellsClose else { return }
        let L = runtime.L
        luaPushRef(L, onCloseRef)
        if gs_pcall(L, 0, 0, 0) != LUA_OK {
            runtime.logger.error("http: the server's connection count failed: \(runtime.popMessage())")
        }
    }

    /// Stops keep-alive: idle connections close now, the others after their response.
    func shutdown() {
        shuttingDown = true
        var c = head
        while let connection = c {
            c = connection.next
            connection.shutdown()
        }
    }

    /// Closes every connection (after `shutdown` and the drain).
    func closeAll() {
        while let connection = head { connection.close() }
    }

    /// The fibers running requests now.
    var requestFibers: [Fiber] {
        var fibers: [Fiber] = []
        var c = head
        while let connection = c {
            if let fiber = connection.fiber, fiber.state != .dead { fibers.append(fiber) }
            c = connection.next
        }
        return fibers
    }

    /// Status lines made so far: status - 100's line in the 64 bytes at (status - 100) * 64,
    /// its length in statusLineLengths (0 until made). Raw memory: no array to retain per
    /// response. The longest (a 3-digit code and the longest reason) takes 46 bytes.
    private let statusLines = UnsafeMutablePointer<UInt8>.allocate(capacity: 900 * 64)
    private let statusLineLengths: UnsafeMutablePointer<UInt8> = {
        let p = UnsafeMutablePointer<UInt8>.allocate(capacity: 900)
        p.initialize(repeating: 0, count: 900)
        return p
    }()

    /// "HTTP/1.1 200 OK\r\n" for `status` (100...999).
    func appendStatusLine(_ status: Int, to out: inout OutputBuffer) {
        let i = status - 100
        if statusLineLengths[i] == 0 {
            var line: [UInt8] = []
            HTTPResponseHead.appendStatusLine(status, to: &line)
            guard line.count <= 64 else { out.append(line); return }
            line.withUnsafeBufferPointer { (statusLines + i * 64).update(from: $0.baseAddress!, count: $0.count) }
            statusLineLengths[i] = UInt8(line.count)
        }
        out.append(statusLines + i * 64, count: Int(statusLineLengths[i]))
    }

    /// "Date: <IMF-fixdate>\r\n" for now.
    func currentDateLine() -> [UInt8] {
        updateDateLine()
        return Array(UnsafeBufferPointer(start: dateLine, count: dateLineLength))
    }

    func appendDateLine(to out: inout OutputBuffer) {
        updateDateLine()
        out.append(dateLine, count: dateLineLength)
    }

    private func updateDateLine() {
        var wall = time(nil)
        guard Int(wall) != dateSecond else { return }
        dateSecond = Int(wall)
        var parts = tm()
        gmtime_r(&wall, &parts)
        dateLineLength = dateLine.withMemoryRebound(to: CChar.self, capacity: 64) {
            strftime($0, 64, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &parts)
        }
    }
}
