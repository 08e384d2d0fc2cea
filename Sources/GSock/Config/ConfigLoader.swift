// Loading a config file (SPEC §6): parse the TOML, check every key against what gsockd
// understands, resolve paths against the config file's directory, compile every
// handler, and look for two services on one address. Every problem found is reported,
// all at once; the only things that stop the checks early are a file that cannot be
// read, is not TOML, or nests keys or values deeper than any config needs.
import Logging
import TOMLKit

/// Reads `gsockd.toml` files.
public enum ConfigLoader {
    /// The config `gsockd serve` and `gsockd check` read when given none.
    public static let defaultPath = "config/gsockd.toml"

    static let topLevelKeys = [
        "workers", "log_level", "log_format", "lua_path", "shutdown_timeout", "memory_limit", "max_run_time",
        "max_run_time_action", "admin", "drain_delay", "services",
    ]
    static let serviceKeys = [
        "listen", "handler", "max_connections", "backlog", "idle_timeout", "nodelay", "env", "tls",
        "protocol", "access_log",
    ] + httpLimitKeys
    /// SPEC §11's limits of an HTTP service: the byte and count limits, then the timeouts.
    static let httpLimitKeys = [
        "max_request_line", "max_header_size", "max_headers", "max_body", "keepalive_requests",
        "header_timeout", "body_timeout", "keepalive_timeout",
    ]
    static let tlsKeys = [
        "cert", "key", "password", "client_ca", "verify_client", "alpn", "protocols", "ciphers", "ciphersuites",
        "handshake_timeout", "certs",
    ]
    static let sniCertificateKeys = ["cert", "key", "names", "password"]
    static let logLevels = Logger.Level.allCases.map(\.rawValue)

    /// Loads and validates the config file at `path`. Nothing is bound and no handler runs;
    /// handlers are compiled to find syntax errors.
    /// - Parameter path: the config file; relative paths inside it are relative to its directory.
    /// - Returns: the config, with absolute paths and services sorted by name.
    /// - Throws: `ConfigError` with every problem found, in file order.
    public static func load(path: String) throws -> ServerConfig {
        let text: String
        switch FilePaths.read(path) {
        case .success(let t): text = t
        case .failure(let reason):
            throw ConfigError(problems: [ConfigProblem(file: path, message: "cannot read the config file: \(reason)")])
        }
        let sourceMap: ConfigSourceMap
        do {
            sourceMap = try ConfigSourceMap(text: text)
        } catch {
            throw ConfigError(problems: [ConfigProblem(file: path, key: error.key, line: error.line, message: error.message)])
        }
        let root: TOMLTable
        do {
            root = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw ConfigError(problems: [ConfigProblem(
                file: path, line: error.source.begin.line, column: error.source.begin.column,
                message: "TOML syntax error: \(error.description)")])
        }

        var reader = ConfigReader(file: path, sourceMap: sourceMap)
        let absolutePath = FilePaths.absolute(path)
        let directory = Directory(shown: FilePaths.directory(of: path), absolute: FilePaths.directory(of: absolutePath))
        var config = ServerConfig(path: absolutePath, services: [])
        readSettings(root, into: &config, directory: directory, reader: &reader)
        var listenings: [Listening] = []
        config.services = readServices(root["services"], directory: directory, listenings: &listenings, reader: &reader)
        if let admin = readAdmin(root["admin"], reader: &reader) {
            config.admin = admin.text
            listenings.append(admin)  // last: a collision is reported at `admin`
        }
        checkCollisions(listenings, reader: &reader)
        guard reader.problems.isEmpty else { throw ConfigError(problems: reader.problemsInFileOrder) }
        config.warnings = reader.warnings
        return config
    }

    /// The config file's directory, as paths in messages show it and as paths in the config use it.
    struct Directory {
        var shown: String
        var absolute: String
    }

    /// A good address of some service's `listen`, kept to find collisions.
    struct Listening {
        var text: String
        var address: ListenAddress
        var key: ConfigKey
    }

    // MARK: - Top-level settings

