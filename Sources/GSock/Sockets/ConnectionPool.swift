// OpenResty's client connection pool: `setkeepalive` parks an idle connection here
// under the address it was connected to; the next `connect` to that address takes it
// back. A connection the peer closed, that has unread data, or that idled too long is
// closed instead of handed out.
import CLibev
import Glibc

struct PooledConnection {
    let fd: Int32
    let family: Int32
    let since: Double
    let maxIdle: Double?
    let reusedTimes: Int
}

extension Runtime {
    func poolConnection(_ connection: PooledConnection, key: String, poolSize: Int) {
        var idle = connectionPool[key, default: []]
        idle.append(connection)
        while idle.count > poolSize { Posix.close(idle.removeFirst().fd) }
        connectionPool[key] = idle
    }

    func takePooledConnection(_ key: String) -> PooledConnection? {
        guard var idle = connectionPool[key] else { return nil }
        defer { connectionPool[key] = idle.isEmpty ? nil : idle }
        let now = ev_time()
        while let c = idle.popLast() {
            if let maxIdle = c.maxIdle, now - c.since > maxIdle {
                Posix.close(c.fd)
                continue
            }
            var byte: UInt8 = 0
            // Healthy means: nothing to read and not closed by the peer.
            if case .failed(let e) = Posix.recv(c.fd, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT)), e == EAGAIN || e == EWOULDBLOCK {
                return c
            }
            Posix.close(c.fd)
        }
        return nil
    }
}
