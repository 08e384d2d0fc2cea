// systemd's notification protocol (sd_notify(3)), without libsystemd: datagrams of
// "NAME=value" lines sent to the unix socket named by NOTIFY_SOCKET (a path, or an
// abstract name written with a leading '@'). gsockd sends READY=1 once serving,
// RELOADING=1 then READY=1 around a SIGHUP reload, STOPPING=1 when it drains, STATUS=
// lines, and WATCHDOG=1 from the loop when systemd asks for it (WATCHDOG_USEC).
import Glibc

public struct SystemdNotifier: Sendable {
    /// The socket's address, as NOTIFY_SOCKET gives it; nil when not run by systemd.
    public let socketPath: String?
    /// How often systemd wants WATCHDOG=1, in seconds (WATCHDOG_USEC, for this process).
    public let watchdogInterval: Double?

    /// The notifier systemd set up for this process through its environment.
    public static var fromEnvironment: SystemdNotifier {
        let path = getenv("NOTIFY_SOCKET").map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 }
        var interval: Double?
        if let usec = getenv("WATCHDOG_USEC").flatMap({ Int(String(cString: $0)) }), usec > 0 {
            // WATCHDOG_PID, when set, names the process the watchdog is for.
            let pid = getenv("WATCHDOG_PID").flatMap { Int32(String(cString: $0)) }
            if pid == nil || pid == Glibc.getpid() { interval = Double(usec) / 1_000_000 }
        }
        return SystemdNotifier(socketPath: path, watchdogInterval: interval)
    }

    public init(socketPath: String?, watchdogInterval: Double? = nil) {
        self.socketPath = socketPath
        self.watchdogInterval = watchdogInterval
    }

    /// Sends `state` ("READY=1", "STATUS=...", several lines at once); false when there
    /// is no socket or the send failed (systemd is not listening: nothing to do then).
    /// RELOADING=1 gets the MONOTONIC_USEC that Type=notify-reload services must send.
    @discardableResult
    public func notify(_ state: String) -> Bool {
        guard let socketPath, var address = SystemdNotifier.address(socketPath) else { return false }
        var state = state
        if state.hasPrefix("RELOADING=1") || state.contains("\nRELOADING=1") {
            var now = timespec()
            clock_gettime(CLOCK_MONOTONIC, &now)
            state += "\nMONOTONIC_USEC=\(Int(now.tv_sec) * 1_000_000 + Int(now.tv_nsec) / 1000)"
        }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        let bytes = Array(state.utf8)
        let sent = withUnsafePointer(to: &address.0) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                bytes.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), sa, address.1) }
            }
        }
        return sent == bytes.count
    }

    /// sockaddr_un for NOTIFY_SOCKET: a path, or "@name" for an abstract socket.
    private static func address(_ text: String) -> (sockaddr_un, socklen_t)? {
        var sun = sockaddr_un()
        sun.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(text.utf8)
        let abstract = bytes.first == UInt8(ascii: "@")
        if abstract { bytes[0] = 0 }
        guard !bytes.isEmpty, bytes.count < MemoryLayout.size(ofValue: sun.sun_path) else { return nil }
        withUnsafeMutableBytes(of: &sun.sun_path) { $0.copyBytes(from: bytes) }
        let length = MemoryLayout<sa_family_t>.size + bytes.count + (abstract ? 0 : 1)
        return (sun, socklen_t(length))
    }
}