    private static func readSettings(
        _ root: TOMLTable, into config: inout ServerConfig, directory: Directory, reader: inout ConfigReader
    ) {
        let top = ConfigKey.root
        reader.rejectUnknownKeys(
            of: root, at: top, allowed: topLevelKeys,
            elsewhere: Dictionary(uniqueKeysWithValues: serviceKeys.map {
                ($0, "is a service's setting: put it in a [services.NAME] table")
            }))
        if let n = reader.integer(root["workers"], at: top.appending("workers"), atLeast: 1) {
            config.workers = n
        }
        if let level = reader.choice(root["log_level"], at: top.appending("log_level"), logLevels) {
            config.logLevel = Logger.Level(rawValue: level) ?? .info
        }
        if let format = reader.choice(root["log_format"], at: top.appending("log_format"), LogFormat.allCases.map(\.rawValue)) {
            config.logFormat = LogFormat(rawValue: format) ?? .text
        }
        if let value = root["lua_path"] {
            config.luaPath = readLuaPath(value, directory: directory, reader: &reader)
        }
        if let s = reader.seconds(root["shutdown_timeout"], at: top.appending("shutdown_timeout"), allowZero: true) {
            config.shutdownTimeout = s
        }
        if let n = reader.byteCount(root["memory_limit"], at: top.appending("memory_limit")) {
            config.memoryLimit = n
        }
        if let s = reader.seconds(root["max_run_time"], at: top.appending("max_run_time"), allowZero: false) {
            config.maxRunTime = s
        }
        if let s = reader.seconds(root["drain_delay"], at: top.appending("drain_delay"), allowZero: true) {
            config.drainDelay = s
        }
        let actions = RunawayAction.allCases.map(\.rawValue)
        if let action = reader.choice(root["max_run_time_action"], at: top.appending("max_run_time_action"), actions) {
            config.maxRunTimeAction = RunawayAction(rawValue: action) ?? .log
        }
    }

    /// `admin`: the admin listener's address (SPEC §9), or nil when absent or bad.
    private static func readAdmin(_ value: TOMLValueConvertible?, reader: inout ConfigReader) -> Listening? {
        let key = ConfigKey.root.appending("admin")
        guard let value else { return nil }
        guard let text = reader.string(value, at: key, expected: "an address (\(ListenAddress.forms))") else { return nil }
        switch ListenAddress.parse(text) {
        case .success(let address): return Listening(text: text, address: address, key: key)
        case .failure(let bad):
            reader.report(key, bad.message)
            return nil
        }
    }

    /// Checks an admin address given on the command line against `config`'s services: nil,
    /// or what is wrong with it.
    public static func adminProblem(_ text: String, in config: ServerConfig) -> String? {
        let address: ListenAddress
        switch ListenAddress.parse(text) {
        case .success(let a): address = a
        case .failure(let bad): return bad.message
        }
        for service in config.services {
            for listen in service.listen {
                guard case .success(let other) = ListenAddress.parse(listen), address.collision(with: other) != nil
                else { continue }
                return "address '\(text)' collides with services.\(service.name).listen ('\(listen)')"
            }
        }
        return nil
    }

    /// `lua_path`: templates for `package.path`, such as `"lib/?.lua"`.
    private static func readLuaPath(
        _ value: TOMLValueConvertible, directory: Directory, reader: inout ConfigReader
    ) -> [String] {
        let key = ConfigKey.root.appending("lua_path")
        let expected = "an array of package.path templates such as [\"lib/?.lua\"]"
        guard let array = value.array else {
            reader.wrong(value, at: key, expected: expected)
            return []
        }
        var templates: [String] = []
        for (i, element) in array.enumerated() {
            let elementKey = key.element(i + 1)
            let expected = "a template such as \"lib/?.lua\""
            guard let template = reader.string(element, at: elementKey, expected: expected) else { continue }
            if template.contains(";") {
                reader.report(elementKey, "'\(template)' contains ';' (expected one template per array element)")
            } else if !template.contains("?") {
                reader.report(
                    elementKey, "'\(template)' has no '?' (expected a template such as \"\(template)/?.lua\")")
            } else {
                templates.append(FilePaths.join(directory.absolute, template))
            }
        }
        return templates
    }

