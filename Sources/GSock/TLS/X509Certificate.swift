// An X.509 certificate as LuaSec's x509 objects show it (SPEC §10).
import COpenSSL
import CTLS
import Glibc

final class X509Certificate {
    let cert: OpaquePointer

    /// Holds a reference of its own to `cert`.
    init(retaining cert: OpaquePointer) {
        X509_up_ref(cert)
        self.cert = cert
    }

    /// A certificate from PEM text, or nil.
    init?(pem: String) {
        guard let cert = pem.withCString({ gs_x509_load_pem($0, strlen($0)) }) else { return nil }
        self.cert = cert
    }

    deinit { X509_free(cert) }

    private func text(_ body: (UnsafeMutablePointer<CChar>, Int) -> Int32, size: Int = 256) -> String? {
        var buf = [CChar](repeating: 0, count: size)
        let n = buf.withUnsafeMutableBufferPointer { body($0.baseAddress!, $0.count) }
        return n < 0 ? nil : cString(buf)
    }

    var pem: String? {
        var out: UnsafeMutablePointer<CChar>?
        let n = gs_x509_pem(cert, &out)
        guard n >= 0, let out else { return nil }
        defer { free(out) }
        return String(decoding: UnsafeRawBufferPointer(start: out, count: n), as: UTF8.self)
    }

    /// The public key: PEM, its type's name ("RSA", "EC", ...) and its bits.
    var publicKey: (pem: String, type: String, bits: Int)? {
        var out: UnsafeMutablePointer<CChar>?
        var type = [CChar](repeating: 0, count: 16)
        var bits: Int32 = 0
        let n = gs_x509_pubkey(cert, &out, &type, type.count, &bits)
        guard n >= 0, let out else { return nil }
        defer { free(out) }
        return (String(decoding: UnsafeRawBufferPointer(start: out, count: n), as: UTF8.self), cString(type), Int(bits))
    }

    var notBefore: String? { text { gs_x509_time(cert, 0, $0, $1) } }
    var notAfter: String? { text { gs_x509_time(cert, 1, $0, $1) } }
    var serial: String? { text { gs_x509_serial(cert, $0, $1) } }
    var signatureName: String? { text { gs_x509_signature_name(cert, $0, $1) } }

    func digest(_ algorithm: String) -> String? {
        text({ out, size in algorithm.withCString { gs_x509_digest(cert, $0, out, size) } }, size: 160)
    }

    func isValid(at time: Int) -> Bool { gs_x509_valid_at(cert, time_t(time)) == 1 }

    /// The subject's or issuer's entries: (OID, long name, value).
    func name(issuer: Bool) -> [(oid: String, name: String, value: String)] {
        let which: Int32 = issuer ? 1 : 0
        var entries: [(String, String, String)] = []
        for i in 0..<max(0, gs_x509_name_count(cert, which)) {
            var oid = [CChar](repeating: 0, count: 80), name = [CChar](repeating: 0, count: 80)
            var value = [CChar](repeating: 0, count: 1024)
            if gs_x509_name_entry(cert, which, i, &oid, oid.count, &name, name.count, &value, value.count) >= 0 {
                entries.append((cString(oid), cString(name), cString(value)))
            }
        }
        return entries
    }

    /// The subjectAltName's DNS names and IP addresses.
    var alternativeNames: (dns: [String], ip: [String]) {
        func list(_ type: Int32) -> [String] {
            (text({ gs_x509_alt_names(cert, type, $0, $1) }, size: 4096) ?? "").split(separator: "\n").map(String.init)
        }
        return (list(0), list(1))
    }
}

extension TLSStream {
    /// The peer's certificate chain, leaf first (a server's own leaf is not in the chain a
    /// client sees from OpenSSL, so it is put first).
    var peerChain: [X509Certificate] {
        guard let leaf = SSL_get0_peer_certificate(ssl) else { return Self.certificates(in: SSL_get_peer_cert_chain(ssl)) }
        return [X509Certificate(retaining: leaf)] + Self.certificates(in: SSL_get_peer_cert_chain(ssl), except: leaf)
    }

    /// The certificates of an OpenSSL stack (retained), but `except`.
    private static func certificates(in stack: OpaquePointer?, except: OpaquePointer? = nil) -> [X509Certificate] {
        guard let stack else { return [] }
        return (0..<OPENSSL_sk_num(stack)).compactMap { i in
            guard let raw = OPENSSL_sk_value(stack, i) else { return nil }
            let cert = OpaquePointer(raw)
            if let except, X509_cmp(except, cert) == 0 { return nil }
            return X509Certificate(retaining: cert)
        }
    }

    var localCertificate: X509Certificate? { SSL_get_certificate(ssl).map { X509Certificate(retaining: $0) } }

    /// LuaSec's getlocalchain: the chain this end sends, with its own certificate first on
    /// a server only (LuaSec's rule: a client's list starts at the first chain certificate).
    var localChain: [X509Certificate] {
        let leaf = context.mode == .server ? localCertificate.map { [$0] } ?? [] : []
        return leaf + Self.certificates(in: gs_tls_local_chain(ssl))
    }
}
