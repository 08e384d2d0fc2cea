// `require "ssl"` (SPEC §10): the Swift side of ssl.lua. Contexts are TLSContext objects;
// `wrap` moves a connected socket's descriptor into a new socket object of class
// SSL:Connection whose transport is TLS, so receive, send, timeouts, select and close are the
// stream socket's own methods. OpenResty's `sslhandshake` gives a tcp{client} the same
// transport in place.
import CLibev
import CLua
import COpenSSL
import CShims
import CTLS
import Glibc

enum TLSBindings {
    static let contextMetatable = "SSL:Context"
    static let sessionMetatable = "SSL:Session"

    /// ssl.lua's `c` table.
    static let functions: [(String, LuaBody)] = [("newcontext", { L in luaCall(L, newcontext) }),
                                                 ("wrap", { L in luaCall(L, wrap) }),
                                                 ("loadcertificate", X509Bindings.load)]

    /// SSL:Connection's own methods, beside the stream socket's.
    static let connectionMethods: [(String, LuaBody)] = [
        ("dohandshake", { L in luaCall(L, dohandshake) }), ("sni", { L in luaCall(L, sni) }),
        ("getsniname", { L in luaCall(L, getsniname) }),
        ("getpeerverification", { L in luaCall(L, getpeerverification) }),
        ("getalpn", { L in luaCall(L, getalpn) }), ("info", { L in luaCall(L, info) }),
        ("want", { L in luaCall(L, want) }),
        ("setdane", { L in luaCall(L, setdane) }), ("settlsa", { L in luaCall(L, settlsa) }),
        ("getfinished", { L in luaCall(L) { L throws(LuaError) in try finished(L, peer: false) } }),
        ("getpeerfinished", { L in luaCall(L) { L throws(LuaError) in try finished(L, peer: true) } }),
        ("exportkeyingmaterial", { L in luaCall(L, exportkeyingmaterial) }),
    ] + X509Bindings.connectionMethods

    /// OpenResty's verbs on plain tcp{client} sockets, and the servers' in-place TLS
    /// (server.lua: `_tlshandshake(ctx, handshake_timeout)` then `_tlsinfo()` for the handler's
    /// peer.tls).
    static let tcpMethods: [(String, LuaBody)] = [
        ("sslhandshake", { L in luaCall(L, sslhandshake) }), ("setclientcert", { L in luaCall(L, setclientcert) }),
        ("_tlshandshake", { L in luaCall(L, tlshandshake) }), ("_tlsinfo", { L in luaCall(L, tlsinfo) }),
    ]

    static func register(_ L: LuaState) {
        LuaObjects.register(L, contextMetatable, methods: [], extra: [("__tostring", contextToString)])
        LuaObjects.register(L, sessionMetatable, methods: [])
        X509Bindings.register(L)
    }

    // MARK: - Contexts

    /// LuaSec's "SSL context: 0x...".
    private static let contextToString: LuaBody = { L in
        lua_pushstring(L, "SSL context: 0x\(String(UInt(bitPattern: lua_touserdata(L, 1)), radix: 16))")
        return 1
    }

