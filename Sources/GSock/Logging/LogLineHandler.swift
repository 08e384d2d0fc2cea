// gsockd's log lines (SPEC §9): one line per event on stderr, with a millisecond UTC
// timestamp, the level, then the fields operators filter on (service, worker, fiber,
// peer) and the message; a traceback follows a text line on its own lines. In JSON
// format each event is one JSON object on one line (traceback included), for log
// collectors. swift-log stays the API: this is its handler.
import Glibc
import Logging

/// How log lines are written.
public enum LogFormat: String, CaseIterable, Sendable {
    /// `2026-12-02T22:06:49.123Z error service=echo fiber=3 peer=127.0.0.1:4000 handler failed: ...`
    case text
    /// `{"ts":"2026-12-02T22:06:49.123Z","level":"error","msg":"handler failed: ...","service":"echo",...}`
    case json
}

/// A swift-log handler writing gsockd's log lines to standard error, each with one
/// write(2) so that the lines of several workers sharing stderr do not interleave.
public struct LogLineHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    public let format: LogFormat

    /// The fields that come first, in this order; the traceback comes last.
    static let leadingFields = ["service", "worker", "fiber", "peer"]

    /// - Parameters:
    ///   - worker: the worker number, added to every line when there are several workers.
    public init(format: LogFormat = .text, level: Logger.Level = .info, worker: String? = nil) {
        self.format = format
        logLevel = level
        if let worker { metadata["worker"] = "\(worker)" }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var fields = metadata
        if let explicit = event.metadata { fields.merge(explicit) { _, new in new } }
        let text = LogLineHandler.line(timestamp: LogLineHandler.timestamp(), level: event.level,
                                       message: event.message.description, fields: fields, format: format)
        text.withCString { p in
            var left = strlen(p), at = p
            while left > 0 {
                let n = write(2, at, left)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                left -= n
                at += n
            }
        }
    }

    /// One event as its line (with the newline).
    static func line(timestamp: String, level: Logger.Level, message: String, fields: Logger.Metadata,
                     format: LogFormat) -> String {
        let traceback = fields["traceback"].map { "\($0)" }
        var ordered: [(String, String)] = []
        /// The fields whose values are numbers or booleans (given so, not as text).
        var literal: Set<String> = []
        func add(_ key: String, _ value: Logger.MetadataValue) {
            ordered.append((key, "\(value)"))
            if case .stringConvertible(let v) = value, isJSONLiteral(v) { literal.insert(key) }
        }
        for key in leadingFields { if let v = fields[key] { add(key, v) } }
        for key in fields.keys.sorted() where !leadingFields.contains(key) && key != "traceback" {
            add(key, fields[key]!)
        }
        switch format {
        case .text:
            var out = "\(timestamp) \(level.rawValue)"
            for (k, v) in ordered { out += " \(k)=\(quotedIfNeeded(v))" }
            out += " " + message
            if let traceback, !traceback.isEmpty { out += "\n" + traceback }
            return out + "\n"
        case .json:
            var out = "{\"ts\":\(jsonString(timestamp)),\"level\":\(jsonString(level.rawValue)),\"msg\":\(jsonString(message))"
            for (k, v) in ordered {
                // Numbers stay numbers, so that collectors can compare them.
                let isNumber = literal.contains(k)
                    || (k == "worker" || k == "fiber") && !v.isEmpty && v.utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 }
                out += ",\(jsonString(k)):\(isNumber ? v : jsonString(v))"
            }
            if let traceback { out += ",\"traceback\":\(jsonString(traceback))" }
            return out + "}\n"
        }
    }

    /// Whether a field given as a value (gsock.log's fields) is written bare in JSON: an
    /// integer, a finite number or a boolean.
    private static func isJSONLiteral(_ v: any CustomStringConvertible & Sendable) -> Bool {
        switch v {
        case is Int, is Bool: return true
        case let d as Double: return d.isFinite
        default: return false
        }
    }

    /// A value as text shows it: bare when it has no space, quote or '=', else quoted.
    static func quotedIfNeeded(_ v: String) -> String {
        guard v.isEmpty || v.utf8.contains(where: { $0 == 0x20 || $0 == 0x22 || $0 == 0x3D || $0 < 0x20 }) else { return v }
        return jsonString(v)
    }


    /// The current time as `2026-12-02T22:06:49.123Z`.
    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var seconds = now.tv_sec
        var parts = tm()
        gmtime_r(&seconds, &parts)
        var buffer = [CChar](repeating: 0, count: 32)
        let n = strftime(&buffer, buffer.count, "%Y-%m-%dT%H:%M:%S", &parts)
        let ms = Int(now.tv_nsec / 1_000_000)
        let msText = ms < 10 ? "00\(ms)" : ms < 100 ? "0\(ms)" : "\(ms)"
        return String(cString: Array(buffer[0..<n]) + [0]) + ".\(msText)Z"
    }
}

/// `s` as a JSON string literal.
func jsonString(_ s: String) -> String {
    var out = "\""
    out.reserveCapacity(s.utf8.count + 2)
    for scalar in s.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if scalar.value < 0x20 {
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
    }
    return out + "\""
}