    // MARK: - Services

    private static func readServices(
        _ value: TOMLValueConvertible?, directory: Directory, listenings: inout [Listening],
        reader: inout ConfigReader
    ) -> [ServiceConfig] {
        let key = ConfigKey.root.appending("services")
        let expected = "at least one [services.NAME] table with listen and handler"
        guard let value else {
            reader.report(nil, "no services (expected \(expected))")
            return []
        }
        guard let services = reader.table(value, at: key, expected: "a table of services ([services.NAME])") else {
            return []
        }
        if services.isEmpty { reader.report(key, "no services (expected \(expected))") }
        var result: [ServiceConfig] = []
        for name in services.keys.sorted() {
            guard let entry = services[name] else { continue }
            let serviceKey = key.appending(name)
            guard let table = reader.table(entry, at: serviceKey, expected: "a [\(serviceKey)] table") else {
                continue
            }
            if let service = readService(
                name, table, at: serviceKey, directory: directory, listenings: &listenings, reader: &reader)
            {
                result.append(service)
            }
        }
        return result
    }

    /// A service, or nil when it has problems; its good addresses go to `listenings` either way.
    private static func readService(
        _ name: String, _ table: TOMLTable, at key: ConfigKey, directory: Directory,
        listenings: inout [Listening], reader: inout ConfigReader
    ) -> ServiceConfig? {
        reader.rejectUnknownKeys(
            of: table, at: key, allowed: serviceKeys,
            elsewhere: Dictionary(uniqueKeysWithValues: topLevelKeys.filter { $0 != "services" }.map {
                ($0, "is a top-level setting: put it above the first [table] header")
            }))
        let (good, complete) = readListen(table["listen"], at: key.appending("listen"), reader: &reader)
        listenings += good
        let handler = readHandler(table["handler"], at: key.appending("handler"), directory: directory, reader: &reader)
        var service = ServiceConfig(name: name, listen: good.map(\.text), handler: handler ?? "")
        service.maxConnections = reader.integer(
            table["max_connections"], at: key.appending("max_connections"), atLeast: 1)
        service.backlog = reader.integer(table["backlog"], at: key.appending("backlog"), atLeast: 1)
        service.idleTimeout = reader.seconds(
            table["idle_timeout"], at: key.appending("idle_timeout"), allowZero: false)
        if let nodelay = reader.boolean(table["nodelay"], at: key.appending("nodelay")) {
            service.nodelay = nodelay
        }
        readHTTP(table, at: key, into: &service, reader: &reader)
        if let tls = table["tls"] {
            service.tls = readTLS(tls, at: key.appending("tls"), directory: directory, reader: &reader)
        }
        if let env = table["env"] {
            let envKey = key.appending("env")
            if let fields = reader.table(env, at: envKey, expected: "a table ([\(envKey)])") {
                service.env = luaFields(fields)
            }
        }
        return complete && handler != nil ? service : nil
    }

    /// `protocol = "http"`, `access_log` and the limits of SPEC §11.
    private static func readHTTP(_ table: TOMLTable, at key: ConfigKey, into service: inout ServiceConfig,
                                 reader: inout ConfigReader) {
        if let name = reader.choice(table["protocol"], at: key.appending("protocol"), ["http"]) {
            service.http["protocol"] = .string(name)
        } else if table["protocol"] == nil {
            // As gsock.server says at serve time, said by check, with the key's line.
            for name in ["access_log"] + httpLimitKeys where table[name] != nil {
                reader.report(key.appending(name), "'\(name)' is an HTTP setting: it needs protocol = \"http\"")
            }
            return
        }
        if let v = reader.boolean(table["access_log"], at: key.appending("access_log")) {
            service.http["access_log"] = .boolean(v)
        }
        for name in httpLimitKeys {
            guard let value = table[name] else { continue }
            if name.hasSuffix("_timeout") {
                if let v = reader.seconds(value, at: key.appending(name), allowZero: false) {
                    service.http[name] = .number(v)
                }
            } else if let v = reader.integer(value, at: key.appending(name), atLeast: name == "max_body" ? 0 : 1) {
                service.http[name] = .integer(v)
            }
        }
    }

