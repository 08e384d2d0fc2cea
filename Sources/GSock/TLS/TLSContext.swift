// A TLS context (SPEC §10): an SSL_CTX made from LuaSec's parameters, secure by default.
// A client context verifies its peer against the system CA store unless told otherwise,
// with depth 9 and TLS 1.2 as the minimum; every failure names its reason and, where
// there is one, the file.
import COpenSSL
import CTLS
import Glibc

/// A TLS failure in words a user can act on.
struct TLSError: Error, CustomStringConvertible {
    let message: String
    init(_ message: String) { self.message = message }
    var description: String { message }

    /// OpenSSL's reason for the last failure on this thread (its error queue is cleared).
    static func openSSL(_ what: String) -> TLSError {
        var buf = [CChar](repeating: 0, count: 256)
        let code = gs_tls_last_error(&buf, buf.count)
        return TLSError(code == 0 ? what : "\(what): \(cString(buf))")
    }
}

/// LuaSec's context parameters, read and type-checked by ssl.lua.
struct TLSParameters {
    var mode: TLSContext.Mode
    var protocolName = "any"
    var certificate: String?
    var key: String?
    var password: String?
    var cafile: String?
    var capath: String?
    /// LuaSec's verify flags; nil: the default (a client verifies its peer, a server does not).
    var verify: [String]?
    /// LuaSec's verifyext: "crl_check", "crl_check_chain"; "lsec_continue" and
    /// "lsec_ignore_purpose" (which would let a failed verification through) are taken and
    /// not applied: the handshake fails with its reason instead.
    var verifyExtensions: [String] = []
    var options: [String] = []
    var ciphers: String?
    var ciphersuites: String?
    var depth: Int?
    var curves: String?
    /// DH parameters (PEM) for a server's DHE suites: what LuaSec's dhparam function gave.
    var dhParameters: String?
    /// LuaSec's dane: nil (off), or its flags ("no_ee_namechecks").
    var dane: [String]?
    var alpn: [String] = []
    /// More certificate/key pairs (LuaSec's `certificates`: an RSA and an ECDSA one).
    var additionalCertificates: [(certificate: String, key: String, password: String?)] = []
    /// A certificate chain and key as PEM text instead of files (setclientcert).
    var pem: (certificate: String, key: String)?
    /// A server's certificates chosen by the client's SNI name: each for its names ("*.x"
    /// matches one label); other names get `certificate`.
    var sniCertificates: [SNICertificate] = []
}

struct SNICertificate {
    var names: [String]
    var certificate: String
    var key: String
    var password: String?
}

private func environment(_ name: String) -> String? { getenv(name).map { String(cString: $0) } }

final class TLSContext {
    enum Mode: String { case client, server }

    /// LuaSec's words, then the files (which LuaSec does not name).
    static let keyMismatch = "private key does not match public key"
    static func keyMismatch(key: String, certificate: String) -> TLSError {
        TLSError("\(keyMismatch) (key '\(key)', certificate '\(certificate)')")
    }

    let ctx: OpaquePointer
    let mode: Mode
    /// SSL_VERIFY_* flags the connections of this context verify with.
    let verifyMode: Int32
    var verifiesPeer: Bool { verifyMode & SSL_VERIFY_PEER != 0 }
    /// `verify = "none"` on a client is logged once per context.
    var loggedNoVerification = false
    /// What tells this context's connections and sessions apart in the connection pool and
    /// the session store: the digest of its parameters and files (64 hex digits).
    let identity: String
    /// The contexts of sniCertificates (OpenSSL holds them too, as long as this one).
    private var sniContexts: [TLSContext] = []