    /// `newcontext(params)` with params as ssl.lua normalized them (strings and lists of
    /// strings): a context, or nil and the reason.
    private static func newcontext(_ L: LuaState) throws(LuaError) -> Int32 {
        guard lua_type(L, 1) == LUA_TTABLE else { throw .type(L, 1, "table") }
        let mode: TLSContext.Mode
        switch stringField(L, "mode") {
        case "client": mode = .client
        case "server": mode = .server
        case nil: return SocketBindings.fail(L, "missing mode")
        case let other?: return SocketBindings.fail(L, "invalid mode '\(other)'")
        }
        var p = TLSParameters(mode: mode)
        p.protocolName = stringField(L, "protocol") ?? "any"
        p.certificate = stringField(L, "certificate")
        p.key = stringField(L, "key")
        p.password = stringField(L, "password")
        p.cafile = stringField(L, "cafile")
        p.capath = stringField(L, "capath")
        p.verify = listField(L, "verify")
        p.verifyExtensions = listField(L, "verifyext") ?? []
        p.options = listField(L, "options") ?? []
        p.ciphers = stringField(L, "ciphers")
        p.ciphersuites = stringField(L, "ciphersuites")
        p.curves = stringField(L, "curves")
        p.dhParameters = stringField(L, "dhparam")
        p.dane = listField(L, "dane")
        p.alpn = listField(L, "alpn") ?? []
        if luaRawGetField(L, 1, "depth") == LUA_TNUMBER { p.depth = Int(lua_tointegerx(L, -1, nil)) }
        gs_pop(L, 1)
        p.sniCertificates = sniCertificates(L)
        p.additionalCertificates = additionalCertificates(L)
        do {
            let context = try TLSContext(p)
            LuaObjects.push(L, context, kind: .tlsContext)
            return 1
        } catch {
            return SocketBindings.fail(L, error.message)
        }
    }

    private static func stringField(_ L: LuaState, _ name: String, of table: Int32 = 1) -> String? {
        defer { gs_pop(L, 1) }
        return luaRawGetField(L, table, name) == LUA_TSTRING ? luaString(L, -1) : nil
    }

    private static func listField(_ L: LuaState, _ name: String, of table: Int32 = 1) -> [String]? {
        defer { gs_pop(L, 1) }
        guard luaRawGetField(L, table, name) == LUA_TTABLE else { return nil }
        var list: [String] = []
        var i: lua_Integer = 1
        while lua_rawgeti(L, -1, i) == LUA_TSTRING {
            list.append(luaString(L, -1) ?? "")
            gs_pop(L, 1)
            i += 1
        }
        gs_pop(L, 1)
        return list
    }

    /// LuaSec's `certificates`, as ssl.lua checked it: a list of { certificate, key [, password] }.
    private static func additionalCertificates(_ L: LuaState) -> [(certificate: String, key: String, password: String?)] {
        defer { gs_pop(L, 1) }
        guard luaRawGetField(L, 1, "certificates") == LUA_TTABLE else { return [] }
        var result: [(certificate: String, key: String, password: String?)] = []
        var i: lua_Integer = 1
        while lua_rawgeti(L, -1, i) == LUA_TTABLE {
            let entry = lua_gettop(L)
            if let certificate = stringField(L, "certificate", of: entry), let key = stringField(L, "key", of: entry) {
                result.append((certificate, key, stringField(L, "password", of: entry)))
            }
            gs_pop(L, 1)
            i += 1
        }
        gs_pop(L, 1)
        return result
    }

    /// `sni_certificates`, as ssl.lua checked it: a list of { names, certificate, key [, password] }.
    private static func sniCertificates(_ L: LuaState) -> [SNICertificate] {
        defer { gs_pop(L, 1) }
        guard luaRawGetField(L, 1, "sni_certificates") == LUA_TTABLE else { return [] }
        var result: [SNICertificate] = []
        var i: lua_Integer = 1
        while lua_rawgeti(L, -1, i) == LUA_TTABLE {
            let entry = lua_gettop(L)
            if let certificate = stringField(L, "certificate", of: entry), let key = stringField(L, "key", of: entry) {
                result.append(SNICertificate(names: listField(L, "names", of: entry) ?? [], certificate: certificate,
                                             key: key, password: stringField(L, "password", of: entry)))
            }
            gs_pop(L, 1)
            i += 1
        }
        gs_pop(L, 1)
        return result
    }

    // MARK: - wrap

