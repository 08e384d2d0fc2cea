// TLS as a socket's transport: an SSL object over the socket's descriptor. Every OpenSSL
// call is tried first; its WANT_READ / WANT_WRITE becomes `.wait(direction)`, so the socket's
// operations park on the right watcher and everything above the transport (the receive
// buffer, patterns, timeouts, busy, close from another fiber) is the socket's own.
import COpenSSL
import CTLS
import Glibc
import Synchronization

/// A client connection's newest TLS session, kept for resumption (OpenResty's session
/// object: `sslhandshake` returns it, and takes it back to resume), or the newest of every
/// connection to one pool key (`Runtime.clientSessions`).
final class TLSSession {
    let slot = UnsafeMutablePointer<gs_tls_session_slot>.allocate(capacity: 1)
    /// What the session was made with: a session is only offered again to a context of the
    /// same settings (verification, CAs, client certificate) and to the same server name:
    /// OpenSSL does not verify a resumed peer again.
    let contextIdentity: String
    var serverName: String?
    /// The DANE records the session's peer was verified against (TLSStream.daneKey).
    var daneKey = ""
    init(context: TLSContext, serverName: String? = nil) {
        contextIdentity = context.identity
        self.serverName = serverName
        slot.initialize(to: gs_tls_session_slot(session: nil))
    }
    deinit {
        gs_tls_clear_session_slot(slot)
        slot.deallocate()
    }
}

final class TLSStream: Transport {
    /// TLS connections alive in the process (gsock.stats().tls_connections): a leak shows.
    static let live = Atomic<Int>(0)

    let ssl: OpaquePointer
    let context: TLSContext
    /// The name the peer's certificate must be for (a client's), and the SNI sent.
    private(set) var expectedName: String?
    private(set) var serverName: String?
    /// The handshake finished: reads and writes carry application data.
    private(set) var isEstablished = false
    /// The direction the last OpenSSL call wanted (LuaSec's `want()`).
    private(set) var lastWant: Socket.Direction?
    /// What the verify callback saw (for the failure's words); nil on a server that asks for
    /// no client certificate, whose verify callback never runs.
    private let verifyInfo: UnsafeMutablePointer<gs_tls_verify_info>?
    /// A client's sessions, as the server sends them; made on first use (a server's
    /// connections have none).
    private(set) lazy var session = TLSSession(context: context)

    init(context: TLSContext, fd: Int32) throws(TLSError) {
        guard let ssl = SSL_new(context.ctx) else { throw .openSSL("cannot make a TLS connection") }
        guard gs_tls_set_socket(ssl, fd) == 1 else {
            SSL_free(ssl)
            throw .openSSL("cannot make a TLS connection")
        }
        self.ssl = ssl
        self.context = context
        // After the last throw: nothing to leak. A server that verifies no client keeps the
        // context's verify mode (SSL_VERIFY_NONE) and needs no per-connection state for it.
        if context.mode == .server && context.verifyMode == SSL_VERIFY_NONE {
            verifyInfo = nil
        } else {
            let info = UnsafeMutablePointer<gs_tls_verify_info>.allocate(capacity: 1)
            gs_tls_set_verify(ssl, context.verifyMode, info)
            verifyInfo = info
        }
        Self.live.add(1, ordering: .relaxed)
        if context.mode == .client {
            SSL_set_connect_state(ssl)
            gs_tls_set_session_slot(ssl, session.slot)
        } else {
            SSL_set_accept_state(ssl)
            // During a server's handshake OpenSSL reads what the socket has, not a record
            // header then its body: a flight of records costs one recv, not two per record
            // (nginx reads so too). Off once the handshake is done (see `handshake`).
            SSL_set_read_ahead(ssl, 1)
        }
    }

    /// Offers `previous`'s session for resumption (before the handshake), when it was made
    /// by the same context for the same server name.
    func resume(_ previous: TLSSession) {
        guard previous.contextIdentity == context.identity, previous.serverName == (serverName ?? expectedName),
              previous.daneKey == daneKey, let s = previous.slot.pointee.session else { return }
        _ = SSL_set_session(ssl, s)
    }