    /// The SHA-256 of a context's settings and of the files it loaded (certificates, keys,
    /// CAs), as nginx digests its certificates and client CA names for its session id
    /// context. A session resumes only where a context would make the same one: after a
    /// reload to another certificate or CA file, or on another service, the handshake is
    /// full (and the client sees the new certificate); a client does not resume a session
    /// verified against a CA file since replaced. OpenSSL reads a capath lazily, at
    /// verification: its entries count by name and stat. The system store counts by its
    /// stamp (`systemStoreStamp`).
    private static func digest(_ p: TLSParameters, settings: String, systemStore: String?) -> [UInt8] {
        var bytes = Array(settings.utf8)
        let files = [p.certificate, p.key, p.cafile].compactMap { $0 }
            + p.additionalCertificates.flatMap { [$0.certificate, $0.key] }
        for path in files {
            bytes.append(0)
            if case .success(let text) = FilePaths.read(path) { bytes += text.utf8 }
        }
        if let capath = p.capath { bytes += "\u{0}\(directoryStamp(capath))".utf8 }
        if let systemStore { bytes += "\u{0}\(systemStore)".utf8 }
        var digest = [UInt8](repeating: 0, count: 32)
        gs_tls_sha256(bytes, bytes.count, &digest)
        return digest
    }

    init(_ p: TLSParameters) throws(TLSError) {
        // A failure names the first error in the thread's queue: none may be left from
        // earlier (CI once reported a stale "unsupported" for a wrong key password).
        ERR_clear_error()
        guard let ctx = SSL_CTX_new(TLS_method()) else { throw .openSSL("cannot make a TLS context") }
        self.ctx = ctx
        mode = p.mode
        var built: (verify: Int32, ok: Bool) = (0, false)
        defer { if !built.ok { SSL_CTX_free(ctx) } }

        try Self.setProtocol(ctx, p.protocolName)
        var options = gs_tls_base_options()
        for name in p.options {
            var bit: UInt64 = 0
            guard gs_tls_option(name, &bit) == 1 else { throw TLSError("invalid option (\(name))") }
            options |= bit
        }
        _ = SSL_CTX_set_options(ctx, options)
        // An idle connection keeps no record buffers (RELEASE_BUFFERS), as nginx does.
        _ = gs_tls_set_mode(ctx, Int(SSL_MODE_ENABLE_PARTIAL_WRITE) | Int(SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER)
                                 | Int(SSL_MODE_RELEASE_BUFFERS))

        gs_tls_set_password(ctx, p.password)
        if let certificate = p.certificate {
            try Self.readable(certificate, "certificate")
            guard SSL_CTX_use_certificate_chain_file(ctx, certificate) == 1 else {
                throw .openSSL("error loading certificate '\(certificate)'")
            }
        }
        if let key = p.key {
            try Self.readable(key, "key")
            guard SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) == 1 else {
                let error = TLSError.openSSL("error loading private key '\(key)'")
                if let certificate = p.certificate, error.message.hasSuffix("key values mismatch") {
                    throw Self.keyMismatch(key: key, certificate: certificate)
                }
                throw error
            }
            if let certificate = p.certificate, SSL_CTX_check_private_key(ctx) != 1 {
                ERR_clear_error()
                throw Self.keyMismatch(key: key, certificate: certificate)
            }
        }

        for extra in p.additionalCertificates {
            gs_tls_set_password(ctx, extra.password ?? p.password)
            try Self.readable(extra.certificate, "certificate")
            try Self.readable(extra.key, "key")
            guard SSL_CTX_use_certificate_chain_file(ctx, extra.certificate) == 1 else {
                throw .openSSL("error loading certificate '\(extra.certificate)'")
            }
            guard SSL_CTX_use_PrivateKey_file(ctx, extra.key, SSL_FILETYPE_PEM) == 1,
                  SSL_CTX_check_private_key(ctx) == 1 else {
                ERR_clear_error()
                throw Self.keyMismatch(key: extra.key, certificate: extra.certificate)
            }
        }
        gs_tls_set_password(ctx, p.password)
        if let pem = p.pem {
            let ok = pem.certificate.withCString { c in
                pem.key.withCString { k in gs_tls_use_pem(ctx, c, strlen(c), k, strlen(k)) }
            }
            guard ok == 1 else { throw .openSSL("invalid client certificate or key (PEM)") }
        }
        if p.mode == .client { gs_tls_enable_client_sessions(ctx) }
        if p.mode == .server {
            let keys = TicketKeys.shared
            _ = keys.withUnsafeBufferPointer { gs_tls_set_ticket_keys(ctx, $0.baseAddress, $0.count) }
        }

