// Socket activation (SPEC §9): systemd (or systemd-socket-activate) binds the listeners
// and passes them as descriptors 3, 4, ... with LISTEN_FDS = their count, LISTEN_PID =
// the pid they are for and LISTEN_FDNAMES = their names (FileDescriptorName=), as
// sd_listen_fds_with_names reads them; no libsystemd needed. gsockd takes them at start,
// before it binds anything, so that connections queued while it restarts are served:
//
// - a descriptor named after a service becomes that service's listener: the service
//   listens on every descriptor of its name, instead of on its `listen` addresses;
// - one without a name (no LISTEN_FDNAMES, or systemd's default name: the socket unit's,
//   "NAME.socket") replaces the `listen` address it is bound to (getsockname).
//
// The variables are unset once read (children do not take the descriptors again) and the
// descriptors made close-on-exec. With workers the supervisor holds them and hands them
// out on the "get ADDRESS" path; a worker learns its services' new addresses from
// `GSOCKD_LISTEN`. A passed unix socket's file is systemd's: gsockd never removes it.
import Glibc

public struct SocketActivation {
    /// A descriptor systemd passed, and the service that listens on it.
    public struct Listener {
        public let fd: Int32
        /// Where it listens, as gsock.server writes addresses (`127.0.0.1:7000`, `unix:/path`).
        public let address: String
        public let service: String
        /// Its LISTEN_FDNAMES name, when one named the service.
        public let name: String?
    }

    /// What LISTEN_FDS did.
    public enum Outcome {
        /// No descriptors were passed.
        case none
        /// The variables were for another process (LISTEN_PID), as sd_listen_fds ignores them: why.
        case ignored(String)
        /// The descriptors, each matched to a service.
        case taken(SocketActivation)
    }

    /// Why the passed descriptors cannot be used (exit 2): one line per problem.
    public struct Problems: Error {
        public let lines: [String]
    }

    public static let variables = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"]
    /// The variable that gives a worker the `listen` lists the supervisor's passed
    /// descriptors replaced: `SERVICE\tADDRESS\tADDRESS...` lines.
    public static let workerVariable = "GSOCKD_LISTEN"
    static let firstDescriptor: Int32 = 3

    public private(set) var listeners: [Listener] = []
    /// The services whose `listen` addresses the passed descriptors replaced, with the new lists.
    public private(set) var listen: [String: [String]] = [:]