    /// Makes `shared` where this client connection's sessions go, and offers its newest for
    /// resumption; not when a session was offered already (sslhandshake's reused_session).
    func shareSessions(_ shared: TLSSession) {
        guard !hasStarted, shared !== session, SSL_get_session(ssl) == nil else { return }
        session = shared
        gs_tls_set_session_slot(ssl, shared.slot)
        resume(shared)
    }

    /// Whether the handshake resumed a session.
    var wasResumed: Bool { SSL_session_reused(ssl) == 1 }

    deinit {
        Self.live.subtract(1, ordering: .relaxed)
        SSL_free(ssl)
        verifyInfo?.deallocate()
    }

    /// The server name to send (SNI) and to verify the certificate against: a host name or
    /// an IP literal (checked against the certificate's IP addresses, and sent as no SNI).
    func setServerName(_ name: String) {
        serverName = name
        expectedName = name
        if SocketAddress(numericHost: name, port: 0) == nil { _ = gs_tls_set_host_name(ssl, name) }
    }

    /// The connection's DANE base domain and TLSA records ("" without DANE). They are part
    /// of its pool key and of its sessions': a connection or session verified against other
    /// records is not taken for it.
    private(set) var daneKey = ""

    /// LuaSec's setdane: verification against the TLSA records to come (addTLSA), with
    /// `baseDomain` as a name the certificate may be for (as the name sni() gives, if it
    /// gives one). False when the context has no `dane`, on a server, or once the
    /// handshake began.
    func enableDANE(baseDomain: String) -> Bool {
        guard context.mode == .client, !hasStarted, daneKey.isEmpty, SSL_dane_enable(ssl, baseDomain) > 0 else {
            ERR_clear_error()
            return false
        }
        if serverName == nil { expectedName = baseDomain }
        daneKey = "dane \(baseDomain)"
        return true
    }

    /// LuaSec's settlsa: one TLSA record (RFC 6698's usage, selector, matching type, data).
    /// False before enableDANE, once the handshake began, or for a record OpenSSL cannot use.
    func addTLSA(usage: UInt8, selector: UInt8, matching: UInt8, data: UnsafeRawBufferPointer) -> Bool {
        guard !daneKey.isEmpty, !hasStarted, let base = data.baseAddress else { return false }
        ERR_clear_error()
        guard SSL_dane_tlsa_add(ssl, usage, selector, matching, base.assumingMemoryBound(to: UInt8.self), data.count) > 0 else {
            ERR_clear_error()
            return false
        }
        daneKey += " \(usage) \(selector) \(matching) " + data.map { String(UInt16($0) | 0x100, radix: 16).dropFirst() }.joined()
        return true
    }

    /// Sends the status_request extension: asks the server to staple its certificate's
    /// OCSP response (OpenResty's send_status_req; like OpenResty, nothing checks it).
    func requestStatus() { _ = gs_tls_request_status(ssl) }

    /// Sets the name to verify the peer against when none was set (the host connected to).
    func expectName(ifUnset name: String) {
        if expectedName == nil { expectedName = name }
    }

    // MARK: - Transport

    func read(_ fd: Int32, into buffer: UnsafeMutableRawPointer, count: Int) -> TransportResult {
        guard isEstablished else { return .closed }
        if ERR_peek_error() != 0 { ERR_clear_error() }
        var n = 0
        let r = SSL_read_ex(ssl, buffer, count, &n)
        let result = r == 1 ? TransportResult.ok(n) : failure(r, "SSL_read")  // errno before the flush
        if pendingOutput > 0 {  // what the read made OpenSSL answer (a key update)
            if case .failed(let failure) = flushOutput() { return .failed(failure) }
            if case .wait(.read) = result, pendingOutput > 0 { return .wait(.write) }
        }
        if case .ok = result { lastWant = nil }
        return result
    }

