// TLS as a socket's transport: an SSL object over the socket's descriptor. Every OpenSSL
// call is tried first; its WANT_READ / WANT_WRITE becomes `.wait(direction)`, so the socket's
// operations park on the right watcher and everything above the transport (the receive
// buffer, patterns, timeouts, busy, close from another fiber) is the socket's own.
import COpenSSL
import CTLS
import Glibc

/// A client connection's newest TLS session, kept for resumption (OpenResty's session
/// object: `sslhandshake` returns it, and takes it back to resume).
final class TLSSession {
    let slot = UnsafeMutablePointer<gs_tls_session_slot>.allocate(capacity: 1)
    init() { slot.initialize(to: gs_tls_session_slot(session: nil)) }
    deinit {
        gs_tls_clear_session_slot(slot)
        slot.deallocate()
    }
}

final class TLSStream: Transport {
    let ssl: OpaquePointer
    let context: TLSContext
    /// The name the peer's certificate must be for (a client's), and the SNI sent.
    private(set) var expectedName: String?
    private(set) var serverName: String?
    /// The handshake finished: reads and writes carry application data.
    private(set) var isEstablished = false
    /// The direction the last OpenSSL call wanted (LuaSec's `want()`).
    private(set) var lastWant: Socket.Direction?
    private let verifyInfo = UnsafeMutablePointer<gs_tls_verify_info>.allocate(capacity: 1)
    /// A client's sessions, as the server sends them.
    let session = TLSSession()

    init(context: TLSContext, fd: Int32) throws(TLSError) {
        guard let ssl = SSL_new(context.ctx) else { throw .openSSL("cannot make a TLS connection") }
        self.ssl = ssl
        self.context = context
        SSL_set_fd(ssl, fd)
        gs_tls_set_verify(ssl, context.verifyMode, verifyInfo)
        if context.mode == .client {
            SSL_set_connect_state(ssl)
            gs_tls_set_session_slot(ssl, session.slot)
        } else {
            SSL_set_accept_state(ssl)
        }
    }

    /// Offers `previous`'s session for resumption (before the handshake).
    func resume(_ previous: TLSSession) {
        if let s = previous.slot.pointee.session { _ = SSL_set_session(ssl, s) }
    }

    /// Whether the handshake resumed a session.
    var wasResumed: Bool { SSL_session_reused(ssl) == 1 }

    deinit {
        SSL_free(ssl)
        verifyInfo.deallocate()
    }

    /// The server name to send (SNI) and to verify the certificate against: a host name or
    /// an IP literal (checked against the certificate's IP addresses, and sent as no SNI).
    func setServerName(_ name: String) {
        serverName = name
        expectedName = name
        if SocketAddress(numericHost: name, port: 0) == nil { _ = gs_tls_set_host_name(ssl, name) }
    }

    /// Sets the name to verify the peer against when none was set (the host connected to).
    func expectName(ifUnset name: String) {
        if expectedName == nil { expectedName = name }
    }

    // MARK: - Transport

    func read(_ fd: Int32, into buffer: UnsafeMutableRawPointer, count: Int) -> TransportResult {
        guard isEstablished else { return .closed }
        var n = 0
        let r = SSL_read_ex(ssl, buffer, count, &n)
        if r == 1 {
            lastWant = nil
            return .ok(n)
        }
        return failure(r, "SSL_read")
    }

    func write(_ fd: Int32, from bytes: UnsafeRawPointer, count: Int) -> TransportResult {
        guard isEstablished else { return .closed }
        var n = 0
        let r = SSL_write_ex(ssl, bytes, count, &n)
        if r == 1 {
            lastWant = nil
            return .ok(n)
        }
        return failure(r, "SSL_write")
    }

    var bufferedInput: Int { isEstablished ? Int(SSL_pending(ssl)) : 0 }

    // MARK: - The handshake

    /// Goes on with the handshake: `.ok(0)` once it is done.
    func handshake() -> TransportResult {
        if isEstablished { return .ok(0) }
        if ERR_peek_error() != 0 { ERR_clear_error() }
        if context.mode == .client, context.verifiesPeer, let name = expectedName, !isNameSet {
            isNameSet = true
            if SocketAddress(numericHost: name, port: 0) != nil {
                _ = gs_tls_use_ip_check(ssl, name)
            } else {
                _ = SSL_set1_host(ssl, name)
            }
        }
        let r = SSL_do_handshake(ssl)
        if r == 1 {
            isEstablished = true
            lastWant = nil
            return .ok(0)
        }
        return failure(r, "SSL_do_handshake")
    }

    private var isNameSet = false

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
            return e.errno == 0 ? .closed : .failed(.system(e))
        default:
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
        let info = verifyInfo.pointee
        if result == X509_V_ERR_HOSTNAME_MISMATCH || result == X509_V_ERR_IP_ADDRESS_MISMATCH {
            var names = [CChar](repeating: 0, count: 512)
            if let cert = SSL_get0_peer_certificate(ssl) { _ = gs_tls_certificate_names(cert, &names, names.count) }
            return "host name mismatch: certificate is for '\(cString(names))', not '\(expectedName ?? "")'"
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
    var cipherBits: Int {
        guard let c = SSL_get_current_cipher(ssl) else { return 0 }
        return Int(SSL_CIPHER_get_bits(c, nil))
    }
    var requestedServerName: String? {
        SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name).map { String(cString: $0) }
    }

    /// Sends close_notify once, without waiting for the peer's (the descriptor is closing).
    func willClose() {
        guard isEstablished else { return }
        isEstablished = false
        _ = SSL_shutdown(ssl)
        ERR_clear_error()
    }
}
