// The TLS operations of a stream socket: its handshake, bounded in total.
import CLibev

extension Socket {
    /// The socket's TLS, if it speaks TLS.
    var tls: TLSStream? { transport as? TLSStream }

    /// Goes on with the TLS handshake.
    func handshake() -> Step<Void> {
        guard let tls, !isClosed else { return .failed(.closed) }
        switch tls.handshake() {
        case .ok: return .done(())
        case .wait(let direction): return .wait(direction)
        case .closed: return .failed(.closed)
        case .failed(let failure): return .failed(failure)
        }
    }

    /// How long a handshake may take in all: nil for ever.
    var handshakeLimit: Double? { operationTimeouts.map { $0.connect } ?? (blockTimeout ?? totalTimeout) }

    /// The deadline of a handshake starting now: the whole handshake is bounded by `limit`
    /// when given (a server's handshake_timeout), else by the connect timeout of settimeouts
    /// when set, else by the socket's timeout.
    func handshakeDeadline(limit given: Double? = nil) -> Double? {
        guard let limit = given ?? handshakeLimit else { return nil }
        ev_now_update(runtime.loop)
        return ev_now(runtime.loop) + limit
    }
}
