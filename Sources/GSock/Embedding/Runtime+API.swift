// The runtime's face for Swift programs (SPEC §8): how one is set up, running Lua code
// and the loop, and what it reports. Creating and closing a runtime are in
// Runtime/Runtime.swift, registering Swift functions in Runtime+Modules.swift, serving
// in Runtime+Serving.swift.
import CLibev
import CShims
import Logging

extension Runtime {
    /// How a runtime is set up.
    public struct Options {
        /// Bytes the Lua state may allocate; 0 for no limit. An allocation past it fails
        /// the fiber that made it with "not enough memory".
        public var memoryLimit: Int = 0
        /// Use libev's default loop (the only one that can watch signals) instead of a new one.
        public var useDefaultLoop: Bool = false
        /// Where runtime events (such as errors of fibers nobody joins) are logged.
        public var logger = Logger(label: "gsockd")
        /// Seconds a fiber may run without yielding before it is reported (nil: not
        /// watched). Needs the default loop; one runtime per process can be watched.
        public var maxRunTime: Double?
        /// With `.error`, a fiber past `maxRunTime` gets an error raised in it instead of a report.
        public var runawayAction: RunawayAction = .log

        public init() {}
    }

    /// Runs a Lua file as the main fiber, with `arguments` as `...` and in the global `arg`
    /// (`arg[0]` is the path), until that fiber ends.
    /// - Returns: whether the chunk returned a value (a handler, for instance).
    /// - Throws: `RuntimeError.compile` when the file cannot be read or compiled,
    ///   `RuntimeError.failed` when the main fiber raised.
    @discardableResult
    public func runMain(file path: String, arguments: [String] = []) throws -> Bool {
        try loadFile(path)
        setArgTable(script: path, arguments: arguments)
        return try runMainChunk(arguments: arguments)
    }

    /// Runs Lua source as the main fiber until it ends; `name` names it in messages.
    /// - Throws: `RuntimeError.compile` or `RuntimeError.failed`.
    @discardableResult
    public func runMain(source: String, name: String = "=(source)", arguments: [String] = []) throws -> Bool {
        try loadString(source, name: name)
        return try runMainChunk(arguments: arguments)
    }

    /// Schedules Lua source to run in a new fiber; `run()` runs it.
    /// - Throws: `RuntimeError.compile`.
    public func spawn(source: String, name: String = "=(source)") throws {
        try loadString(source, name: name)
        let fiber = makeFiber(from: L, count: 1)
        gs_pop(L, 1)
        enqueue(fiber)
    }

    /// Runs the loop until no fiber, timer or watcher is left, or `stop()` is called.
    public func run() {
        ev_run(loop, 0)
    }

    /// Makes `run()` return after the current loop iteration.
    public func stop() {
        mainRun.stopRequested = true
        ev_break(loop, Int32(EVBREAK_ALL))
    }

    /// Bytes the Lua state holds now.
    public var memoryInUse: Int { state.pointee.used }

    /// Fibers that have not ended.
    public var fiberCount: Int { liveFibers }

    /// gsockd's version.
    public static let version = "0.9.0"

    /// `gsockd 0.9.0 (Lua 5.4.4, libev 4.33)`: the version and the libraries it runs on.
    public static var versionDescription: String {
        "gsockd \(version) (Lua \(String(cString: gs_lua_release())), libev \(ev_version_major()).\(ev_version_minor()))"
    }
}

/// Errors the runtime reports to Swift callers.
public enum RuntimeError: Error, CustomStringConvertible, Equatable {
    /// The runtime could not be set up.
    case setup(String)
    /// A chunk did not compile: `file:line: message`.
    case compile(String)
    /// Lua code raised: the message and the Lua traceback.
    case failed(message: String, traceback: String)

    public var description: String {
        switch self {
        case .setup(let m): return "cannot set up the runtime: \(m)"
        case .compile(let m): return m
        case .failed(let m, let tb): return tb.isEmpty ? m : "\(m)\n\(tb)"
        }
    }
}