    /// `wrap(sock, ctx)`: a new SSL:Connection on sock's descriptor; sock is left without one.
    private static func wrap(_ L: LuaState) throws(LuaError) -> Int32 {
        guard let old = SocketBindings.get(L, 1), old.socketClass.isStream, old.socketClass != .tlsConnection else {
            throw .type(L, 1, "tcp{client}")
        }
        guard let context = LuaObjects.get(L, 2, kind: .tlsContext, as: TLSContext.self) else {
            throw .type(L, 2, contextMetatable)
        }
        if old.isClosed { return SocketBindings.fail(L, "closed") }
        if old.isReceiving || old.isSending { return SocketBindings.fail(L, "busy") }
        if old.transport != nil { return SocketBindings.fail(L, "already TLS") }
        // Bytes read before the handshake are not the peer's TLS: refuse rather than lose them.
        if !old.buffer.isEmpty { return SocketBindings.fail(L, "unread data in buffer") }
        let host = old.clientState.connectHost
        let family = old.family
        let fd = old.detachDescriptor()
        old.close()  // unusable from now on, as with LuaSec, and no longer an open resource
        if old.runtime.tracksResources { SocketBindings.track(L, 1, open: false) }
        let conn = Socket(runtime: old.runtime, fd: fd, family: family, socketClass: .tlsConnection)
        conn.clientState.poolKey = old.clientState.poolKey  // a pooled TLS connection may stand in
        conn.clientState.connectHost = host
        // An accepted connection stays its service's in /metrics (open, bytes) as a TLS one.
        conn.metrics = old.metrics
        old.metrics = nil
        do {
            let tls = try TLSStream(context: context, fd: fd)
            if let host { tls.expectName(ifUnset: host) }
            conn.transport = tls
        } catch {
            conn.close()
            return SocketBindings.fail(L, error.message)
        }
        SocketBindings.push(L, conn)
        return 1
    }

    // MARK: - Handshakes

    /// The SSL:Connection at index 1 and its TLS; nil TLS once the connection went to the pool.
    static func tlsConnection(_ L: LuaState) throws(LuaError) -> (Socket, TLSStream?) {
        guard let s = SocketBindings.get(L, 1), s.socketClass == .tlsConnection else {
            throw .type(L, 1, "SSL:Connection")
        }
        return (s, s.tls)
    }

    /// `conn:dohandshake()` → true, or false and the reason. The handshake is bounded in
    /// total by the socket's timeout; when it fails or times out the connection is closed.
    /// With a timeout of 0 it is LuaSec's non-blocking step: "wantread"/"wantwrite" and the
    /// handshake goes on at the next call.
    private static func dohandshake(_ L: LuaState) throws(LuaError) -> Int32 {
        let (s, found) = try tlsConnection(L)
        guard let tls = found, !s.isClosed else { return failHandshake(L, "closed") }
        if tls.isEstablished || s.beginClientTLS(tls) {
            lua_pushboolean(L, 1)
            return 1
        }
        if s.isReceiving || s.isSending { return failHandshake(L, "busy") }
        logIfUnverified(s, tls)
        s.receiveDeadline = s.handshakeDeadline()
        return handshakeStep(L, s, luaSec: true)
    }

    private static func handshakeStep(_ L: LuaState, _ s: Socket, luaSec: Bool) -> Int32 {
        switch s.handshake() {
        case .done:
            s.runtime.tlsHandshakes += 1
            if let m = s.metrics { m.tlsSucceeded += 1 }
            if s.tls?.wasResumed == true { s.runtime.tlsResumptions += 1 }
            if luaSec {
                lua_pushboolean(L, 1)
                return 1
            }
            return sslhandshakeDone(L, s)
        case .wait(let direction):
            let nonBlocking = luaSec && s.handshakeLimit == 0
            return StreamBindings.park(L, s, direction, deadline: s.receiveDeadline, what: luaSec ? "dohandshake" : "sslhandshake",
                                       then: luaSec ? dohandshakeContinue : sslhandshakeContinue) {
                if nonBlocking { return failHandshake(L, direction == .read ? "wantread" : "wantwrite") }
                return handshakeFailed(L, s, luaSec: luaSec, luaSec ? (direction == .read ? "wantread" : "wantwrite") : "timeout")
            }
        case .failed(let failure):
            return handshakeFailed(L, s, luaSec: luaSec, StreamBindings.message(for: failure))
        }
    }