    /// Encrypted bytes the socket BIO keeps past which a write waits for the socket.
    private static let outputLimit = 64 * 1024
    /// One TLS record's worth: with partial writes OpenSSL writes one record per call.
    private static let recordSize = 16 * 1024

    /// Encrypts at most one record; the socket BIO takes all of it (what the socket does not
    /// take at once waits in the BIO), so OpenSSL never holds half a record.
    func write(_ fd: Int32, from bytes: UnsafeRawPointer, count: Int) -> TransportResult {
        guard isEstablished else { return .closed }
        if pendingOutput > Self.outputLimit {
            switch flushOutput() {
            case .ok: break
            case let other: return other
            }
        }
        if ERR_peek_error() != 0 { ERR_clear_error() }
        var n = 0
        let r = SSL_write_ex(ssl, bytes, min(count, Self.recordSize), &n)
        guard r == 1 else { return failure(r, "SSL_write") }
        lastWant = nil
        if case .failed(let failure) = flushOutput() { return .failed(failure) }
        return .ok(n)
    }

    var pendingOutput: Int { Int(gs_tls_pending_output(ssl)) }

    func flush(_ fd: Int32) -> TransportResult { flushOutput() }

    /// Sends what the socket BIO keeps (it knows the descriptor): `.ok(0)` once it is all sent.
    private func flushOutput() -> TransportResult {
        switch gs_tls_flush(ssl) {
        case 1: return .ok(0)
        case 0:
            lastWant = .write
            return .wait(.write)
        default: return .failed(.system(Syscall.lastError("send")))
        }
    }

    var bufferedInput: Int {
        guard isEstablished else { return 0 }
        let pending = Int(SSL_pending(ssl))
        if pending > 0 || SSL_has_pending(ssl) == 0 { return pending }
        return decryptReadAhead()
    }

    /// Records read ahead during the handshake (what came behind the client's Finished) are
    /// in OpenSSL's buffer, not the socket's, and not decrypted yet: one is decrypted (a peek
    /// consumes no data) so that `dirty()`, select and the next wait see what it holds. A
    /// record still incomplete counts nothing (the rest comes through the socket); a close
    /// or an error counts 1, so that the next read meets it at once.
    private func decryptReadAhead() -> Int {
        if ERR_peek_error() != 0 { ERR_clear_error() }
        var byte: UInt8 = 0, n = 0
        if SSL_peek_ex(ssl, &byte, 1, &n) == 1 { return max(1, Int(SSL_pending(ssl))) }
        let error = gs_tls_error(ssl, 0)
        if error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE {
            ERR_clear_error()
            return 0
        }
        return 1
    }

    // MARK: - The handshake

    /// Goes on with the handshake: `.ok(0)` once it is done.
    /// Whether the handshake was begun (a connection from the pool may replace it until then).
    private(set) var hasStarted = false

    func handshake() -> TransportResult {
        hasStarted = true
        // A handshake is done once its last flight has left: the peer waits for it.
        if pendingOutput > 0 {
            switch flushOutput() {
            case .ok: break
            case let other: return other
            }
        }
        if isEstablished { return .ok(0) }
        if ERR_peek_error() != 0 { ERR_clear_error() }
        if context.mode == .client && !isNameSet {
            isNameSet = true
            if let refusal = setNames() { return .failed(.tls(refusal)) }
        }
        let r = SSL_do_handshake(ssl)
        let result = r == 1 ? TransportResult.ok(0) : failure(r, "SSL_do_handshake")
        if r == 1 {
            isEstablished = true
            // Application data is read a record at a time again (what was read ahead is
            // used first): bytes OpenSSL holds are then at most the record a read asked for.
            if context.mode == .server { SSL_set_read_ahead(ssl, 0) }
        }
        if pendingOutput > 0 {
            // Once more, then the failure (an alert that cannot leave) or the wait to send.
            switch flushOutput() {
            case .ok: break
            case .failed(let failure): return .failed(failure)
            case let wait:
                if case .failed = result { return result }
                return wait
            }
        }
        if r == 1 { lastWant = nil }
        return result
    }

