// What is wrong with a config file. Loading collects every problem before it reports,
// so that one run of `gsockd check` shows all the mistakes at once (SPEC §6).

/// One mistake in a config file: where it is and what was expected.
///
/// Its description reads like a compiler's:
/// `config/gsockd.toml:7: services.echo.listen[2]: bad address 'localhost' (expected ...)`.
public struct ConfigProblem: CustomStringConvertible, Equatable, Sendable {
    /// The config file, as it was named to the loader.
    public var file: String
    /// The key path (`services.echo.listen[2]`; array indexes count from 1, as in Lua),
    /// or nil for a problem with the whole file.
    public var key: String?
    /// The line of the file the problem is on, when known.
    public var line: Int?
    /// The column, for TOML syntax errors.
    public var column: Int?
    /// What is wrong and what was expected.
    public var message: String

    /// Creates a problem.
    /// - Parameters:
    ///   - file: the config file.
    ///   - key: the key path, nil for the whole file.
    ///   - line: the line, when known.
    ///   - column: the column, when known.
    ///   - message: what is wrong and what was expected.
    public init(file: String, key: String? = nil, line: Int? = nil, column: Int? = nil, message: String) {
        self.file = file
        self.key = key
        self.line = line
        self.column = column
        self.message = message
    }

    public var description: String {
        var place = file
        if let line {
            place += ":\(line)"
            if let column { place += ":\(column)" }
        }
        if let key { return "\(place): \(key): \(message)" }
        return "\(place): \(message)"
    }
}

/// A config file that cannot be used: every problem found in it, in file order.
public struct ConfigError: Error, CustomStringConvertible, Sendable {
    /// The problems, at least one.
    public var problems: [ConfigProblem]

    /// Creates the error.
    /// - Parameter problems: the problems found.
    public init(problems: [ConfigProblem]) {
        self.problems = problems
    }

    /// One problem per line.
    public var description: String {
        problems.map(\.description).joined(separator: "\n")
    }
}