    private static let dohandshakeContinue: LuaBody = { L in continueHandshake(L!, luaSec: true) }
    private static let sslhandshakeContinue: LuaBody = { L in continueHandshake(L!, luaSec: false) }

    private static func continueHandshake(_ L: LuaState, luaSec: Bool) -> Int32 {
        SocketBindings.withSocket(L) { s in
            switch s.withRuntime({ $0.takeWake(L) }) {
            case .raise(let status):
                s.close()
                return status
            case .woken(let wake):
                if s.isClosed { return handshakeFailed(L, s, luaSec: luaSec, "closed") }
                if case .timedOut = wake {
                    let words = luaSec ? (s.parkedDirection == .read ? "wantread" : "wantwrite") : "timeout"
                    return handshakeFailed(L, s, luaSec: luaSec, words)
                }
                return handshakeStep(L, s, luaSec: luaSec)
            }
        }
    }

    /// A failed or timed-out handshake closes the connection: no code runs on half a handshake.
    private static func handshakeFailed(_ L: LuaState, _ s: Socket, luaSec: Bool, _ message: String) -> Int32 {
        s.runtime.tlsHandshakeFailures += 1
        if let m = s.metrics { m.tlsFailed += 1 }
        s.close()
        // Closed here, not by its Lua close: gsockd test must not list it as left open.
        if s.runtime.tracksResources && SocketBindings.get(L, 1) === s { SocketBindings.track(L, 1, open: false) }
        return luaSec ? failHandshake(L, message) : SocketBindings.fail(L, message)
    }

    /// LuaSec's `false, message`.
    private static func failHandshake(_ L: LuaState, _ message: String) -> Int32 {
        lua_pushboolean(L, 0)
        lua_pushstring(L, message)
        return 2
    }

    private static func logIfUnverified(_ s: Socket, _ tls: TLSStream) {
        let context = tls.context
        guard context.mode == .client, !context.verifiesPeer, !context.loggedNoVerification else { return }
        context.loggedNoVerification = true
        s.runtime.logger.warning("TLS: this client context does not verify its peers (verify = \"none\")")
    }

    /// OpenResty's `sock:sslhandshake([reused_session [, server_name [, ssl_verify
    /// [, send_status_req]]]])` on a connected tcp{client}: the same object speaks TLS
    /// afterwards. Returns the session (to resume with next time), true when reused_session
    /// is false, or nil and the reason. send_status_req asks for a stapled OCSP response.
    private static func sslhandshake(_ L: LuaState) throws(LuaError) -> Int32 {
        let s = try plainClient(L)
        let reused = LuaObjects.get(L, 2, kind: .tlsSession, as: TLSSession.self)
        if reused == nil && !luaIsNoneOrNil(L, 2) && lua_type(L, 2) != LUA_TBOOLEAN { throw .type(L, 2, sessionMetatable) }
        let serverName = luaIsNoneOrNil(L, 3) ? nil : try Arg.string(L, 3)
        let verify = luaIsNoneOrNil(L, 4) || lua_toboolean(L, 4) != 0
        let requestsStatus = lua_toboolean(L, 5) != 0
        let certificate = s.clientState.clientCertificate
        return try startHandshake(L, s) { () throws(TLSError) in
            let context = try s.runtime.defaultClientContext(verifying: verify, certificate: certificate)
            let tls = try TLSStream(context: context, fd: s.fd)
            if let serverName { tls.setServerName(serverName) }
            if let reused { tls.resume(reused) }
            if requestsStatus { tls.requestStatus() }
            return tls
        }
    }

    /// OpenResty's `sock:setclientcert(cert, key)`: the certificate chain and key (PEM text
    /// or file paths) the next sslhandshake presents; nil, nil takes them away.
    private static func setclientcert(_ L: LuaState) throws(LuaError) -> Int32 {
        let s = try plainClient(L)
        if luaIsNoneOrNil(L, 2) && luaIsNoneOrNil(L, 3) {
            s.clientState.clientCertificate = nil
            lua_pushboolean(L, 1)
            return 1
        }
        let certificate = try Arg.string(L, 2), key = try Arg.string(L, 3)
        s.clientState.clientCertificate = (certificate, key)
        lua_pushboolean(L, 1)
        return 1
    }

