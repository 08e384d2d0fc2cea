// Reading values out of a parsed config while collecting problems: every accessor
// reports what is wrong with its value (naming the key path, the line, what was
// expected and what was found) and carries on, so one pass finds every mistake.
import TOMLKit

struct ConfigReader {
    let file: String
    let sourceMap: ConfigSourceMap
    private(set) var problems: [ConfigProblem] = []
    /// What is worth knowing but not wrong (a certificate about to expire).
    private(set) var warnings: [ConfigProblem] = []

    init(file: String, sourceMap: ConfigSourceMap) {
        self.file = file
        self.sourceMap = sourceMap
    }

    /// The problems in file order (problems with no line last).
    var problemsInFileOrder: [ConfigProblem] {
        problems.enumerated().sorted { a, b in
            let (la, lb) = (a.element.line ?? Int.max, b.element.line ?? Int.max)
            return la != lb ? la < lb : a.offset < b.offset
        }.map(\.element)
    }

    mutating func report(_ key: ConfigKey?, _ message: String) {
        let line = key.flatMap { sourceMap.line(of: $0) }
        problems.append(ConfigProblem(file: file, key: key?.description, line: line, message: message))
    }

    mutating func warn(_ key: ConfigKey, _ message: String) {
        warnings.append(ConfigProblem(file: file, key: key.description, line: sourceMap.line(of: key), message: message))
    }

    /// Reports a value that is not what `expected` says: `expected X, got string "y"`.
    mutating func wrong(_ value: TOMLValueConvertible, at key: ConfigKey, expected: String, hint: String? = nil) {
        var message = "expected \(expected), got \(ConfigReader.describe(value))"
        if let hint { message += " (\(hint))" }
        report(key, message)
    }

    // MARK: - Keys

    /// Reports every key of `table` not in `allowed`, suggesting the closest spelling,
    /// or where the key belongs when it is one of `elsewhere`'s.
    mutating func rejectUnknownKeys(
        of table: TOMLTable, at key: ConfigKey, allowed: [String], elsewhere: [String: String] = [:]
    ) {
        for name in table.keys.sorted() where !allowed.contains(name) {
            var message = "unknown key"
            if let place = elsewhere[name] {
                message += "; '\(name)' \(place)"
            } else if let guess = ConfigReader.closest(to: name, in: allowed) {
                message += "; did you mean '\(guess)'?"
            }
            message += " (allowed: \(allowed.sorted().joined(separator: ", ")))"
            report(key.appending(name), message)
        }
    }

    /// The spelling in `candidates` that `word` is most likely a typo of, if one is obvious.
    static func closest(to word: String, in candidates: [String]) -> String? {
        let w = Array(word.lowercased().utf8)
        var best: (candidate: String, distance: Int)?
        for candidate in candidates.sorted() {
            let c = Array(candidate.utf8)
            let d = editDistance(w, c)
            let isPrefix = min(w.count, c.count) >= 4 && (c.starts(with: w) || w.starts(with: c))
            guard d <= 2 && d * 3 <= max(w.count, c.count) || isPrefix else { continue }
            let score = isPrefix ? min(d, 2) : d
            if best == nil || score < best!.distance { best = (candidate, score) }
        }
        return best?.candidate
    }

