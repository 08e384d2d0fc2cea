// Key paths into a config file, as problems name them: `services.echo.listen[2]`.

/// A path to a value of a config file: table keys, and array positions counted from 1.
struct ConfigKey: CustomStringConvertible, Sendable {
    enum Part: Sendable {
        case key(String)
        case index(Int)
    }

    var parts: [Part] = []

    static let root = ConfigKey()

    /// The path of the value at `key` of the table at this path.
    func appending(_ key: String) -> ConfigKey { ConfigKey(parts: parts + [.key(key)]) }

    /// The path of element `index` (from 1) of the array at this path.
    func element(_ index: Int) -> ConfigKey { ConfigKey(parts: parts + [.index(index)]) }

    /// The table keys alone: where the value is written in the file.
    var keys: [String] {
        parts.compactMap { if case .key(let k) = $0 { return k } else { return nil } }
    }

    /// TOML's spelling: bare keys where TOML allows them, quoted ones elsewhere.
    var description: String {
        var text = ""
        for part in parts {
            switch part {
            case .key(let k):
                if !text.isEmpty { text += "." }
                text += ConfigKey.isBare(k) ? k : "\"" + k.replacingAll("\\", "\\\\").replacingAll("\"", "\\\"") + "\""
            case .index(let i):
                text += "[\(i)]"
            }
        }
        return text
    }

    static func isBare(_ key: String) -> Bool {
        !key.isEmpty && key.utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x5F || c == 0x2D
        }
    }
}

extension String {
    /// Every occurrence of `target` replaced (without Foundation).
    func replacingAll(_ target: Character, _ replacement: String) -> String {
        var out = ""
        for c in self { if c == target { out += replacement } else { out.append(c) } }
        return out
    }
}
