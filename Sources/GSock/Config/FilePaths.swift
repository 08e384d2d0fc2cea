// File names and files for the config loader: paths in a config are relative to the
// config file, and the loader must make them absolute without Foundation and without
// resolving symbolic links (a path shown to the user should look like the one written).
import Glibc

enum FilePaths {
    enum Kind {
        case missing
        case directory
        case file
    }

    /// The process's working directory.
    static func currentDirectory() -> String {
        guard let cwd = getcwd(nil, 0) else { return "/" }
        defer { free(cwd) }
        return String(cString: cwd)
    }

    /// The directory part of `path`, lexically: "" for a bare file name.
    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "" }
        if slash == path.startIndex { return "/" }
        return String(path[..<slash])
    }

    /// `path` relative to `directory`, unless `path` is absolute; normalised.
    static func join(_ directory: String, _ path: String) -> String {
        if path.hasPrefix("/") || directory.isEmpty { return normalise(path) }
        return normalise(directory + "/" + path)
    }

    /// `path` made absolute against the working directory; normalised.
    static func absolute(_ path: String) -> String { join(currentDirectory(), path) }

    /// Removes `.`, empty components and `dir/..` pairs, lexically.
    static func normalise(_ path: String) -> String {
        let isAbsolute = path.hasPrefix("/")
        var parts: [Substring] = []
        for part in path.split(separator: "/", omittingEmptySubsequences: true) {
            switch part {
            case ".": continue
            case "..":
                if let last = parts.last, last != ".." {
                    parts.removeLast()
                } else if !isAbsolute {
                    parts.append(part)
                }
            default: parts.append(part)
            }
        }
        let joined = parts.joined(separator: "/")
        if isAbsolute { return "/" + joined }
        return joined.isEmpty ? "." : joined
    }

    static func kind(_ path: String) -> Kind {
        var st = stat()
        guard stat(path, &st) == 0 else { return .missing }
        return st.st_mode & S_IFMT == S_IFDIR ? .directory : .file
    }

    /// The whole file as UTF-8 (invalid bytes replaced), or the reason it cannot be read.
    static func read(_ path: String) -> Result<String, ReadError> {
        guard let file = fopen(path, "rb") else { return .failure(ReadError(errno: errno)) }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = fread(&chunk, 1, chunk.count, file)
            if n > 0 { bytes.append(contentsOf: chunk[..<n]) }
            if n < chunk.count {
                if ferror(file) != 0 { return .failure(ReadError(errno: errno)) }
                break
            }
        }
        return .success(String(decoding: bytes, as: UTF8.self))
    }

    struct ReadError: Error, CustomStringConvertible {
        var errno: Int32
        var description: String { String(cString: strerror(errno)) }
    }
}