    /// `sock:_tlshandshake(ctx [, limit])`: the handshake of `ctx`'s mode on this socket, in
    /// place (a server's accepted connection). `limit` (seconds) bounds the whole handshake
    /// instead of the socket's timeouts, which it leaves as they are: a server that sets no
    /// timeout on its connection needs no settimeout before and after.
    private static func tlshandshake(_ L: LuaState) throws(LuaError) -> Int32 {
        let s = try plainClient(L)
        guard let context = LuaObjects.get(L, 2, kind: .tlsContext, as: TLSContext.self) else {
            throw .type(L, 2, contextMetatable)
        }
        let limit = try Arg.timeout(L, 3)
        return try startHandshake(L, s, limit: limit) { () throws(TLSError) in
            try TLSStream(context: context, fd: s.fd)
        }
    }

    private static func plainClient(_ L: LuaState) throws(LuaError) -> Socket {
        guard let s = SocketBindings.get(L, 1), s.socketClass == .tcpClient || s.socketClass == .unixClient else {
            throw .type(L, 1, "tcp{client}")
        }
        return s
    }

    /// Gives `s` the TLS transport `make` makes (unless it has one) and runs its handshake,
    /// bounded by `limit` seconds when given, else by the socket's timeouts.
    private static func startHandshake(_ L: LuaState, _ s: Socket, limit: Double? = nil,
                                       make: () throws(TLSError) -> TLSStream) throws(LuaError) -> Int32 {
        if s.isClosed { return SocketBindings.fail(L, "closed") }
        if let tls = s.tls {
            if tls.isEstablished { return sslhandshakeDone(L, s) }
            return SocketBindings.fail(L, "busy")
        }
        if s.isReceiving || s.isSending { return SocketBindings.fail(L, "busy") }
        if !s.buffer.isEmpty { return SocketBindings.fail(L, "unread data in buffer") }
        do {
            let tls = try make()
            // (A server's accepted connection has no client state: none is made for it.)
            if let host = s.connectHostIfSet { tls.expectName(ifUnset: host) }
            s.transport = tls
            if s.beginClientTLS(tls) { return sslhandshakeDone(L, s) }
            logIfUnverified(s, tls)
        } catch {
            return SocketBindings.fail(L, error.message)
        }
        s.receiveDeadline = s.handshakeDeadline(limit: limit)
        return handshakeStep(L, s, luaSec: false)
    }

    /// `sock:_tlsinfo()`: the handler's `peer.tls` (SPEC §10): version, cipher, sni, alpn,
    /// verified, subject, and whether the session was resumed.
    private static func tlsinfo(_ L: LuaState) throws(LuaError) -> Int32 {
        guard let tls = SocketBindings.get(L, 1)?.tls, tls.isEstablished else {
            lua_pushnil(L)
            return 1
        }
        lua_createtable(L, 0, 6)
        lua_pushstring(L, tls.version)
        luaRawSetField(L, -2, "version")
        if let cipher = tls.cipher {
            lua_pushstring(L, cipher)
            luaRawSetField(L, -2, "cipher")
        }
        if let sni = tls.requestedServerName {
            lua_pushstring(L, sni)
            luaRawSetField(L, -2, "sni")
        }
        if let alpn = tls.negotiatedProtocol {
            lua_pushstring(L, alpn)
            luaRawSetField(L, -2, "alpn")
        }
        lua_pushboolean(L, tls.verificationFailure == nil ? 1 : 0)
        luaRawSetField(L, -2, "verified")
        lua_pushboolean(L, tls.wasResumed ? 1 : 0)
        luaRawSetField(L, -2, "resumed")
        if let subject = tls.peerSubject {
            lua_pushstring(L, subject)
            luaRawSetField(L, -2, "subject")
        }
        return 1
    }