    private var isNameSet = false

    /// Sends the server name (SNI) and sets the name to verify; why the handshake cannot go
    /// on, if it cannot: a client that verifies fails closed without a name it can check.
    private func setNames() -> String? {
        guard let name = expectedName else {
            return context.verifiesPeer
                ? "no host name to verify the certificate against: connect to a name, or call sni(name)" : nil
        }
        let isAddress = SocketAddress(numericHost: name, port: 0) != nil
        // The host connected to is also the server name sent, unless sni() named one.
        if serverName == nil && !isAddress {
            serverName = name
            _ = gs_tls_set_host_name(ssl, name)
        }
        session.serverName = serverName ?? name
        guard context.verifiesPeer else { return nil }
        // With DANE the base domain stays a name to check too (SSL_dane_enable set it).
        let ok = isAddress ? gs_tls_use_ip_check(ssl, name) : daneKey.isEmpty ? SSL_set1_host(ssl, name) : SSL_add1_host(ssl, name)
        return ok == 1 && !name.isEmpty ? nil : "invalid host name '\(name)' to verify the certificate against"
    }

    private func failure(_ r: Int32, _ call: StaticString) -> TransportResult {
        let error = gs_tls_error(ssl, r)
        switch error {
        case SSL_ERROR_WANT_READ:
            lastWant = .read
            return .wait(.read)
        case SSL_ERROR_WANT_WRITE:
            lastWant = .write
            return .wait(.write)
        case SSL_ERROR_ZERO_RETURN:
            return .closed
        case SSL_ERROR_SYSCALL:
            // An EOF without close_notify is a close (SSL_OP_IGNORE_UNEXPECTED_EOF makes it
            // ZERO_RETURN); what is left is the socket's own error.
            let e = Syscall.lastError(call)
            ERR_clear_error()
            failedFatally = true
            return e.errno == 0 ? .closed : .failed(.system(e))
        default:
            failedFatally = true
            return .failed(.tls(reason()))
        }
    }

    /// OpenSSL's reason for a failed call, as SPEC §10 words verification failures.
    private func reason() -> String {
        var buf = [CChar](repeating: 0, count: 256)
        let code = gs_tls_last_error(&buf, buf.count)
        let text = code == 0 ? "TLS failure" : cString(buf)
        let result = Int32(SSL_get_verify_result(ssl))
        guard result != X509_V_OK else { return text }
        let info = verifyInfo?.pointee ?? gs_tls_verify_info()
        if result == X509_V_ERR_HOSTNAME_MISMATCH || result == X509_V_ERR_IP_ADDRESS_MISMATCH {
            let names = withUnsafeBytes(of: info.names) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            return "host name mismatch: certificate is for '\(names)', not '\(expectedName ?? "")'"
        }
        var message = "certificate verify failed: \(String(cString: X509_verify_cert_error_string(Int(result))))"
        switch result {
        case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT,
             X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN, X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
            let issuer = withUnsafeBytes(of: info.issuer) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            message += " (depth \(info.depth), issuer '\(issuer)')"
        default:
            break
        }
        return message
    }

    // MARK: - What LuaSec's conn methods report

    /// The peer's verification: nil when it verified, else the reasons.
    var verificationFailure: String? {
        let result = Int32(SSL_get_verify_result(ssl))
        if result == X509_V_OK && SSL_get0_peer_certificate(ssl) != nil { return nil }
        if result == X509_V_OK { return "no peer certificate" }
        return String(cString: X509_verify_cert_error_string(Int(result)))
    }

    var negotiatedProtocol: String? {
        var data: UnsafePointer<UInt8>?
        var length: UInt32 = 0
        SSL_get0_alpn_selected(ssl, &data, &length)
        guard let data, length > 0 else { return nil }
        return String(decoding: UnsafeBufferPointer(start: data, count: Int(length)), as: UTF8.self)
    }