    /// `tls = { cert = ..., key = ... }` (SPEC §10): the table server.lua takes, its files
    /// made absolute; the certificate and key are loaded (and matched) here, so that `gsockd
    /// check` finds an unreadable file or a key that is not the certificate's.
    private static func readTLS(
        _ value: TOMLValueConvertible, at key: ConfigKey, directory: Directory, reader: inout ConfigReader
    ) -> [String: LuaValue]? {
        guard let table = reader.table(value, at: key, expected: "a table ([\(key)]) with cert and key") else { return nil }
        let before = reader.problems.count
        reader.rejectUnknownKeys(of: table, at: key, allowed: tlsKeys)
        var result: [String: LuaValue] = [:]
        var files: [String: String] = [:]
        for name in ["cert", "key", "client_ca"] {
            guard let path = reader.string(table[name], at: key.appending(name), expected: "a file path, relative to the config file")
            else { continue }
            let shown = FilePaths.join(directory.shown, path)
            files[name] = shown
            result[name] = .string(FilePaths.join(directory.absolute, path))
        }
        for name in ["password", "ciphers", "ciphersuites"] {
            if let s = reader.string(table[name], at: key.appending(name), expected: "a string") { result[name] = .string(s) }
        }
        if let v = reader.choice(table["verify_client"], at: key.appending("verify_client"), ["require", "optional"]) {
            result["verify_client"] = .string(v)
        }
        for name in ["alpn", "protocols"] {
            guard let v = table[name] else { continue }
            let allowed: [String]? = name == "protocols" ? ["tlsv1_2", "tlsv1_3"] : nil
            guard let array = v.array, !array.isEmpty,
                  array.allSatisfy({ $0.string.map { allowed?.contains($0) ?? true } ?? false }) else {
                reader.wrong(v, at: key.appending(name), expected: allowed.map { "an array of " + $0.map { "\"\($0)\"" }.joined(separator: " and ") }
                             ?? "an array of protocol names")
                continue
            }
            result[name] = .array(array.compactMap { $0.string.map { LuaValue.string($0) } })
        }
        if let t = reader.seconds(table["handshake_timeout"], at: key.appending("handshake_timeout"), allowZero: false) {
            result["handshake_timeout"] = .number(t)
        }
        var sni: [SNICertificate] = []
        var sniLua: [LuaValue] = []
        if let certs = table["certs"] {
            let certsKey = key.appending("certs")
            let expected = "an array of { cert = FILE, key = FILE, names = [NAME, ...] }"
            if let array = certs.array, !array.isEmpty {
                for (i, element) in array.enumerated() {
                    let entryKey = certsKey.element(i + 1)
                    guard let entry = reader.table(element, at: entryKey, expected: expected) else { continue }
                    reader.rejectUnknownKeys(of: entry, at: entryKey, allowed: sniCertificateKeys)
                    let names = entry["names"]?.array?.compactMap(\.string) ?? []
                    if names.isEmpty || names.count != entry["names"]?.array?.count {
                        reader.report(entryKey.appending("names"), "expected a non-empty array of host names")
                    }
                    let password = reader.string(entry["password"], at: entryKey.appending("password"), expected: "a string")
                    let pathExpected = "a file path, relative to the config file"
                    let certPath = reader.string(entry["cert"], at: entryKey.appending("cert"), expected: pathExpected)
                    let keyPath = reader.string(entry["key"], at: entryKey.appending("key"), expected: pathExpected)
                    guard let certPath, let keyPath, !names.isEmpty else {
                        for name in ["cert", "key"] where entry[name] == nil {
                            reader.report(entryKey.appending(name), "missing (expected a file path)")
                        }
                        continue
                    }
                    sni.append(SNICertificate(names: names, certificate: FilePaths.join(directory.shown, certPath),
                                              key: FilePaths.join(directory.shown, keyPath), password: password))
                    var lua: [String: LuaValue] = [
                        "cert": .string(FilePaths.join(directory.absolute, certPath)),
                        "key": .string(FilePaths.join(directory.absolute, keyPath)),
                        "names": .array(names.map { .string($0) }),
                    ]
                    if let password { lua["password"] = .string(password) }
                    sniLua.append(.table(lua))
                }
            } else {
                reader.wrong(certs, at: certsKey, expected: expected)
            }
            if !sniLua.isEmpty { result["certs"] = .array(sniLua) }
        }
        if table["certs"] == nil {
            for name in ["cert", "key"] where table[name] == nil { reader.report(key.appending(name), "missing (expected a file path)") }
        }
        if table["verify_client"] != nil && table["client_ca"] == nil {
            reader.report(key.appending("client_ca"), "missing: verify_client needs the CA certificates of the clients")
        }
        guard reader.problems.count == before,
              let cert = files["cert"] ?? sni.first?.certificate, let privateKey = files["key"] ?? sni.first?.key
        else { return nil }
        var p = TLSParameters(mode: .server)
        p.certificate = cert
        p.key = privateKey
        p.sniCertificates = sni
        func text(_ name: String) -> String? {
            if case .string(let s)? = result[name] { return s }
            return nil
        }
        func list(_ name: String) -> [String] {
            guard case .array(let items)? = result[name] else { return [] }
            return items.compactMap { if case .string(let s) = $0 { return s } else { return nil } }
        }
        p.password = text("password")
        p.cafile = files["client_ca"]
        // The rest too, so that check finds a cipher list or a protocol OpenSSL refuses.
        p.ciphers = text("ciphers")
        p.ciphersuites = text("ciphersuites")
        p.alpn = list("alpn")
        if list("protocols").count == 1 { p.protocolName = list("protocols")[0] }
        for (file, at) in [(cert, key.appending("cert"))] + sni.map({ ($0.certificate, key.appending("certs")) }) {
            if let problem = TLSContext.chainProblem(ofCertificateFile: file) {
                reader.report(at, problem)
                return nil
            }
        }
        do {
            _ = try TLSContext(p)
            if let days = TLSContext.daysUntilExpiry(ofCertificateFile: cert), days < 14 {
                reader.warn(key.appending("cert"), days < 0
                    ? "certificate '\(cert)' has expired"
                    : "certificate '\(cert)' expires in \(days) day\(days == 1 ? "" : "s")")
            }
        } catch {
            if error.message.hasPrefix(TLSContext.keyMismatch) {
                reader.report(key.appending("key"), "private key '\(privateKey)' does not match the certificate '\(cert)'")
            } else {
                let blamed = error.message.contains("'\(privateKey)'") ? "key"
                    : error.message.hasPrefix("invalid ciphersuites") ? "ciphersuites"
                    : error.message.hasPrefix("invalid ciphers") ? "ciphers"
                    : error.message.hasPrefix("invalid ALPN") ? "alpn"
                    : (files["client_ca"].map { error.message.contains($0) } == true ? "client_ca" : "cert")
                reader.report(key.appending(blamed), error.message)
            }
            return nil
        }
        return result
    }

