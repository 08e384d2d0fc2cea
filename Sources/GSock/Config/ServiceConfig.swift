// One `[services.NAME]` table of a config file: a handler served on some addresses.

/// A service: where it listens, which handler serves it and with what limits.
public struct ServiceConfig: Sendable {
    /// The NAME of `[services.NAME]`.
    public var name: String
    /// The addresses as written: `HOST:PORT`, `[IPV6]:PORT`, `:PORT` or `unix:/path`.
    public var listen: [String]
    /// The handler file, absolute.
    public var handler: String
    /// `max_connections`: connections served at once; nil for no limit.
    public var maxConnections: Int?
    /// `backlog` of the listening sockets; nil for the default.
    public var backlog: Int?
    /// `idle_timeout`: seconds a connection may stay silent; nil for no limit.
    public var idleTimeout: Double?
    /// `nodelay`: whether accepted connections get TCP_NODELAY.
    public var nodelay: Bool = true
    /// `tls`: the service speaks TLS (SPEC §10), with these settings (files absolute).
    public var tls: [String: LuaValue]?
    /// `protocol = "http"`, `access_log` and the HTTP limits (SPEC §11), as server.lua takes them.
    public var http: [String: LuaValue] = [:]
    /// `[services.NAME.env]`, handed to the handler's `init(config)`.
    public var env: [String: LuaValue] = [:]

    /// Creates a service with the default settings.
    /// - Parameters:
    ///   - name: the service's name.
    ///   - listen: its addresses.
    ///   - handler: the handler file's absolute path.
    public init(name: String, listen: [String], handler: String) {
        self.name = name
        self.listen = listen
        self.handler = handler
    }
}
