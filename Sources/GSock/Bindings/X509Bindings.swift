// LuaSec's x509 objects (SPEC §10): `conn:getpeercertificate([n])`, `getpeerchain()`,
// `getlocalcertificate()` and `ssl.loadcertificate(pem)` give them; their methods read the
// certificate as LuaSec's do.
import CLua
import CShims
import Glibc

enum X509Bindings {
    static let metatable = "SSL:Certificate"

    static let methods: [(String, LuaBody)] = [
        ("pem", { L in luaCall(L, pem) }), ("digest", { L in luaCall(L, digest) }),
        ("subject", { L in luaCall(L, subject) }), ("issuer", { L in luaCall(L, issuer) }),
        ("notbefore", { L in luaCall(L, notbefore) }), ("notafter", { L in luaCall(L, notafter) }),
        ("serial", { L in luaCall(L, serial) }), ("getsignaturename", { L in luaCall(L, getsignaturename) }),
        ("extensions", { L in luaCall(L, extensions) }), ("validat", { L in luaCall(L, validat) }),
        ("pubkey", { L in luaCall(L, pubkey) }),
    ]

    /// The connection methods that give certificates.
    static let connectionMethods: [(String, LuaBody)] = [
        ("getpeercertificate", { L in luaCall(L, getpeercertificate) }),
        ("getpeerchain", { L in luaCall(L, getpeerchain) }),
        ("getlocalcertificate", { L in luaCall(L, getlocalcertificate) }),
        ("getlocalchain", { L in luaCall(L, getlocalchain) }),
    ]

    static func register(_ L: LuaState) {
        LuaObjects.register(L, metatable, methods: methods, extra: [("__tostring", tostringBody)])
    }

    private static let tostringBody: LuaBody = { L in luaCall(L, tostring) }

    static func push(_ L: LuaState, _ cert: X509Certificate) { LuaObjects.push(L, cert, kind: .x509) }

    private static func certificate(_ L: LuaState) throws(LuaError) -> X509Certificate {
        try Arg.object(L, 1, kind: .x509, as: X509Certificate.self, expected: metatable)
    }

    private static func pushOrNil(_ L: LuaState, _ text: String?) -> Int32 {
        if let text { lua_pushstring(L, text) } else { lua_pushnil(L) }
        return 1
    }

    // MARK: - Methods

    private static func pem(_ L: LuaState) throws(LuaError) -> Int32 { pushOrNil(L, try certificate(L).pem) }
    private static func notbefore(_ L: LuaState) throws(LuaError) -> Int32 { pushOrNil(L, try certificate(L).notBefore) }
    private static func notafter(_ L: LuaState) throws(LuaError) -> Int32 { pushOrNil(L, try certificate(L).notAfter) }
    private static func serial(_ L: LuaState) throws(LuaError) -> Int32 { pushOrNil(L, try certificate(L).serial) }
    private static func getsignaturename(_ L: LuaState) throws(LuaError) -> Int32 {
        pushOrNil(L, try certificate(L).signatureName)
    }

    /// `digest([algorithm])`: hex, SHA-1 by default as in LuaSec.
    private static func digest(_ L: LuaState) throws(LuaError) -> Int32 {
        let cert = try certificate(L)
        let algorithm = try Arg.optionalString(L, 2) ?? "sha1"
        guard let hex = cert.digest(algorithm) else { throw .argument(L, 2, "invalid digest algorithm '\(algorithm)'") }
        lua_pushstring(L, hex)
        return 1
    }

    private static func subject(_ L: LuaState) throws(LuaError) -> Int32 { pushName(L, try certificate(L), issuer: false) }
    private static func issuer(_ L: LuaState) throws(LuaError) -> Int32 { pushName(L, try certificate(L), issuer: true) }

    /// LuaSec's shape: a list of { oid =, name =, value = }.
    private static func pushName(_ L: LuaState, _ cert: X509Certificate, issuer: Bool) -> Int32 {
        let entries = cert.name(issuer: issuer)
        lua_createtable(L, Int32(entries.count), 0)
        for (i, entry) in entries.enumerated() {
            lua_createtable(L, 0, 3)
            for (key, value) in [("oid", entry.oid), ("name", entry.name), ("value", entry.value)] {
                lua_pushstring(L, value)
                luaRawSetField(L, -2, key)
            }
            lua_rawseti(L, -2, lua_Integer(i + 1))
        }
        return 1
    }

    /// The subjectAltName extension, as LuaSec lists it: `{ ["2.5.29.17"] = { name =
    /// "X509v3 Subject Alternative Name", dNSName = {...}, iPAddress = {...} } }`.
    private static func extensions(_ L: LuaState) throws(LuaError) -> Int32 {
        let names = try certificate(L).alternativeNames
        lua_createtable(L, 0, 1)
        guard !names.dns.isEmpty || !names.ip.isEmpty else { return 1 }
        lua_createtable(L, 0, 3)
        lua_pushstring(L, "X509v3 Subject Alternative Name")
        luaRawSetField(L, -2, "name")
        for (field, list) in [("dNSName", names.dns), ("iPAddress", names.ip)] where !list.isEmpty {
            lua_createtable(L, Int32(list.count), 0)
            for (i, name) in list.enumerated() {
                lua_pushstring(L, name)
                lua_rawseti(L, -2, lua_Integer(i + 1))
            }
            luaRawSetField(L, -2, field)
        }
        luaRawSetField(L, -2, "2.5.29.17")
        return 1
    }

