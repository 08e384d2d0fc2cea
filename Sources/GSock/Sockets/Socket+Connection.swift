// A stream socket's other operations: opening its descriptor, bind, accept, connect (over
// the candidate addresses of a name), send, and handing a connection to the pool. Each
// step does what it can now and says whether the caller must wait; progress stays in the
// socket between waits.
import CLibev
import Glibc

/// Why a socket operation failed, before it is worded for Lua.
enum SocketFailure: Error {
    case closed, timeout, outOfMemory
    case system(SystemError)
    /// A TLS failure, worded by the TLS layer ("certificate verify failed: ...").
    case tls(String)
}

extension Socket {
    /// How a step of an operation ended.
    enum Step<Value> {
        case done(Value)
        case wait(Direction)
        case failed(SocketFailure)
    }

    /// Opens the descriptor of a socket made with an unspecified family, or of another family.
    func openDescriptor(family: Int32) throws(SystemError) {
        if wasClosed { throw SystemError(ECONNABORTED, "socket") }  // worded "closed" (streams) or "refused"
        if fd >= 0 && self.family == family { return }
        let type = socketClass.isStream ? Int32(SOCK_STREAM.rawValue) : Int32(SOCK_DGRAM.rawValue)
        switch Syscall.socket(family, type) {
        case .failed(let e): throw e
        case .wouldBlock: throw SystemError(EAGAIN, "socket")
        case .ok(let newFD):
            let wasV6Only = v6only
            adopt(fd: Int32(newFD), family: family)
            if family == AF_INET6 && wasV6Only {
                _ = Syscall.setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, Int32(1))
            }
        }
    }

    /// Binds to the first of `clientState.connectCandidates` that works.
    func bindCandidates() throws(SystemError) { try firstCandidate("bind") { Syscall.bind(fd, $0) } }

    /// Runs `attempt` on each of `clientState.connectCandidates`, with a descriptor of its
    /// family, until one succeeds; else throws the last failure. The candidates are used up.
    func firstCandidate(_ call: StaticString, _ attempt: (SocketAddress) -> Syscall.Result) throws(SystemError) {
        var lastError = SystemError(EADDRNOTAVAIL, call)
        defer { clientState.connectCandidates = [] }
        for address in clientState.connectCandidates {
            do {
                try openDescriptor(family: address.family)
            } catch {
                lastError = error
                continue
            }
            switch attempt(address) {
            case .ok: return
            case .failed(let e): lastError = e
            case .wouldBlock: lastError = SystemError(EAGAIN, call)
            }
        }
        throw lastError
    }

    // MARK: - accept

    /// Accepts a connection; `woken`: the descriptor was just reported readable.
    ///
    /// For a listener `drained` says its backlog is thought empty: the next accept then waits
    /// for readiness first (libev tells when a connection comes) instead of an accept4 that
    /// fails with EAGAIN, which is what one connection at a time costs otherwise. It is set
    /// when an accept after a wait that lasted more than one loop iteration succeeds (the
    /// connection came alone), cleared when the wait ended at the next poll (more are likely
    /// queued: accept4 until EAGAIN, as before). With no wait allowed (timeout 0) the
    /// listener is always tried.
    func accept(woken: Bool = false) -> Step<Socket> {
        if drained && !woken && waitLimit(deadline: receiveDeadline) != 0 {
            acceptWaitIteration = ev_iteration(runtime.loop)
            return .wait(.read)
        }
        while true {
            if isClosed { return .failed(.closed) }
            var peer: UInt64 = 0
            switch Syscall.accept(fd, peer: &peer) {
            case .ok(let client):
                runtime.acceptedPeer = peer
                if woken { drained = ev_iteration(runtime.loop) &- acceptWaitIteration > 1 }
                let accepted = Socket(runtime: runtime, fd: Int32(client), family: family,
                                      socketClass: socketClass.isUnix ? .unixClient : .tcpClient)
                if let m = metrics {
                    accepted.metrics = m
                    m.accepted += 1
                    m.connections += 1
                }
                return .done(accepted)
            case .failed(let e) where e.errno == ECONNABORTED: continue
            case .wouldBlock:
                acceptWaitIteration = ev_iteration(runtime.loop)
                return .wait(.read)
            case .failed(let e): return .failed(.system(e))
            }
        }
    }

    // MARK: - connect

    /// Takes a pooled connection to `key` if there is one (the socket has no descriptor yet).
    func reusePooledConnection(_ key: String, host: String) -> Bool {
        clientState.poolKey = key
        clientState.connectHost = host
        guard fd < 0, let pooled = runtime.takePooledConnection(key) else {
            clientState.reusedTimes = 0
            return false
        }
        adopt(fd: pooled.fd, family: pooled.family)
        clientState.reusedTimes = pooled.reusedTimes + 1
        return true
    }

    /// Tries the candidate addresses in order until one connects or must be waited for;
    /// `attempting` runs before each try that has a descriptor (LuaSocket makes the object a
    /// client whatever the outcome).
    func connectCandidates(attempting: () -> Void) -> Step<Void> {
        while !clientState.connectCandidates.isEmpty {
            let address = clientState.connectCandidates.removeFirst()
            do {
                try openDescriptor(family: address.family)
            } catch {
                clientState.connectError = error
                continue
            }
            attempting()
            switch Syscall.connect(fd, address) {
            case .ok:
                clientState.connectCandidates = []
                return .done(())
            case .wouldBlock:
                return .wait(.write)
            case .failed(let e):
                clientState.connectError = e
            }
        }
        return .failed(.system(clientState.connectError ?? SystemError(EADDRNOTAVAIL, "connect")))
    }

    /// The descriptor of a connect in progress became writable: connected, or the next
    /// candidate is tried.
    func connectFinished(attempting: () -> Void) -> Step<Void> {
        if isClosed { return .failed(.closed) }
        guard let error = Syscall.pendingError(fd) else {
            clientState.connectCandidates = []
            return .done(())
        }
        clientState.connectError = error
        return connectCandidates(attempting: attempting)
    }

    /// A connect gave up (its timeout): the candidates left are forgotten.
    func abandonConnect() { clientState.connectCandidates = [] }

    // MARK: - send

    /// Sends `count` bytes from `bytes`, from `sendProgress` on.
    @inline(__always)
    func send(_ bytes: UnsafeRawPointer, count: Int) -> Step<Void> {
        while sendProgress < count {
            if isClosed { return .failed(.closed) }
            switch transportWrite(from: bytes + sendProgress, count: count - sendProgress) {
            case .ok(let n):
                sendProgress += n
                sent += n
                withRuntime { $0.bytesOut += n }
                if let m = metrics { m.bytesOut += n }
            case .wait(let direction): return .wait(direction)
            case .closed: return .failed(.closed)
            case .failed(let failure): return .failed(failure)
            }
        }
        // What a transport keeps (TLS, when the socket is full) must leave before the send
        // is done: a close would lose it.
        while let transport, transport.pendingOutput > 0 {
            if isClosed { return .failed(.closed) }
            switch transport.flush(fd) {
            case .ok: continue
            case .wait(let direction): return .wait(direction)
            case .closed: return .failed(.closed)
            case .failed(let failure): return .failed(failure)
            }
        }
        return .done(())
    }

    // MARK: - The connection pool

    /// Why setkeepalive cannot pool a connection, in LuaSocket's words.
    enum PoolRefusal: String, Error {
        case closed
        case unreadData = "unread data in buffer"
        case busy
        case notConnected = "not connected"
    }

    /// Hands the connection to the runtime's pool for the next connect to the same address,
    /// instead of closing it.
    func keepAlive(maxIdle: Double?, poolSize: Int) throws(PoolRefusal) {
        if isClosed { throw .closed }
        if !buffer.isEmpty { throw .unreadData }
        if isReceiving || isSending { throw .busy }
        if let transport, !transport.isIdle(fd) { throw .unreadData }
        var key: String
        if let k = clientState.poolKey {
            key = k
        } else if case (.ok, let peer?) = Syscall.name(of: fd, peer: true) {
            let (host, port, _) = peer.hostPortFamily
            key = "\(host):\(port)"
        } else {
            throw .notConnected
        }
        if let tls = transport as? TLSStream { key = tls.poolKey(key) }
        let family = self.family
        let reusedTimes = clientState.reusedTimes
        let pooledTransport = transport
        transport = nil  // the pool's now: this object's close must not shut it down
        let fd = detachDescriptor()
        runtime.poolConnection(PooledConnection(fd: fd, family: family, since: ev_time(), maxIdle: maxIdle,
                                                reusedTimes: reusedTimes, transport: pooledTransport),
                               key: key, poolSize: poolSize)
    }

    /// Before a client handshake begins, for this socket's pool key (address, context,
    /// server name): takes a pooled TLS connection in place of `fresh`, so that the
    /// handshake is skipped (true); else `fresh` resumes the key's newest session, and the
    /// sessions its server sends are kept for the next connection. (OpenSSL's own client
    /// cache is off: it would key sessions by context only, not by address and name.)
    func beginClientTLS(_ fresh: TLSStream) -> Bool {
        guard fresh.context.mode == .client, !fresh.hasStarted, let base = clientState.poolKey else { return false }
        let name = fresh.poolKeyName
        let key = fresh.poolKey(base)
        let runtime = self.runtime
        if let pooled = runtime.takePooledConnection(key), let tls = pooled.transport as? TLSStream {
            adopt(fd: pooled.fd, family: pooled.family)  // closes the fresh connection
            transport = tls
            clientState.reusedTimes = pooled.reusedTimes + 1
            return true
        }
        if let shared = runtime.clientSessions[key] {
            fresh.shareSessions(shared)
            return false
        }
        if runtime.clientSessions.count >= Socket.clientSessionKeys {
            runtime.clientSessions.remove(at: runtime.clientSessions.startIndex)
        }
        let shared = TLSSession(context: fresh.context, serverName: name)
        shared.daneKey = fresh.daneKey
        runtime.clientSessions[key] = shared
        fresh.shareSessions(shared)
        return false
    }

    /// Pool keys whose newest session is kept; past that, one is forgotten for each new one.
    static let clientSessionKeys = 1024
}
