// The settings of `gsockd serve` (SPEC §6), as `ConfigLoader` reads them from a TOML
// file: process-wide settings at the top level, and one `ServiceConfig` per
// `[services.NAME]` table.
import Logging

/// A validated config file: everything `gsockd serve` needs, with every path absolute.
public struct ServerConfig: Sendable {
    /// The config file, absolute (what a reload reads again).
    public var path: String
    /// Worker processes sharing the listeners (`workers`, at least 1).
    public var workers: Int = 1
    /// `log_level`.
    public var logLevel: Logger.Level = .info
    /// How log lines are written (`log_format`).
    public var logFormat: LogFormat = .text
    /// `lua_path`: `package.path` templates, resolved against the config file's directory.
    public var luaPath: [String] = []
    /// `shutdown_timeout`: seconds to drain open connections on SIGTERM.
    public var shutdownTimeout: Double = 10
    /// `memory_limit`: bytes each Lua state may allocate; 0 for no limit.
    public var memoryLimit: Int = 0
    /// `max_run_time`: seconds a fiber may run without yielding before it is reported (SPEC §9).
    public var maxRunTime: Double = 1
    /// `max_run_time_action`: what happens to a fiber that runs past `maxRunTime`.
    public var maxRunTimeAction: RunawayAction = .log
    /// `admin`: the address of the admin listener (/metrics, /healthz, /readyz), or nil.
    public var admin: String?
    /// `drain_delay`: seconds between SIGTERM and the end of accepting, while /readyz fails.
    public var drainDelay: Double = 0
    /// The services, sorted by name; never empty in a loaded config.
    public var services: [ServiceConfig]
    /// What `gsockd check` and `gsockd serve` warn about: nothing wrong, but soon to be
    /// (a certificate expiring within 14 days).
    public var warnings: [ConfigProblem] = []

    /// Creates a config with the default settings.
    /// - Parameters:
    ///   - path: the config file.
    ///   - services: the services it serves.
    public init(path: String, services: [ServiceConfig]) {
        self.path = path
        self.services = services
    }
}

/// What to do with a fiber that runs longer than `max_run_time` without yielding.
public enum RunawayAction: String, Sendable, CaseIterable {
    /// Log it with its traceback, and let it run.
    case log
    /// Raise an error in it.
    case error
}