    /// The subject of the peer's certificate ("/CN=client"), if it sent one.
    var peerSubject: String? {
        guard let cert = SSL_get0_peer_certificate(ssl) else { return nil }
        var buf = [CChar](repeating: 0, count: 512)
        X509_NAME_oneline(X509_get_subject_name(cert), &buf, Int32(buf.count))
        return cString(buf)
    }

    var version: String { String(cString: SSL_get_version(ssl)) }
    var cipher: String? { SSL_get_current_cipher(ssl).flatMap { SSL_CIPHER_get_name($0) }.map { String(cString: $0) } }
    /// The cipher's secret bits and its algorithm's bits (SSL_CIPHER_get_bits).
    var cipherBits: (bits: Int, algorithmBits: Int) {
        guard let c = SSL_get_current_cipher(ssl) else { return (0, 0) }
        var algorithmBits: Int32 = 0
        let bits = SSL_CIPHER_get_bits(c, &algorithmBits)
        return (Int(bits), Int(algorithmBits))
    }
    /// OpenSSL's one-line description of the cipher, which LuaSec's info() takes apart:
    /// "TLS_AES_256_GCM_SHA384  TLSv1.3 Kx=any  Au=any  Enc=AESGCM(256) Mac=AEAD".
    var cipherDescription: String? {
        guard let c = SSL_get_current_cipher(ssl) else { return nil }
        var buf = [CChar](repeating: 0, count: 256)
        guard SSL_CIPHER_description(c, &buf, Int32(buf.count)) != nil else { return nil }
        return cString(buf)
    }
    var requestedServerName: String? {
        SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name).map { String(cString: $0) }
    }

    /// Sends close_notify once, without waiting for the peer's (the descriptor is closing).
    /// Not when the peer is gone, as nginx does: a send failed because it reset or closed the
    /// connection (a client that closes right after the handshake makes the session tickets'
    /// send fail), or it closed the connection without a close_notify (a ragged EOF, as
    /// `openssl s_time` and python3's ssl do). A close_notify could not arrive, or would meet
    /// a closed socket and its reset; it costs an SSL_shutdown and a send. A peer that sent
    /// its close_notify gets ours.
    func willClose() {
        guard isEstablished else { return }
        isEstablished = false
        if gs_tls_peer_gone(ssl) != 0 { return }
        _ = gs_tls_flush(ssl)  // what the socket still takes: the descriptor is closing
        if failedFatally || gs_tls_peer_gone(ssl) != 0 { return }  // no close_notify after a fatal error
        if ERR_peek_error() != 0 { ERR_clear_error() }
        _ = SSL_shutdown(ssl)
        _ = gs_tls_flush(ssl)
        ERR_clear_error()
    }

    func isIdle(_ fd: Int32) -> Bool {
        guard isEstablished, !failedFatally, SSL_pending(ssl) == 0 else { return false }
        if ERR_peek_error() != 0 { ERR_clear_error() }
        var byte: UInt8 = 0, n = 0
        // SSL_peek reads the records that came (tickets, a close_notify) and consumes no data.
        let r = SSL_peek_ex(ssl, &byte, 1, &n)
        if r == 1 { return false }  // application data: not idle
        let error = gs_tls_error(ssl, r)
        ERR_clear_error()
        return error == SSL_ERROR_WANT_READ && pendingOutput == 0
    }

    /// What the pool key adds for a TLS connection: the context (its verification and client
    /// certificate) and the server name.
    /// The pool key of this client connection to `base` (an address): the context's
    /// settings, the server name and the DANE records count too.
    func poolKey(_ base: String) -> String {
        "\(base)\u{0}tls\u{0}\(context.identity)\u{0}\(poolKeyName ?? "")\u{0}\(daneKey)"
    }

    var poolKeyName: String? { serverName ?? expectedName }

    /// An SSL or system error ended the connection: OpenSSL must not be asked to shut down.
    private var failedFatally = false
}