    /// `listen`: one address or a non-empty array of them. Returns the good addresses, and
    /// whether there was no problem.
    private static func readListen(
        _ value: TOMLValueConvertible?, at key: ConfigKey, reader: inout ConfigReader
    ) -> (good: [Listening], complete: Bool) {
        let expected = "an address or a non-empty array of addresses (\(ListenAddress.forms))"
        guard let value else {
            reader.report(key, "missing (expected \(expected))")
            return ([], false)
        }
        var elements: [(TOMLValueConvertible, ConfigKey)] = []
        if let array = value.array, !array.isEmpty {
            elements = array.enumerated().map { ($1, key.element($0 + 1)) }
        } else if value.type == .string {
            elements = [(value, key)]
        } else {
            let hint = value.int.map { "did you mean \":\($0)\" or \"127.0.0.1:\($0)\"?" }
            reader.wrong(value, at: key, expected: expected, hint: hint)
            return ([], false)
        }
        var good: [Listening] = []
        var complete = true
        for (element, elementKey) in elements {
            guard let text = element.string else {
                reader.wrong(element, at: elementKey, expected: "an address string (\(ListenAddress.forms))")
                complete = false
                continue
            }
            switch ListenAddress.parse(text) {
            case .success(let address): good.append(Listening(text: text, address: address, key: elementKey))
            case .failure(let bad):
                reader.report(elementKey, bad.message)
                complete = false
            }
        }
        return (good, complete)
    }