        built.verify = try Self.verifyMode(p.verify, mode: p.mode)
        try Self.applyVerifyExtensions(ctx, p.verifyExtensions)
        var systemStore: String?   // its stamp, when the context verifies with it
        if p.cafile != nil || p.capath != nil {
            if let cafile = p.cafile { try Self.readable(cafile, "cafile") }
            guard SSL_CTX_load_verify_locations(ctx, p.cafile, p.capath) == 1 else {
                throw .openSSL("error loading CA locations (\([p.cafile, p.capath].compactMap { $0 }.joined(separator: ", ")))")
            }
            // A server asks for client certificates issued by these CAs (mTLS).
            if p.mode == .server, let cafile = p.cafile, let names = SSL_load_client_CA_file(cafile) {
                SSL_CTX_set_client_CA_list(ctx, names)
            }
        } else if built.verify & SSL_VERIFY_PEER != 0 {
            let stamp = Self.systemStoreStamp()
            try Self.useSystemStore(ctx, stamp: stamp)
            systemStore = stamp
        }
        SSL_CTX_set_verify_depth(ctx, Int32(clamping: p.depth ?? 9))
        // A server's single certificate without chain certificates: its chain from the store
        // is built now, not at every handshake (an X509_verify_cert each; nginx's handshakes
        // make none).
        if p.mode == .server && p.certificate != nil && p.additionalCertificates.isEmpty && p.pem == nil {
            gs_tls_prebuild_chain(ctx)
        }

