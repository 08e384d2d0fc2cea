// Where each key of a config file is written, so that problems can name a line.
// TOMLKit does not expose toml++'s source positions, so this scans the text itself:
// table headers (`[services.echo]`), `key = value` lines (dotted and quoted keys
// included) and values that span lines (multi-line strings, arrays, inline tables).
//
// It also refuses keys and values nested deeper than `maxDepth` levels and keys longer
// than `maxKeyBytes`, and so runs before toml++ sees the text: toml++ frees its tables
// recursively (a key of 20,000 dotted parts overflows the stack when a syntax error
// follows it), the loader converts `env` recursively, and the lines of each prefix of
// a key path cost the square of its depth here. On text that is not TOML it still
// ends; toml++ reports the syntax errors, and lookups simply find no line.

struct ConfigSourceMap {
    /// Keys, array elements and inline-table keys on the path to any value, counted together.
    static let maxDepth = 32
    /// The bytes of one key (one part of a dotted key).
    static let maxKeyBytes = 1024

    /// A key or a value over one of the limits: the first one in the text.
    struct Excess: Error {
        var line: Int
        /// The key, shortened.
        var key: String
        var message: String
    }

    /// First line on which each key path (table keys joined by NUL) is written.
    private var lines: [String: Int] = [:]

    /// - Throws: `Excess` for the first key or value over the limits.
    init(text: String) throws(Excess) {
        var found: [String: Int] = [:]
        var scanner = Scanner(bytes: Array(text.utf8))
        scanner.run { path, line in
            // `[services.echo]` also writes `services`, the first time it is seen.
            for n in stride(from: 1, through: path.count, by: 1) {
                let key = ConfigSourceMap.join(path.prefix(n))
                if found[key] == nil { found[key] = line }
            }
        }
        if let excess = scanner.excess { throw excess }
        lines = found
    }

    /// The line of `key`, or of the nearest enclosing key that is written in the file.
    func line(of key: ConfigKey) -> Int? {
        var keys = key.keys[...]
        while !keys.isEmpty {
            if let line = lines[ConfigSourceMap.join(keys)] { return line }
            keys = keys.dropLast()
        }
        return nil
    }

    private static func join<S: Sequence>(_ keys: S) -> String where S.Element == String {
        keys.joined(separator: "\u{0}")
    }

    // MARK: - Scanning

    private struct Scanner {
        let bytes: [UInt8]
        var i = 0
        var line = 1
        private(set) var excess: Excess?

        init(bytes: [UInt8]) { self.bytes = bytes }

        var atEnd: Bool { i >= bytes.count }
        var current: UInt8 { bytes[i] }

        func peek(_ offset: Int) -> UInt8? { i + offset < bytes.count ? bytes[i + offset] : nil }

        /// Calls `found` with each key path and the line it is written on, until the
        /// end or the first excess.
        mutating func run(_ found: ([String], Int) -> Void) {
            var table: [String] = []
            while !atEnd && excess == nil {
                skipBlanks()
                if atEnd { break }
                switch current {
                case UInt8(ascii: "\n"):
                    advance()
                case UInt8(ascii: "#"):
                    skipComment()
                case UInt8(ascii: "["):
                    let headerLine = line
                    advance()
                    if !atEnd && current == UInt8(ascii: "[") { advance() }
                    table = keyPath()
                    guard admit(table, depth: table.count, at: table, line: headerLine, "key") else { return }
                    found(table, headerLine)
                    skipToEndOfLine()
                default:
                    let keyLine = line
                    let start = i
                    let path = table + keyPath()
                    guard admit(path, depth: path.count, at: path, line: keyLine, "key") else { return }
                    if path.count > table.count { found(path, keyLine) }
                    if !atEnd && current == UInt8(ascii: "=") { advance() }
                    skipValue(of: path)
                    if i == start { advance() }
                }
            }
        }

        /// Whether `keys` are short enough and `depth` is within the limit; records the
        /// excess if not, naming the long key or the key path `path`.
        mutating func admit(_ keys: [String], depth: Int, at path: [String], line: Int, _ what: String) -> Bool {
            if let long = keys.first(where: { $0.utf8.count > maxKeyBytes }) {
                excess = Excess(line: line, key: String(long.prefix(40)) + "...",
                                message: "key longer than \(maxKeyBytes) bytes")
            } else if depth > maxDepth {
                let shown = path.count > 8 ? ConfigKey(parts: path.prefix(8).map { .key($0) }).description + "..."
                    : ConfigKey(parts: path.map { .key($0) }).description
                excess = Excess(line: line, key: shown, message: "\(what) nested deeper than \(maxDepth) levels")
            }
            return excess == nil
        }

        mutating func advance() {
            if bytes[i] == UInt8(ascii: "\n") { line += 1 }
            i += 1
        }

