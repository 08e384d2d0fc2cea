// Finding the Lua test files of `gsockd test` (SPEC §7): `*_test.lua` and `*_spec.lua`
// under the given paths, recursively, in a stable order.
//
// The walk skips directories named `fixtures`: they hold Lua files that tests run on
// purpose, such as the runner's own fixture suite, whose failures are deliberate. It
// also skips hidden directories (`.git`, `.build`) and symbolic links to directories,
// which could make it loop. A path given explicitly is always used, whatever its name:
// a directory is searched, a file is run even if its name does not end in _test.lua.
import Glibc

public enum TestDiscovery {
    /// Whether a file name is one of a test file.
    public static func isTestFile(_ name: String) -> Bool {
        name.hasSuffix("_test.lua") || name.hasSuffix("_spec.lua")
    }

    /// The test files under `paths`: each path's files sorted byte-wise, paths in the order
    /// given, duplicates dropped.
    /// - Throws: `TestRunnerError.usage` when a path does not exist.
    public static func files(in paths: [String]) throws -> [String] {
        var seen = Set<String>()
        var result: [String] = []
        for path in paths {
            let root = trimmingTrailingSlashes(path)
            var st = stat()
            guard stat(root, &st) == 0 else {
                throw TestRunnerError.usage("\(path): \(String(cString: strerror(errno)))")
            }
            var found: [String] = []
            if isDirectory(st) {
                walk(root, into: &found)
                found.sort { $0.utf8.lexicographicallyPrecedes($1.utf8) }
            } else {
                found = [root]
            }
            for file in found where seen.insert(file).inserted { result.append(file) }
        }
        return result
    }

    private static func walk(_ directory: String, into found: inout [String]) {
        guard let dir = opendir(directory) else { return }
        defer { closedir(dir) }
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: &entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: Int(NAME_MAX) + 1) { String(cString: $0) }
            }
            if name.hasPrefix(".") { continue }
            let path = directory == "/" ? "/" + name : directory + "/" + name
            var st = stat()
            guard lstat(path, &st) == 0 else { continue }
            if isDirectory(st) {
                if name != "fixtures" { walk(path, into: &found) }
            } else if st.st_mode & S_IFMT == S_IFREG || st.st_mode & S_IFMT == S_IFLNK, isTestFile(name) {
                found.append(path)
            }
        }
    }

    private static func isDirectory(_ st: stat) -> Bool { st.st_mode & S_IFMT == S_IFDIR }

    private static func trimmingTrailingSlashes(_ path: String) -> String {
        var p = Substring(path)
        while p.count > 1 && p.hasSuffix("/") { p = p.dropLast() }
        return String(p)
    }
}