    /// Reads (and unsets) LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES and matches every
    /// descriptor to a service of `config`.
    public static func take(for config: ServerConfig) -> Result<Outcome, Problems> {
        let values = variables.map { name in getenv(name).map { String(cString: $0) } }
        for name in variables { unsetenv(name) }
        guard let count = values[1] else { return .success(.none) }
        guard let pidText = values[0], let pid = pid_t(pidText), pid == getpid() else {
            return .success(.ignored("LISTEN_FDS=\(count) is for pid \(values[0] ?? "(no LISTEN_PID)"), "
                + "not this process (pid \(getpid())): the descriptors are not used"))
        }
        guard let n = Int32(count), n >= 0, n <= 4096 else {
            return .failure(Problems(lines: ["LISTEN_FDS: '\(count)' is not a number of descriptors"]))
        }
        if n == 0 { return .success(.none) }
        var names: [String?] = Array(repeating: nil, count: Int(n))
        if let text = values[2] {
            let given = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            guard given.count == Int(n) else {
                return .failure(Problems(lines: [
                    "LISTEN_FDNAMES names \(given.count) descriptor(s) but LISTEN_FDS passes \(n)"]))
            }
            names = given.map { $0 }
        }
        var activation = SocketActivation()
        var problems: [String] = []
        let services = Dictionary(config.services.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        var byName: [String: [String]] = [:]
        var replaced: [String: [Int: String]] = [:]   // service: index in `listen` -> the passed address
        for i in 0..<n {
            let fd = firstDescriptor + i
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            let given = names[Int(i)]
            let named = given.flatMap { services[$0] != nil ? $0 : nil }
            if let name = given, named == nil, !isDefaultName(name) {
                let known = config.services.map(\.name).joined(separator: ", ")
                problems.append("fd \(fd) is named '\(name)' (LISTEN_FDNAMES) but no service has that name "
                    + "(the services: \(known))")
                continue
            }
            let what = named.map { "fd \(fd) (named '\($0)') for service \($0)" } ?? "fd \(fd)"
            let socket: PassedSocket
            switch PassedSocket.inspect(fd) {
            case .failure(let reason):
                problems.append("\(what) \(reason.text); a service needs a listening TCP or unix stream socket")
                continue
            case .success(let s): socket = s
            }
            if let service = named {
                byName[service, default: []].append(socket.address)
                activation.listeners.append(Listener(fd: fd, address: socket.address, service: service, name: service))
                continue
            }
            let matches = config.services.flatMap { s in
                s.listen.enumerated().compactMap { index, text in socket.isBound(to: text) ? (s.name, index) : nil }
            }
            guard let (service, index) = matches.first else {
                problems.append("fd \(fd) listens on \(socket.address), which is no service's listen address, and "
                    + "has no service's name (LISTEN_FDNAMES); name it with FileDescriptorName=SERVICE")
                continue
            }
            if replaced[service]?[index] != nil {
                problems.append("fd \(fd) listens on \(socket.address) as another passed descriptor does")
                continue
            }
            replaced[service, default: [:]][index] = socket.address
            activation.listeners.append(Listener(fd: fd, address: socket.address, service: service, name: nil))
        }
        for service in replaced.keys.sorted() where byName[service] != nil {
            let fds = activation.listeners.filter { $0.service == service && $0.name == nil }.map { "fd \($0.fd)" }
            problems.append("\(fds.joined(separator: ", ")) listen(s) on an address of service \(service), which "
                + "has sockets named after it (LISTEN_FDNAMES) and listens on those only")
        }
        guard problems.isEmpty else { return .failure(Problems(lines: problems)) }
        for s in config.services {
            if let addresses = byName[s.name] {
                activation.listen[s.name] = addresses
            } else if let some = replaced[s.name] {
                activation.listen[s.name] = s.listen.enumerated().map { some[$0.offset] ?? $0.element }
            }
        }
        return .success(.taken(activation))
    }

    /// systemd's name for a descriptor the socket unit does not name: the unit's name.
    private static func isDefaultName(_ name: String) -> Bool {
        name.isEmpty || name == "unknown" || name.hasSuffix(".socket")
    }

    /// The passed descriptors by address, for the supervisor to hand to its workers.
    public var descriptors: [String: Int32] {
        Dictionary(listeners.map { ($0.address, $0.fd) }, uniquingKeysWith: { a, _ in a })
    }

    /// One line per listener for the log.
    public var summary: [String] {
        listeners.map { l in
            "service \(l.service): listening on the socket systemd passed, fd \(l.fd) (\(l.address))"
                + (l.name == nil ? ", matched by address" : ", named \(l.name!)")
        }
    }

    /// Gives each service of `config` the addresses its passed descriptors listen on.
    public static func apply(_ listen: [String: [String]], to config: inout ServerConfig) {
        for i in config.services.indices {
            if let addresses = listen[config.services[i].name] { config.services[i].listen = addresses }
        }
    }

    /// This process's servers find the descriptors by address (server.lua asks
    /// `shared_listener(ADDRESS)`); each is handed out once.
    public func register() {
        for l in listeners { passedListeners[l.address] = l.fd }
    }

    /// The passed descriptor listening on `address`, taken (it is the caller's to close), or nil.
    static func takeListener(_ address: String) -> Int32? {
        passedListeners.removeValue(forKey: address)
    }

    /// `GSOCKD_LISTEN=...` for the supervisor's workers, or nil when no service's addresses changed.
    public var workerEnvironment: String? {
        guard !listen.isEmpty else { return nil }
        let lines = listen.keys.sorted().map { ([$0] + listen[$0]!).joined(separator: "\t") }
        return "\(SocketActivation.workerVariable)=" + lines.joined(separator: "\n")
    }

    /// In a worker: the `listen` lists its supervisor's passed descriptors replaced.
    public static var inheritedListen: [String: [String]] {
        guard let text = getenv(workerVariable).map({ String(cString: $0) }) else { return [:] }
        var result: [String: [String]] = [:]
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: "\t").map(String.init)
            if fields.count > 1 { result[fields[0]] = Array(fields.dropFirst()) }
        }
        return result
    }
}