        if let ciphers = p.ciphers, SSL_CTX_set_cipher_list(ctx, ciphers) != 1 {
            throw .openSSL("invalid ciphers '\(ciphers)'")
        }
        if let suites = p.ciphersuites, SSL_CTX_set_ciphersuites(ctx, suites) != 1 {
            throw .openSSL("invalid ciphersuites '\(suites)'")
        }
        if let curves = p.curves, gs_tls_set_groups(ctx, curves) != 1 {
            throw .openSSL("invalid curves '\(curves)'")
        }
        if let dane = p.dane, gs_tls_dane_enable(ctx, dane.contains("no_ee_namechecks") ? 1 : 0) != 1 {
            throw .openSSL("cannot enable DANE")
        }
        if let dh = p.dhParameters {
            switch dh.withCString({ gs_tls_use_dh_params(ctx, $0, strlen($0)) }) {
            case 1: break
            case 0: throw TLSError("invalid dhparam (the function returned no PEM DH parameters)")
            default: throw TLSError("invalid dhparam (OpenSSL refused the DH parameters: too small for its security level)")
            }
        }
        if !p.alpn.isEmpty {
            var wire: [UInt8] = []
            for name in p.alpn {
                guard !name.isEmpty, name.utf8.count < 256 else { throw TLSError("invalid ALPN protocol '\(name)'") }
                wire.append(UInt8(name.utf8.count))
                wire.append(contentsOf: name.utf8)
            }
            let ok = p.mode == .client
                ? SSL_CTX_set_alpn_protos(ctx, wire, UInt32(wire.count)) == 0
                : gs_tls_set_alpn_select(ctx, wire, UInt32(wire.count)) == 1
            guard ok else { throw .openSSL("cannot set ALPN") }
        }
        if let path = environment("SSLKEYLOGFILE"), !path.isEmpty { _ = gs_tls_set_keylog_file(ctx, path) }
        let dane: String = p.dane.map { "dane:" + $0.joined(separator: ",") } ?? ""
        let settings = [p.mode.rawValue, p.protocolName, p.certificate ?? "", p.key ?? "", p.cafile ?? "", p.capath ?? "",
                    (p.verify ?? ["default"]).joined(separator: ","), p.verifyExtensions.joined(separator: ","),
                    p.options.joined(separator: ","), p.ciphers ?? "",
                    p.ciphersuites ?? "", p.depth.map(String.init) ?? "", p.curves ?? "", p.alpn.joined(separator: ","),
                    p.dhParameters ?? "", dane, p.pem.map { $0.certificate + $0.key } ?? ""].joined(separator: "\u{1}")
        let digest = Self.digest(p, settings: settings, systemStore: systemStore)
        identity = digest.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
        if p.mode == .server { _ = gs_tls_set_session_id_context(ctx, digest, UInt32(digest.count)) }
        // Set last: once every stored property is, a throw would run deinit too, and the
        // defer above must stay the only one to free ctx.
        verifyMode = built.verify
        built.ok = true
        for entry in p.sniCertificates {
            var q = p
            q.sniCertificates = []
            (q.certificate, q.key, q.password) = (entry.certificate, entry.key, entry.password ?? p.password)
            let child = try TLSContext(q)
            sniContexts.append(child)
            for name in entry.names where gs_tls_add_sni_context(ctx, name, child.ctx) != 1 {
                throw TLSError("cannot add the certificate of '\(name)'")
            }
        }
    }

    deinit { SSL_CTX_free(ctx) }

    /// Why the chain of a certificate file does not hold together ("certificate 2 did not
    /// issue certificate 1"), or nil.
    static func chainProblem(ofCertificateFile path: String) -> String? {
        guard case .success(let text) = FilePaths.read(path) else { return nil }
        let position = text.withCString { gs_x509_chain_break($0, strlen($0)) }
        guard position > 0 else { return nil }
        return "the chain in '\(path)' is broken: certificate \(position + 1) did not issue certificate \(position)"
    }

    /// Whole days until the first certificate of a PEM file expires (negative: it has).
    static func daysUntilExpiry(ofCertificateFile path: String) -> Int? {
        guard case .success(let text) = FilePaths.read(path), let cert = X509Certificate(pem: text) else { return nil }
        var days: Int32 = 0, seconds: Int32 = 0
        guard ASN1_TIME_diff(&days, &seconds, nil, X509_get0_notAfter(cert.cert)) == 1 else { return nil }
        return Int(days)
    }

    /// "any" is TLS 1.2 or newer; older protocols are refused.
    private static func setProtocol(_ ctx: OpaquePointer, _ name: String) throws(TLSError) {
        let range: (min: Int32, max: Int32)
        switch name {
        case "any", "sslv23", "tls": range = (TLS1_2_VERSION, 0)
        case "tlsv1_2": range = (TLS1_2_VERSION, TLS1_2_VERSION)
        case "tlsv1_3": range = (TLS1_3_VERSION, TLS1_3_VERSION)
        case "tlsv1", "tlsv1_1", "sslv3", "sslv2":
            throw TLSError("protocol '\(name)' is not supported: TLS 1.2 is the minimum")
        default:
            throw TLSError("invalid protocol (\(name))")
        }
        _ = gs_tls_set_min_version(ctx, range.min)
        _ = gs_tls_set_max_version(ctx, range.max)
    }

    private static func verifyMode(_ flags: [String]?, mode: Mode) throws(TLSError) -> Int32 {
        guard let flags else { return mode == .client ? SSL_VERIFY_PEER : SSL_VERIFY_NONE }
        var result = SSL_VERIFY_NONE
        for flag in flags {
            switch flag {
            case "none": break
            case "peer": result |= SSL_VERIFY_PEER
            case "client_once": result |= SSL_VERIFY_CLIENT_ONCE
            case "fail_if_no_peer_cert": result |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT
            default: throw TLSError("invalid verify option (\(flag))")
            }
        }
        return result
    }

    /// LuaSec's verifyext names, with its error for another. CRL checks need the CRLs in
    /// the cafile or capath: without them verification fails ("unable to get certificate
    /// CRL"), as OpenSSL's does.
    private static func applyVerifyExtensions(_ ctx: OpaquePointer, _ names: [String]) throws(TLSError) {
        var flags: UInt = 0
        for name in names {
            switch name {
            case "lsec_continue", "lsec_ignore_purpose": break
            case "crl_check": flags |= UInt(X509_V_FLAG_CRL_CHECK)
            case "crl_check_chain": flags |= UInt(X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL)
            default: throw TLSError("invalid verify option (\(name))")
            }
        }
        if flags != 0 { _ = X509_VERIFY_PARAM_set_flags(SSL_CTX_get0_param(ctx), flags) }
    }

    /// The system CA store, as SSL_CERT_FILE / SSL_CERT_DIR or OpenSSL's defaults name it.
    private static var systemStorePaths: (file: String, dir: String) {
        (environment("SSL_CERT_FILE") ?? String(cString: X509_get_default_cert_file()),
         environment("SSL_CERT_DIR") ?? String(cString: X509_get_default_cert_dir()))
    }

    /// A file's identity and version: device, inode, size and modification time (the
    /// target's, for a link), or "-" when it cannot be read.
    private static func stamp(_ path: String) -> String {
        var st = stat()
        guard stat(path, &st) == 0 else { return "-" }
        return "\(st.st_dev).\(st.st_ino).\(st.st_size).\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)"
    }

    /// A CA directory's path and its entries, by name and stamp.
    private static func directoryStamp(_ dir: String) -> String {
        dir + (entryNames(dir) ?? []).sorted().map { "\u{2}\($0)\u{1}\(stamp(dir + "/" + $0))" }.joined()
    }

    /// What the system store's file and directories are now: their stamps, the directories'
    /// own (update-ca-certificates rewrites the file and relinks the directory's entries,
    /// which changes it); stamping its hundreds of entries would cost 1 ms a context.
    private static func systemStoreStamp() -> String {
        let (file, dir) = systemStorePaths
        return ([file] + dir.split(separator: ":").map(String.init)).map { $0 + "\u{1}" + stamp($0) }
            .joined(separator: "\u{2}")   // no NUL: C compares it as a string
    }

    private static func useSystemStore(_ ctx: OpaquePointer, stamp: String) throws(TLSError) {
        let (file, dir) = systemStorePaths
        let hasFile = access(file, R_OK) == 0
        let hasDir = dir.split(separator: ":").contains { hasEntries(String($0)) }
        guard hasFile || hasDir else {
            throw TLSError("no CA certificates found (install ca-certificates or set SSL_CERT_FILE)")
        }
        guard gs_tls_use_system_store(ctx, stamp) == 1 else { throw .openSSL("cannot load the system CA store") }
    }

    /// Whether `dir` is a directory with at least one entry besides . and .. (it stops at
    /// the first: the system directory has hundreds, and this runs for every context).
    private static func hasEntries(_ dir: String) -> Bool { !(entryNames(dir, atMost: 1)?.isEmpty ?? true) }

    /// The names in directory `dir` but . and .. (the first `atMost`), or nil when it
    /// cannot be read.
    private static func entryNames(_ dir: String, atMost limit: Int = .max) -> [String]? {
        guard let d = opendir(dir) else { return nil }
        defer { closedir(d) }
        var names: [String] = []
        while names.count < limit, let entry = readdir(d) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    private static func readable(_ path: String, _ what: String) throws(TLSError) {
        guard access(path, R_OK) == 0 else {
            throw TLSError("cannot read \(what) '\(path)': \(Syscall.lastErrorText())")
        }
    }
}

/// The session ticket keys of every server context of the process group: a supervisor makes
/// them and its workers ask for them over the worker channel (not the environment, which
/// /proc shows), so a session resumes on any worker (and across a SIGHUP, which makes the
/// contexts again).
enum TicketKeys {
    static let length = 80

    /// The supervisor's keys for a worker, else new random ones (made once per process).
    nonisolated(unsafe) static let shared: [UInt8] = {
        if let (text, _) = WorkerChannel.request("ticket-keys"), let keys = decode(text) { return keys }
        return random()
    }()

    static func random() -> [UInt8] {
        var keys = [UInt8](repeating: 0, count: length)
        _ = RAND_bytes(&keys, Int32(length))
        return keys
    }

    static func encode(_ keys: [UInt8]) -> String {
        keys.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
    }

    static func decode(_ text: String) -> [UInt8]? {
        let digits = Array(text.utf8)
        guard digits.count == 2 * length else { return nil }
        var keys: [UInt8] = []
        for i in stride(from: 0, to: digits.count, by: 2) {
            guard let byte = UInt8(String(decoding: digits[i..<i + 2], as: UTF8.self), radix: 16) else { return nil }
            keys.append(byte)
        }
        return keys
    }
}
