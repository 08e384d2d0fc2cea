// `gsockd check [CONFIG | FILE.lua]`: validates a config and compiles its handlers, or
// compiles one Lua file, without binding anything (like `nginx -t`, which runs init_by_lua,
// the handlers' top level runs: it is what builds the handler table to check).
import ArgumentParser
import GSock

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check a config file or a Lua file without running anything.",
        discussion: """
            A config file (default: \(ConfigLoader.defaultPath)) is read and validated: every \
            key, type and address, every handler compiled, no two services on one address. \
            All the problems are printed at once, one per line as FILE:LINE: KEY: PROBLEM. \
            Then each handler file is loaded (its top level runs, its init does not) and the \
            handler it returns is checked: an unknown key or a wrong type is a problem. \
            A file whose name ends in .lua is only compiled. Nothing is bound.
            Exit status: 0 when it is good, 2 when it is not.
            """)

    @Argument(help: ArgumentHelp(
        "The config file, or a Lua file to compile.",
        valueName: "config-or-lua-file"))
    var file: String = ConfigLoader.defaultPath

    @OptionGroup var logging: LogOptions

    func run() throws {
        logging.bootstrap()
        if file.hasSuffix(".lua") {
            do {
                try LuaSyntax.check(file: file)
            } catch {
                fail("\(error)", status: 2)
            }
            print("\(file): ok")
            return
        }
        let config: ServerConfig
        do {
            config = try ConfigLoader.load(path: file)
        } catch let error as ConfigError {
            fail(error.problems.map(\.description).joined(separator: "\ngsockd: "), status: 2)
        } catch {
            fail("\(file): \(error)", status: 2)
        }
        for warning in config.warnings { printError("gsockd: warning: \(warning)") }
        checkHandlers(of: config)
        let names = config.services.map(\.name)
        let count = names.count == 1 ? "1 service" : "\(names.count) services"
        print("\(file): ok (\(count): \(names.joined(separator: ", ")))")
    }
}

/// Loads each service's handler and checks the table it returns; exits 2 on a problem.
private func checkHandlers(of config: ServerConfig) {
    let runtime: Runtime
    do {
        runtime = try Runtime(options: Runtime.Options())
    } catch {
        fail("\(error)", status: 1)
    }
    do {
        if case .badUsage(let message) = try runtime.checkHandlers(config: config) { fail(message, status: 2) }
    } catch {
        fail("\(error)", status: 2)
    }
}