    /// `pubkey()`: the public key as PEM, its type ("RSA", "DSA", "DH", "EC" or "Unknown")
    /// and its bits (an integer), as LuaSec's; nil when OpenSSL cannot write it.
    private static func pubkey(_ L: LuaState) throws(LuaError) -> Int32 {
        guard let key = try certificate(L).publicKey else {
            lua_pushnil(L)
            return 1
        }
        lua_pushstring(L, key.pem)
        lua_pushstring(L, key.type)
        lua_pushinteger(L, lua_Integer(key.bits))
        return 3
    }

    /// `validat(time)`: whether the certificate is valid at that Unix time.
    private static func validat(_ L: LuaState) throws(LuaError) -> Int32 {
        let cert = try certificate(L)
        let time = try Arg.integer(L, 2)
        lua_pushboolean(L, cert.isValid(at: time) ? 1 : 0)
        return 1
    }

    private static func tostring(_ L: LuaState) throws(LuaError) -> Int32 {
        let address = String(UInt(bitPattern: lua_touserdata(L, 1)), radix: 16)
        lua_pushstring(L, "X509 certificate: 0x\(address)")
        return 1
    }

    // MARK: - Where certificates come from

    /// `getpeercertificate([n])`: the n-th certificate of the peer's chain (1, the peer's own,
    /// by default), or nil; nil, "closed" before the handshake and after a close, as LuaSec.
    private static func getpeercertificate(_ L: LuaState) throws(LuaError) -> Int32 {
        guard let tls = try TLSBindings.established(L) else { return SocketBindings.fail(L, "closed") }
        return try pushCertificate(L, of: tls.peerChain)
    }

    /// The n-th (argument 2, 1 by default) of `chain`, or nil; LuaSec's nil, "invalid
    /// certificate index" below 1.
    private static func pushCertificate(_ L: LuaState, of chain: [X509Certificate]) throws(LuaError) -> Int32 {
        let n = try Arg.optionalInteger(L, 2) ?? 1
        if n < 1 { return SocketBindings.fail(L, "invalid certificate index") }
        guard n <= chain.count else {
            lua_pushnil(L)
            return 1
        }
        push(L, chain[n - 1])
        return 1
    }

    private static func getpeerchain(_ L: LuaState) throws(LuaError) -> Int32 {
        guard let tls = try TLSBindings.established(L) else { return SocketBindings.fail(L, "closed") }
        let chain = tls.peerChain
        guard !chain.isEmpty else {
            lua_pushnil(L)
            return 1
        }
        lua_createtable(L, Int32(chain.count), 0)
        for (i, cert) in chain.enumerated() {
            push(L, cert)
            lua_rawseti(L, -2, lua_Integer(i + 1))
        }
        return 1
    }

    /// `getlocalchain()`: the certificates this end sent (see TLSStream.localChain), a list
    /// (empty when it sent none); nil, "closed" before the handshake and after a close.
    private static func getlocalchain(_ L: LuaState) throws(LuaError) -> Int32 {
        guard let tls = try TLSBindings.established(L) else { return SocketBindings.fail(L, "closed") }
        let chain = tls.localChain
        lua_createtable(L, Int32(chain.count), 0)
        for (i, cert) in chain.enumerated() {
            push(L, cert)
            lua_rawseti(L, -2, lua_Integer(i + 1))
        }
        return 1
    }

    /// `getlocalcertificate([n])`: LuaSec 1.3's, the n-th certificate this end sent: its own
    /// (1, by default), then its chain's (from getlocalchain's list, whose rule it follows);
    /// nil, "closed" before the handshake and after a close.
    private static func getlocalcertificate(_ L: LuaState) throws(LuaError) -> Int32 {
        guard let tls = try TLSBindings.established(L) else { return SocketBindings.fail(L, "closed") }
        if (try Arg.optionalInteger(L, 2) ?? 1) == 1 {
            if let cert = tls.localCertificate { push(L, cert) } else { lua_pushnil(L) }
            return 1
        }
        return try pushCertificate(L, of: tls.localChain)
    }

    /// ssl.lua's `loadcertificate(pem)`: a certificate, or nil (LuaSec gives no reason).
    static let load: LuaBody = { L in luaCall(L, load) }
    private static func load(_ L: LuaState) throws(LuaError) -> Int32 {
        guard let cert = X509Certificate(pem: try Arg.string(L, 1)) else {
            lua_pushnil(L)
            return 1
        }
        push(L, cert)
        return 1
    }
}