nonisolated(unsafe) private var passedListeners: [String: Int32] = [:]

/// A passed descriptor, checked to be a listening stream socket.
private struct PassedSocket {
    let fd: Int32
    let family: Int32
    let name: SocketAddress
    /// As gsock.server writes it.
    let address: String

    /// The socket on `fd`, or why it is not one a service can listen on.
    static func inspect(_ fd: Int32) -> Result<PassedSocket, Reason> {
        var st = stat()
        guard fstat(fd, &st) == 0 else { return .failure(Reason("is not open (\(Syscall.lastErrorText()))")) }
        guard st.st_mode & S_IFMT == S_IFSOCK else { return .failure(Reason("is not a socket")) }
        let (_, type) = Syscall.getsockopt(fd, SOL_SOCKET, SO_TYPE, Int32(0))
        let (_, family) = Syscall.getsockopt(fd, SOL_SOCKET, SO_DOMAIN, Int32(0))
        let (_, listening) = Syscall.getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, Int32(0))
        let kind = family == AF_UNIX ? "unix" : family == AF_INET || family == AF_INET6 ? "" : "non-IP"
        guard [AF_INET, AF_INET6, AF_UNIX].contains(family) else {
            return .failure(Reason("is a socket of family \(family), not TCP or unix"))
        }
        if type == Int32(SOCK_DGRAM.rawValue) {
            return .failure(Reason("is a \(kind.isEmpty ? "UDP" : "unix datagram") socket"))
        }
        guard type == Int32(SOCK_STREAM.rawValue) else {
            return .failure(Reason("is a \(kind.isEmpty ? "" : kind + " ")socket of type \(type), not a stream socket"))
        }
        guard listening != 0 else { return .failure(Reason("is a \(kind.isEmpty ? "TCP" : kind) socket that is not listening")) }
        guard case (.ok, let name?) = Syscall.name(of: fd, peer: false) else {
            return .failure(Reason("has no address (getsockname: \(Syscall.lastErrorText()))"))
        }
        let address: String
        if family == AF_UNIX {
            let path = name.unixPath
            guard !path.isEmpty else { return .failure(Reason("is an abstract or unnamed unix socket")) }
            address = "unix:" + path
        } else {
            let (host, port, _) = name.hostPortFamily
            address = family == AF_INET6 ? "[\(host)]:\(port)" : "\(host):\(port)"
        }
        return .success(PassedSocket(fd: fd, family: family, name: name, address: address))
    }

    /// Whether this socket is bound to the config address `text` (host names are resolved).
    func isBound(to text: String) -> Bool {
        guard case .success(let wanted) = ListenAddress.parse(text) else { return false }
        switch wanted.endpoint {
        case .unix(let path):
            return family == AF_UNIX && FilePaths.absolute(path) == FilePaths.absolute(name.unixPath)
        case .tcp(let host, let port):
            guard family != AF_UNIX else { return false }
            let (mine, myPort, _) = name.hostPortFamily
            guard port == myPort else { return false }
            switch host {
            case .ipv4(let a):
                // systemd's `ListenStream=PORT` is [::]:PORT taking IPv4 too: all interfaces (`:PORT`).
                if a == "0.0.0.0" && family == AF_INET6 && mine == "::" { return !isV6Only }
                return family == AF_INET && a == mine
            case .ipv6(let a): return family == AF_INET6 && a == mine
            case .name(let n): return PassedSocket.addresses(of: n).contains(mine)
            }
        }
    }

    var isV6Only: Bool { Syscall.getsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, Int32(0)).1 != 0 }

    /// The numeric addresses a host name resolves to (getaddrinfo, at start: no loop yet).
    static func addresses(of host: String) -> [String] {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &list) == 0 else { return [] }
        defer { freeaddrinfo(list) }
        var result: [String] = []
        var p = list
        while let ai = p {
            result.append(SocketAddress(addrinfo: ai).hostPortFamily.host)
            p = ai.pointee.ai_next
        }
        return result
    }

    struct Reason: Error {
        let text: String
        init(_ text: String) { self.text = text }
    }
}