    private static func editDistance(_ a: [UInt8], _ b: [UInt8]) -> Int {
        if a.isEmpty { return b.count }
        var previous = Array(0...b.count)
        var row = previous
        for i in 1...a.count {
            row[0] = i
            for j in stride(from: 1, through: b.count, by: 1) {
                let substitution = previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)
                row[j] = min(previous[j] + 1, row[j - 1] + 1, substitution)
            }
            swap(&previous, &row)
        }
        return previous[b.count]
    }

    // MARK: - Typed values (nil when absent, or when wrong and reported)

    mutating func table(_ value: TOMLValueConvertible, at key: ConfigKey, expected: String) -> TOMLTable? {
        guard let table = value.table else {
            wrong(value, at: key, expected: expected)
            return nil
        }
        return table
    }

    mutating func integer(_ value: TOMLValueConvertible?, at key: ConfigKey, atLeast minimum: Int) -> Int? {
        guard let value else { return nil }
        let expected = minimum == 0 ? "a non-negative integer" : "an integer >= \(minimum)"
        guard let n = value.int else {
            let hint = value.double.flatMap { $0.rounded() == $0 ? "write it without a decimal point" : nil }
            wrong(value, at: key, expected: expected, hint: hint)
            return nil
        }
        guard n >= minimum else {
            wrong(value, at: key, expected: expected)
            return nil
        }
        return n
    }

    /// A number of seconds: an integer or a float, finite, and `> 0` or `>= 0`.
    mutating func seconds(_ value: TOMLValueConvertible?, at key: ConfigKey, allowZero: Bool) -> Double? {
        guard let value else { return nil }
        let expected = allowZero ? "a number of seconds >= 0" : "a number of seconds > 0"
        guard let d = value.double ?? value.int.map(Double.init), d.isFinite, allowZero ? d >= 0 : d > 0 else {
            wrong(value, at: key, expected: expected)
            return nil
        }
        return d
    }

    mutating func boolean(_ value: TOMLValueConvertible?, at key: ConfigKey) -> Bool? {
        guard let value else { return nil }
        guard let b = value.bool else {
            let hint = value.string.flatMap { ["true", "false"].contains($0) ? "write it without quotes" : nil }
            wrong(value, at: key, expected: "a boolean (true or false)", hint: hint)
            return nil
        }
        return b
    }

    mutating func string(_ value: TOMLValueConvertible?, at key: ConfigKey, expected: String) -> String? {
        guard let value else { return nil }
        guard let s = value.string, !s.isEmpty else {
            wrong(value, at: key, expected: expected)
            return nil
        }
        return s
    }

    /// One of `choices`, suggesting the closest when it is misspelt.
    mutating func choice(_ value: TOMLValueConvertible?, at key: ConfigKey, _ choices: [String]) -> String? {
        guard let value else { return nil }
        let expected = "one of " + choices.map { "\"\($0)\"" }.joined(separator: ", ")
        guard let s = value.string, choices.contains(s) else {
            let guess = value.string.flatMap { ConfigReader.closest(to: $0, in: choices) }
            wrong(value, at: key, expected: expected, hint: guess.map { "did you mean \"\($0)\"?" })
            return nil
        }
        return s
    }

    /// A size in bytes: an integer, or a string with a unit (`"512K"`, `"64M"`, `"1G"`;
    /// powers of 1024, case-insensitive, `B`, `KB`, `KiB` and the like accepted).
    mutating func byteCount(_ value: TOMLValueConvertible?, at key: ConfigKey) -> Int? {
        guard let value else { return nil }
        let expected = "a size in bytes: an integer >= 0, or a string such as \"512K\", \"64M\" or \"1G\""
        if let n = value.int, n >= 0 { return n }
        if let s = value.string, let n = ConfigReader.parseByteCount(s) { return n }
        wrong(value, at: key, expected: expected)
        return nil
    }

    static func parseByteCount(_ text: String) -> Int? {
        let s = text.trimmingBlanks().uppercased()
        let digits = s.prefix { $0.isASCII && $0.isNumber }
        guard !digits.isEmpty, let n = Int(digits) else { return nil }
        let unit = s.dropFirst(digits.count).drop { $0 == " " }
        var shifts: [Substring: Int] = ["": 0, "B": 0]
        for (i, prefix) in ["K", "M", "G", "T"].enumerated() {
            for spelling in ["", "B", "IB"] { shifts[Substring(prefix + spelling)] = 10 * (i + 1) }
        }
        guard let shift = shifts[unit] else { return nil }
        let (bytes, overflow) = n.multipliedReportingOverflow(by: 1 << shift)
        return overflow ? nil : bytes
    }

    // MARK: - Describing values

    /// `string "4"`, `integer 0`, `float 1.5`, `boolean true`, `array`, `table`, ...
    static func describe(_ value: TOMLValueConvertible) -> String {
        switch value.type {
        case .string:
            var s = value.string ?? ""
            if s.count > 60 { s = String(s.prefix(57)) + "..." }
            return "string \"\(s.replacingAll("\"", "\\\""))\""
        case .int: return "integer \(value.int ?? 0)"
        case .double: return "float \(value.double ?? 0)"
        case .bool: return "boolean \(value.bool ?? false)"
        case .array: return value.array.map { $0.isEmpty ? "an empty array" : "an array" } ?? "an array"
        case .table: return "a table"
        case .date, .time, .dateTime: return "\(value.type) \(value.debugDescription)"
        }
    }
}

extension String {
    /// Without leading and trailing spaces and tabs (without Foundation).
    func trimmingBlanks() -> String {
        let blank: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        return String(drop(while: blank).reversed().drop(while: blank).reversed())
    }
}