    /// sslhandshake's result: the session, or true when it was called with false.
    private static func sslhandshakeDone(_ L: LuaState, _ s: Socket) -> Int32 {
        guard let tls = s.tls else { return SocketBindings.fail(L, "closed") }
        // A server's connection (_tlshandshake) has no session to give: true.
        if tls.context.mode == .server || (lua_type(L, 2) == LUA_TBOOLEAN && lua_toboolean(L, 2) == 0) {
            lua_pushboolean(L, 1)
            return 1
        }
        LuaObjects.push(L, tls.session, kind: .tlsSession)
        return 1
    }

    // MARK: - What a connection reports

    /// `conn:sni(name)`: a client's server name; on a server, `conn:sni({name = ctx, ...}
    /// [, strict])`: the context (certificate) for each name the client may ask for.
    private static func sni(_ L: LuaState) throws(LuaError) -> Int32 {
        let (_, found) = try tlsConnection(L)
        guard lua_type(L, 2) == LUA_TTABLE else {
            found?.setServerName(try Arg.string(L, 2))
            return 0
        }
        guard let tls = found else { return 0 }
        var names: [String] = []
        var contexts: [OpaquePointer?] = []
        lua_pushnil(L)
        while gs_next(L, 2) != 0 {
            guard let name = luaString(L, -2), let context = LuaObjects.get(L, -1, kind: .tlsContext, as: TLSContext.self)
            else {
                gs_pop(L, 2)
                throw .argument(L, 2, "a table of server names to contexts expected")
            }
            names.append(name)
            contexts.append(context.ctx)
            gs_pop(L, 1)
        }
        let strict: Int32 = lua_toboolean(L, 3) != 0 ? 1 : 0
        let copies = names.map { strdup($0) }
        defer { copies.forEach { free($0) } }
        var pointers = copies.map { $0.map { UnsafePointer($0) } }
        let ok = gs_tls_set_connection_sni(tls.ssl, &pointers, &contexts, Int32(names.count), strict)
        if ok != 1 { return SocketBindings.fail(L, "cannot set the server names") }
        return 0
    }

    private static func getsniname(_ L: LuaState) throws(LuaError) -> Int32 {
        let (_, found) = try tlsConnection(L)
        guard let tls = found else {
            lua_pushnil(L)
            return 1
        }
        let name = tls.context.mode == .server ? tls.requestedServerName : tls.serverName
        if let name { lua_pushstring(L, name) } else { lua_pushnil(L) }
        return 1
    }

    /// `true`, or `false` and the reason, a string, as LuaSec gives it (its table of reasons
    /// by depth comes only with verifyext = "lsec_continue", which gsockd does not take);
    /// `false, "closed"` before the handshake and after a close, as LuaSec.
    private static func getpeerverification(_ L: LuaState) throws(LuaError) -> Int32 {
        guard let tls = try established(L) else { return failHandshake(L, "closed") }
        guard let reason = tls.verificationFailure else {
            lua_pushboolean(L, 1)
            return 1
        }
        return failHandshake(L, reason)
    }

    /// The TLS of the SSL:Connection at index 1 when its handshake is done and it is open
    /// (LuaSec's LSEC_STATE_CONNECTED), else nil: then LuaSec's methods answer "closed".
    static func established(_ L: LuaState) throws(LuaError) -> TLSStream? {
        let (s, found) = try tlsConnection(L)
        guard let tls = found, tls.isEstablished, !s.isClosed else { return nil }
        return tls
    }

    /// LuaSec's `conn:setdane(base_domain)` → true or false: the connection (a client's, of a
    /// context with `dane`, before its handshake) is to be verified against the TLSA records
    /// settlsa gives, with base_domain as a name the certificate may be for.
    private static func setdane(_ L: LuaState) throws(LuaError) -> Int32 {
        let (_, tls) = try tlsConnection(L)
        let base = try Arg.string(L, 2)
        lua_pushboolean(L, tls?.enableDANE(baseDomain: base) == true ? 1 : 0)
        return 1
    }

