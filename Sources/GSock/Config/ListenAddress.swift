// Listen addresses of a config file: `HOST:PORT`, `[IPV6]:PORT`, `:PORT` (all
// interfaces) or `unix:/path`, the grammar of gsock.server (server.lua). They are
// parsed without resolving any name, to report bad ones and to find two services that
// would bind the same address.
import Glibc

struct ListenAddress: Equatable {
    enum Host: Equatable {
        /// Canonical text (inet_ntop's), "0.0.0.0" for all interfaces.
        case ipv4(String)
        /// Canonical text, "::" for all interfaces.
        case ipv6(String)
        /// A host name, lower-cased; resolved only when the server binds.
        case name(String)

        var isWildcard: Bool { self == .ipv4("0.0.0.0") || self == .ipv6("::") }

        func sameFamily(_ other: Host) -> Bool {
            switch (self, other) {
            case (.ipv4, .ipv4), (.ipv6, .ipv6): return true
            default: return false
            }
        }
    }

    enum Endpoint: Equatable {
        case tcp(Host, port: Int)
        case unix(path: String)
    }

    /// How two addresses of the same config collide.
    enum Collision {
        /// The same address, however spelt (`:7000`, `*:7000`, `0.0.0.0:7000`).
        case same
        /// All interfaces of one family, and an address of that family, on one port.
        case overlap
    }

    static let forms = "HOST:PORT, [IPV6]:PORT, :PORT or unix:/path"

    let endpoint: Endpoint

    /// Parses `text`.
    /// - Returns: the address, or the message that says why it is bad.
    static func parse(_ text: String) -> Result<ListenAddress, BadAddress> {
        func bad(_ reason: String = "expected \(forms)") -> Result<ListenAddress, BadAddress> {
            .failure(BadAddress(message: "bad address '\(text)' (\(reason))"))
        }
        if text.hasPrefix("unix:") {
            let path = text.dropFirst(5)
            guard !path.isEmpty else { return bad("a unix socket needs a path: unix:/path") }
            // Bound as written, so the limit is on these bytes, not on the normalised path.
            let limit = SocketAddress.maxUnixPathBytes
            guard path.utf8.count <= limit else {
                return bad("a unix socket path is at most \(limit) bytes, this one is \(path.utf8.count)")
            }
            return .success(ListenAddress(endpoint: .unix(path: FilePaths.normalise(String(path)))))
        }
        guard let colon = text.lastIndex(of: ":") else { return bad() }
        let hostText = text[..<colon]
        let portText = text[text.index(after: colon)...]
        guard !portText.isEmpty, portText.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return bad() }
        guard portText.count <= 5, let port = Int(portText), port <= 65535 else {
            return bad("port \(portText) is not in 0-65535")
        }
        let host: Host
        if hostText.hasPrefix("[") {
            guard hostText.hasSuffix("]"), hostText.count > 2 else { return bad() }
            let inner = String(hostText.dropFirst().dropLast())
            guard let canonical = canonicalIPv6(inner) else { return bad("'\(inner)' is not an IPv6 address") }
            host = .ipv6(canonical)
        } else if hostText.contains(where: { $0 == ":" || $0 == "[" || $0 == "]" }) {
            return bad("an IPv6 address needs brackets: [\(hostText)]:\(portText)")
        } else if hostText.isEmpty || hostText == "*" {
            host = .ipv4("0.0.0.0")
        } else if let canonical = canonicalIPv4(String(hostText)) {
            host = .ipv4(canonical)
        } else if hostText.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2E }) {
            return bad("'\(hostText)' is not an IPv4 address")
        } else if isHostName(hostText) {
            host = .name(hostText.lowercased())
        } else {
            return bad("'\(hostText)' is not a host name or address")
        }
        return .success(ListenAddress(endpoint: .tcp(host, port: port)))
    }

    /// Whether this is a TCP address on all interfaces of its family.
    var isAllInterfaces: Bool {
        if case .tcp(let host, _) = endpoint { return host.isWildcard }
        return false
    }

    /// Whether this address and `other` cannot both be listened on. Port 0 (any free
    /// port) never collides; host names collide only with the same name, since they
    /// are not resolved here.
    func collision(with other: ListenAddress) -> Collision? {
        switch (endpoint, other.endpoint) {
        case (.unix(let a), .unix(let b)):
            return a == b ? .same : nil
        case (.tcp(let a, let p), .tcp(let b, let q)):
            guard p == q, p != 0 else { return nil }
            if a == b { return .same }
            if a.sameFamily(b) && (a.isWildcard || b.isWildcard) { return .overlap }
            return nil
        default:
            return nil
        }
    }

    private static func canonicalIPv4(_ text: String) -> String? {
        var address = in_addr()
        guard inet_pton(AF_INET, text, &address) == 1 else { return nil }
        return addressText(AF_INET, &address, size: Int(INET_ADDRSTRLEN))
    }

    /// The canonical form of an IPv6 address, keeping a `%zone` suffix.
    private static func canonicalIPv6(_ text: String) -> String? {
        let parts = text.split(separator: "%", maxSplits: 1, omittingEmptySubsequences: false)
        var address = in6_addr()
        guard inet_pton(AF_INET6, String(parts[0]), &address) == 1 else { return nil }
        guard let canonical = addressText(AF_INET6, &address, size: Int(INET6_ADDRSTRLEN)) else { return nil }
        let zone = parts.count > 1 ? "%" + parts[1] : ""
        return canonical + zone
    }

    /// inet_ntop's text for a binary address.
    private static func addressText(_ family: Int32, _ address: UnsafeRawPointer, size: Int) -> String? {
        var buffer = [CChar](repeating: 0, count: size)
        return buffer.withUnsafeMutableBufferPointer { b in
            guard inet_ntop(family, address, b.baseAddress, socklen_t(b.count)) != nil else { return nil }
            return String(cString: b.baseAddress!)
        }
    }

    /// Letters, digits, `-`, `_` and `.`: what getaddrinfo would look up.
    private static func isHostName(_ text: Substring) -> Bool {
        text.utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A)
                || c == 0x2D || c == 0x5F || c == 0x2E
        }
    }
}

/// Why a listen address is bad: `bad address 'X' (expected ...)`.
struct BadAddress: Error {
    var message: String
}
