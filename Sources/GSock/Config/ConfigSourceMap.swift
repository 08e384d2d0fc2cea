// Where each key of a config file is written, so that problems can name a line.
// TOMLKit does not expose toml++'s source positions, so this scans the text again:
// table headers (`[services.echo]`), `key = value` lines (dotted and quoted keys
// included) and values that span lines (multi-line strings, arrays, inline tables).
// It runs only on text that toml++ has parsed, so it need not report errors; on
// anything it does not understand it still ends, and lookups simply find no line.

struct ConfigSourceMap {
    /// First line on which each key path (table keys joined by NUL) is written.
    private var lines: [String: Int] = [:]

    init(text: String) {
        var found: [String: Int] = [:]
        var scanner = Scanner(bytes: Array(text.utf8))
        scanner.run { path, line in
            // `[services.echo]` also writes `services`, the first time it is seen.
            for n in stride(from: 1, through: path.count, by: 1) {
                let key = ConfigSourceMap.join(path.prefix(n))
                if found[key] == nil { found[key] = line }
            }
        }
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

        init(bytes: [UInt8]) { self.bytes = bytes }

        var atEnd: Bool { i >= bytes.count }
        var current: UInt8 { bytes[i] }

        func peek(_ offset: Int) -> UInt8? { i + offset < bytes.count ? bytes[i + offset] : nil }

        /// Calls `found` with each key path and the line it is written on.
        mutating func run(_ found: ([String], Int) -> Void) {
            var table: [String] = []
            while !atEnd {
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
                    table = keyPath(until: UInt8(ascii: "]"))
                    found(table, headerLine)
                    skipToEndOfLine()
                default:
                    let keyLine = line
                    let start = i
                    let key = keyPath(until: UInt8(ascii: "="))
                    if !key.isEmpty { found(table + key, keyLine) }
                    if !atEnd && current == UInt8(ascii: "=") { advance() }
                    skipValue()
                    if i == start { advance() }
                }
            }
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

        /// Reads `a.b."c d"` up to `terminator` (left unread) or the end of the line.
        mutating func keyPath(until terminator: UInt8) -> [String] {
            var keys: [String] = []
            var bare: [UInt8] = []
            func flush() {
                if !bare.isEmpty { keys.append(String(decoding: bare, as: UTF8.self)) }
                bare = []
            }
            while !atEnd && current != terminator && current != UInt8(ascii: "\n") {
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
            while !atEnd && current != quote && current != UInt8(ascii: "\n") {
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

        /// Skips a value up to the end of its (last) line: strings, nested arrays and
        /// inline tables, and comments inside multi-line arrays.
        mutating func skipValue() {
            var depth = 0
            while !atEnd {
                switch current {
                case UInt8(ascii: "\""), UInt8(ascii: "'"):
                    skipString()
                case UInt8(ascii: "["), UInt8(ascii: "{"):
                    depth += 1
                    advance()
                case UInt8(ascii: "]"), UInt8(ascii: "}"):
                    depth = max(depth - 1, 0)
                    advance()
                case UInt8(ascii: "#"):
                    skipComment()
                case UInt8(ascii: "\n"):
                    advance()
                    if depth == 0 { return }
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
