// OpenResty's client connection pool: `setkeepalive` parks an idle connection here
// under the address it was connected to; the next `connect` to that address takes it
// back. A connection the peer closed, that has unread data, or that idled too long is
// closed instead of handed out.
import CLibev
import CShims
import Glibc

struct PooledConnection {
    let fd: Int32
    let family: Int32
    let since: Double
    let maxIdle: Double?
    let reusedTimes: Int
    /// A TLS connection's transport (its session goes on when the connection is reused).
    var transport: (any Transport)? = nil

    /// Whether the connection can be handed out: nothing to read and not closed by the peer.
    /// A TLS connection's records are read first: a session ticket that came after the
    /// connection was pooled is no reason to drop it.
    var isHealthy: Bool {
        if let transport { return transport.isIdle(fd) }
        var byte: UInt8 = 0
        if case .wouldBlock = Syscall.recv(fd, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT)) { return true }
        return false
    }
}

extension Runtime {
    func poolConnection(_ connection: PooledConnection, key: String, poolSize: Int) {
        var idle = connectionPool[key, default: []]
        idle.append(connection)
        while idle.count > poolSize { closePooled(idle.removeFirst().fd) }
        connectionPool[key] = idle
        if connection.maxIdle != nil { schedulePoolSweep() }
    }

    /// Closes the pooled connections that idled past their max_idle, and arms the sweep
    /// timer for the next one to expire. The timer does not keep the loop running.
    func sweepPool() {
        let now = ev_time()
        var next = Double.infinity
        for (key, idle) in connectionPool {
            let kept = idle.filter { c in
                guard let maxIdle = c.maxIdle else { return true }
                if now - c.since >= maxIdle {
                    closePooled(c.fd)
                    return false
                }
                next = min(next, c.since + maxIdle)
                return true
            }
            connectionPool[key] = kept.isEmpty ? nil : kept
        }
        if next.isFinite { armPoolSweep(after: next - now) }
    }

    private func closePooled(_ fd: Int32) {
        socketDescriptors.remove(fd)
        Syscall.close(fd)
    }

    private func schedulePoolSweep() {
        if poolSweep == nil || gs_is_active(poolSweep!) == 0 { sweepPool() }
    }

    private func armPoolSweep(after seconds: Double) {
        let t: UnsafeMutablePointer<ev_timer>
        if let existing = poolSweep {
            t = existing
            if gs_is_active(t) != 0 {
                ev_ref(loop)
                ev_timer_stop(loop, t)
            }
        } else {
            t = .allocate(capacity: 1)
            gs_timer_init(t, poolSweepFired, 0)
            t.pointee.data = Unmanaged.passUnretained(self).toOpaque()
            poolSweep = t
        }
        gs_timer_set(t, max(seconds, 0.001))
        ev_timer_start(loop, t)
        ev_unref(loop)
    }

    func stopPoolSweep() {
        guard let t = poolSweep else { return }
        if gs_is_active(t) != 0 {
            ev_ref(loop)
            ev_timer_stop(loop, t)
        }
        t.deallocate()
        poolSweep = nil
    }

    func takePooledConnection(_ key: String) -> PooledConnection? {
        guard var idle = connectionPool[key] else { return nil }
        defer { connectionPool[key] = idle.isEmpty ? nil : idle }
        let now = ev_time()
        while let c = idle.popLast() {
            if let maxIdle = c.maxIdle, now - c.since > maxIdle {
                closePooled(c.fd)
                continue
            }
            if c.isHealthy { return c }
            closePooled(c.fd)
        }
        return nil
    }
}

private func poolSweepFired(_ loop: OpaquePointer?, _ w: UnsafeMutablePointer<ev_timer>?, _ revents: Int32) {
    let runtime = Unmanaged<Runtime>.fromOpaque(w!.pointee.data).takeUnretainedValue()
    ev_ref(loop)  // the fired timer is no longer active: undo its unref
    runtime.sweepPool()
}