    /// LuaSec's `conn:settlsa(usage, selector, mtype, data)` → true or false: one TLSA record
    /// (data as DNS gives it: the digest's bytes, or the whole certificate or key).
    private static func settlsa(_ L: LuaState) throws(LuaError) -> Int32 {
        let (_, tls) = try tlsConnection(L)
        let usage = try Arg.integer(L, 2), selector = try Arg.integer(L, 3), matching = try Arg.integer(L, 4)
        guard lua_type(L, 5) == LUA_TSTRING else { throw .type(L, 5, "string") }
        var length = 0
        let data = lua_tolstring(L, 5, &length)!
        let added = tls?.addTLSA(usage: UInt8(truncatingIfNeeded: usage), selector: UInt8(truncatingIfNeeded: selector),
                                 matching: UInt8(truncatingIfNeeded: matching),
                                 data: UnsafeRawBufferPointer(start: data, count: length)) == true
        lua_pushboolean(L, added ? 1 : 0)
        return 1
    }

    /// LuaSec's `getfinished()` / `getpeerfinished()`: the last Finished message this end
    /// sent / received (for tls-unique channel binding); nothing when there is none. Before
    /// the handshake: nil, "closed" from getfinished, nothing from getpeerfinished (LuaSec's
    /// values, to the count).
    private static func finished(_ L: LuaState, peer: Bool) throws(LuaError) -> Int32 {
        guard let tls = try established(L) else { return peer ? 0 : SocketBindings.fail(L, "closed") }
        var buffer = [UInt8](repeating: 0, count: 128)
        let n = peer ? SSL_get_peer_finished(tls.ssl, &buffer, buffer.count) : SSL_get_finished(tls.ssl, &buffer, buffer.count)
        guard n > 0 else { return 0 }
        buffer.withUnsafeBufferPointer { $0.withMemoryRebound(to: CChar.self) { _ = lua_pushlstring(L, $0.baseAddress, min(n, $0.count)) } }
        return 1
    }

    /// LuaSec's `exportkeyingmaterial(label, length [, context])` (RFC 5705 / 8446 §7.5, for
    /// tls-exporter channel binding): `length` bytes, or nil and LuaSec's message; nothing
    /// before the handshake, as LuaSec.
    private static func exportkeyingmaterial(_ L: LuaState) throws(LuaError) -> Int32 {
        let tls = try established(L)
        var labelLength = 0, contextLength = 0
        guard lua_type(L, 2) == LUA_TSTRING, let label = lua_tolstring(L, 2, &labelLength) else { throw .type(L, 2, "string") }
        let length = try Arg.integer(L, 3, in: 0...(1 << 20))
        var context: UnsafePointer<CChar>?
        if !luaIsNoneOrNil(L, 4) {
            guard lua_type(L, 4) == LUA_TSTRING else { throw .type(L, 4, "string") }
            context = lua_tolstring(L, 4, &contextLength)
        }
        guard let tls else { return 0 }
        var out = [UInt8](repeating: 0, count: max(length, 1))
        let bytes = context.map { UnsafeRawPointer($0).assumingMemoryBound(to: UInt8.self) }
        let ok = SSL_export_keying_material(tls.ssl, &out, length, label, labelLength, bytes, contextLength,
                                            context == nil ? 0 : 1)
        ERR_clear_error()
        guard ok == 1 else { return SocketBindings.fail(L, "error exporting keying material") }
        out.withUnsafeBufferPointer { $0.withMemoryRebound(to: CChar.self) { _ = lua_pushlstring(L, $0.baseAddress, length) } }
        return 1
    }

    private static func getalpn(_ L: LuaState) throws(LuaError) -> Int32 {
        let (_, tls) = try tlsConnection(L)
        if let name = tls?.negotiatedProtocol { lua_pushstring(L, name) } else { lua_pushnil(L) }
        return 1
    }