    /// `handler`: a Lua file, relative to the config file, that exists and compiles.
    /// Nil when missing or wrong; the absolute path otherwise.
    private static func readHandler(
        _ value: TOMLValueConvertible?, at key: ConfigKey, directory: Directory, reader: inout ConfigReader
    ) -> String? {
        let expected = "the path of a Lua handler file, relative to the config file"
        guard let value else {
            reader.report(key, "missing (expected \(expected))")
            return nil
        }
        guard let path = reader.string(value, at: key, expected: expected) else { return nil }
        let shown = FilePaths.join(directory.shown, path)
        switch FilePaths.kind(shown) {
        case .missing:
            reader.report(key, "handler file not found: \(shown)")
            return nil
        case .directory:
            reader.report(key, "handler is a directory, not a Lua file: \(shown)")
            return nil
        case .file:
            break
        }
        do {
            try LuaSyntax.check(file: shown)
        } catch {
            reader.report(key, "handler does not compile: \(error)")
            return nil
        }
        return FilePaths.join(directory.absolute, path)
    }

    // MARK: - Addresses shared by services

    /// Reports each address that an earlier listing (of another service, or of the same
    /// list) already takes: once, at the later listing.
    private static func checkCollisions(_ listenings: [Listening], reader: inout ConfigReader) {
        for (i, listening) in listenings.enumerated() {
            for earlier in listenings[..<i] {
                guard let collision = listening.address.collision(with: earlier.address) else { continue }
                switch collision {
                case .same:
                    reader.report(listening.key,
                        "address '\(listening.text)' is already used by \(earlier.key) ('\(earlier.text)')")
                case .overlap:
                    let (wide, narrow) = earlier.address.isAllInterfaces ? (earlier, listening) : (listening, earlier)
                    reader.report(listening.key,
                        "address '\(listening.text)' collides with \(earlier.key) ('\(earlier.text)'): "
                            + "'\(wide.text)' listens on all interfaces, '\(narrow.text)' included")
                }
                break
            }
        }
    }

    // MARK: - TOML to Lua values

    static func luaFields(_ table: TOMLTable) -> [String: LuaValue] {
        var fields: [String: LuaValue] = [:]
        for name in table.keys {
            if let value = table[name] { fields[name] = luaValue(value) }
        }
        return fields
    }

    /// TOML values as Lua sees them; dates and times become their TOML text.
    static func luaValue(_ value: TOMLValueConvertible) -> LuaValue {
        switch value.type {
        case .string: return .string(value.string ?? "")
        case .int: return .integer(value.int ?? 0)
        case .double: return .number(value.double ?? 0)
        case .bool: return .boolean(value.bool ?? false)
        case .array: return .array(value.array.map { $0.map(luaValue) } ?? [])
        case .table: return .table(value.table.map(luaFields) ?? [:])
        case .date, .time, .dateTime: return .string(value.debugDescription)
        }
    }
}

/// Checks an address given on the command line.
public enum ListenAddressCheck {
    /// Nil when `text` is a good listen address, else what is wrong with it.
    public static func problem(_ text: String) -> String? {
        if case .failure(let bad) = ListenAddress.parse(text) { return bad.message }
        return nil
    }
}