        mutating func skipBlanks() {
            let blanks: [UInt8] = [UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\r")]
            while !atEnd && blanks.contains(current) { advance() }
        }

        mutating func skipComment() {
            while !atEnd && current != UInt8(ascii: "\n") { advance() }
        }

        mutating func skipToEndOfLine() {
            while !atEnd && current != UInt8(ascii: "\n") {
                if current == UInt8(ascii: "\"") || current == UInt8(ascii: "'") { skipString() } else { advance() }
            }
        }

        /// Reads `a.b."c d"` up to what cannot be part of a key (left unread): `=`, a
        /// bracket, a brace, a comma or the end of the line. Stops early, past a limit,
        /// with more than `maxDepth` keys or a key longer than `maxKeyBytes`.
        mutating func keyPath() -> [String] {
            let ends: [UInt8] = Array("=[]{},\n".utf8)
            var keys: [String] = []
            var bare: [UInt8] = []
            func flush() {
                if !bare.isEmpty { keys.append(String(decoding: bare, as: UTF8.self)) }
                bare = []
            }
            while !atEnd && !ends.contains(current) && keys.count <= maxDepth && bare.count <= maxKeyBytes {
                switch current {
                case UInt8(ascii: "\""), UInt8(ascii: "'"):
                    flush()
                    keys.append(quotedKey())
                case UInt8(ascii: "."):
                    flush()
                    advance()
                case UInt8(ascii: " "), UInt8(ascii: "\t"):
                    advance()
                default:
                    bare.append(current)
                    advance()
                }
            }
            flush()
            return keys
        }

        /// A quoted key: `"..."` with escapes, or `'...'` taken literally.
        mutating func quotedKey() -> String {
            let quote = current
            advance()
            var text: [UInt8] = []
            while !atEnd && current != quote && current != UInt8(ascii: "\n") && text.count <= maxKeyBytes {
                if quote == UInt8(ascii: "\"") && current == UInt8(ascii: "\\"), let next = peek(1) {
                    advance()
                    switch next {
                    case UInt8(ascii: "n"): text.append(UInt8(ascii: "\n"))
                    case UInt8(ascii: "t"): text.append(UInt8(ascii: "\t"))
                    default: text.append(next)
                    }
                    advance()
                    continue
                }
                text.append(current)
                advance()
            }
            if !atEnd && current == quote { advance() }
            return String(decoding: text, as: UTF8.self)
        }

        /// Skips the value of the key at `path` up to the end of its (last) line: strings,
        /// nested arrays and inline tables (whose elements and keys count toward the depth),
        /// and comments inside multi-line arrays.
        mutating func skipValue(of path: [String]) {
            // Each open array or inline table, and the depth of the value it is.
            var open: [(isTable: Bool, depth: Int)] = []
            var depth = path.count
            /// Reads a key of an inline table at `tableDepth`; false when it is over a limit.
            func inlineKey(in tableDepth: Int) -> Bool {
                skipBlanks()
                let key = keyPath()
                depth = tableDepth + key.count
                return admit(key, depth: depth, at: path, line: line, "value")
            }
            while !atEnd {
                switch current {
                case UInt8(ascii: "\""), UInt8(ascii: "'"):
                    skipString()
                case UInt8(ascii: "["):
                    advance()
                    open.append((false, depth))
                    depth += 1
                    guard admit([], depth: depth, at: path, line: line, "value") else { return }
                case UInt8(ascii: "{"):
                    advance()
                    open.append((true, depth))
                    guard inlineKey(in: depth) else { return }
                case UInt8(ascii: ","):
                    advance()
                    guard let container = open.last else { continue }
                    if container.isTable {
                        guard inlineKey(in: container.depth) else { return }
                    } else {
                        depth = container.depth + 1
                    }
                case UInt8(ascii: "]"), UInt8(ascii: "}"):
                    advance()
                    if let container = open.popLast() { depth = container.depth }
                case UInt8(ascii: "#"):
                    skipComment()
                case UInt8(ascii: "\n"):
                    advance()
                    if open.isEmpty { return }
                default:
                    advance()
                }
            }
        }

        /// Skips a string of any of TOML's four kinds.
        mutating func skipString() {
            let quote = current
            let isMultiline = peek(1) == quote && peek(2) == quote
            if isMultiline {
                advance(); advance(); advance()
                while !atEnd {
                    if quote == UInt8(ascii: "\"") && current == UInt8(ascii: "\\") {
                        advance()
                        if !atEnd { advance() }
                    } else if current == quote && peek(1) == quote && peek(2) == quote {
                        advance(); advance(); advance()
                        // A multi-line string may end in up to two more quotes of its own.
                        while !atEnd && current == quote { advance() }
                        return
                    } else {
                        advance()
                    }
                }
                return
            }
            advance()
            while !atEnd && current != quote && current != UInt8(ascii: "\n") {
                if quote == UInt8(ascii: "\"") && current == UInt8(ascii: "\\") { advance() }
                if !atEnd { advance() }
            }
            if !atEnd && current == quote { advance() }
        }
    }
}