    /// `conn:info([field])`: LuaSec's table (its ssl.lua's info()): cipher, protocol, key,
    /// authentication, encryption and mac from OpenSSL's description of the cipher, export,
    /// bits and algbits (floats, as LuaSec pushes them); no compression (OpenSSL 3 has none,
    /// LuaSec's is nil then). nil, "closed" before the handshake and after a close.
    private static func info(_ L: LuaState) throws(LuaError) -> Int32 {
        guard let tls = try established(L) else { return SocketBindings.fail(L, "closed") }
        enum Value { case text(String), number(Double), flag(Bool) }
        var fields: [(String, Value)] = []
        let (bits, algorithmBits) = tls.cipherBits
        fields += [("bits", .number(Double(bits))), ("algbits", .number(Double(algorithmBits)))]
        if let description = tls.cipherDescription {
            let words = description.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" })
            func after(_ prefix: String) -> String? {
                words.first(where: { $0.hasPrefix(prefix) }).map { String($0.dropFirst(prefix.count)) }
            }
            // LuaSec's pattern: "^(%S+)%s+(%S+)%s+Kx=(%S+)%s+Au=(%S+)%s+Enc=(%S+)%s+Mac=(%S+)".
            if words.count >= 6, let key = after("Kx="), let authentication = after("Au="),
               let encryption = after("Enc="), let mac = after("Mac=") {
                fields += [("cipher", .text(String(words[0]))), ("key", .text(key)),
                           ("authentication", .text(authentication)), ("encryption", .text(encryption)),
                           ("mac", .text(mac))]
            }
            fields.append(("export", .flag(words.last == "export")))
        }
        fields.append(("protocol", .text(tls.version)))
        func push(_ value: Value) {
            switch value {
            case .text(let text): lua_pushstring(L, text)
            case .number(let number): lua_pushnumber(L, number)
            case .flag(let flag): lua_pushboolean(L, flag ? 1 : 0)
            }
        }
        if let wanted = luaString(L, 2) {
            if let field = fields.first(where: { $0.0 == wanted }) { push(field.1) } else { lua_pushnil(L) }
            return 1
        }
        lua_createtable(L, 0, Int32(fields.count))
        for (name, value) in fields {
            push(value)
            luaRawSetField(L, -2, name)
        }
        return 1
    }

    /// LuaSec's `want()`: "read", "write" or "nothing".
    private static func want(_ L: LuaState) throws(LuaError) -> Int32 {
        let (_, tls) = try tlsConnection(L)
        switch tls?.lastWant {
        case .read?: lua_pushstring(L, "read")
        case .write?: lua_pushstring(L, "write")
        case nil: lua_pushstring(L, "nothing")
        }
        return 1
    }
}

extension Runtime {
    /// The client contexts of sslhandshake, made on first use: verifying against the system
    /// store or not, with or without a client certificate. Shared by the process's runtimes
    /// (an SSL_CTX is thread-safe).
    func defaultClientContext(verifying: Bool, certificate: (String, String)? = nil) throws(TLSError) -> TLSContext {
        let key = "\(verifying)\u{0}\(certificate?.0 ?? "")\u{0}\(certificate?.1 ?? "")"
        defaultContextsLock.lock()
        defer { defaultContextsLock.unlock() }
        if let made = defaultClientContexts[key] { return made }
        var p = TLSParameters(mode: .client)
        if !verifying { p.verify = ["none"] }
        if let (cert, privateKey) = certificate {
            if cert.hasPrefix("-----BEGIN") {
                p.pem = (cert, privateKey)
            } else {
                p.certificate = cert
                p.key = privateKey
            }
        }
        let context = try TLSContext(p)
        defaultClientContexts[key] = context
        return context
    }
}

private final class Lock: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    init() { pthread_mutex_init(&mutex, nil) }
    func lock() { pthread_mutex_lock(&mutex) }
    func unlock() { pthread_mutex_unlock(&mutex) }
}

private let defaultContextsLock = Lock()
nonisolated(unsafe) private var defaultClientContexts: [String: TLSContext] = [:]
