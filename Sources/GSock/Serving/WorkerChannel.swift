// The channel between the supervisor and each worker (SPEC §6 `workers`): a
// SOCK_SEQPACKET socket pair, one message per request and one per reply. A worker asks
// for the listener of an address ("get ADDRESS": "fd" with the descriptor, or "none"),
// hands over a listener it bound ("put ADDRESS\tFILE-IDENTITY" with the descriptor: the
// supervisor keeps it, so every worker accepts from that one socket and its queue
// outlives any worker), and says when it serves ("ready", after starting and after each
// reload), and asks for the TLS session ticket keys all workers share ("ticket-keys": the
// keys in hex). The supervisor's side is in Supervisor.swift.
import CShims
import Glibc

enum WorkerChannel {
    /// The variable that gives a worker the number of its end of the channel.
    static let variable = "GSOCKD_CHANNEL"
    /// The longest message: an address (a unix path is at most 107 bytes) and an identity.
    static let capacity = 1024
    /// How long a worker waits for the supervisor's reply.
    static let replyTimeout: Int32 = 10_000

    /// This worker's end of the channel; -1 when the process is no worker.
    static let workerEnd: Int32 = {
        guard let text = getenv(variable), let fd = Int32(String(cString: text)), fd >= 0,
              fcntl(fd, F_SETFD, FD_CLOEXEC) == 0 else { return -1 }
        return fd
    }()

    /// A request to the supervisor and its reply (text and a descriptor or -1), or nil
    /// when this is no worker or the supervisor is gone or does not answer.
    static func request(_ text: String, passing fd: Int32 = -1) -> (reply: String, fd: Int32)? {
        let channel = workerEnd
        guard channel >= 0 else { return nil }
        let bytes = Array(text.utf8)
        guard bytes.count <= capacity,
              bytes.withUnsafeBytes({ gs_send_message(channel, $0.baseAddress, $0.count, fd) }) == bytes.count
        else { return nil }
        var ready = pollfd(fd: channel, events: Int16(POLLIN), revents: 0)
        while true {
            let n = poll(&ready, 1, replyTimeout)
            if n > 0 { break }
            if n == 0 || errno != EINTR { return nil }
        }
        return receive(channel)
    }

    /// One message from `channel`: nil at EOF or on failure.
    static func receive(_ channel: Int32) -> (reply: String, fd: Int32)? {
        var buffer = [UInt8](repeating: 0, count: capacity)
        var received: Int32 = -1
        let n = buffer.withUnsafeMutableBytes { gs_recv_message(channel, $0.baseAddress, $0.count, &received) }
        guard n > 0 else { return nil }
        return (String(decoding: buffer[..<n], as: UTF8.self), received)
    }

    /// Sends a reply (or any message) on `channel`; false if it could not be sent.
    @discardableResult
    static func send(_ channel: Int32, _ text: String, passing fd: Int32 = -1) -> Bool {
        let bytes = Array(text.utf8)
        return bytes.withUnsafeBytes { gs_send_message(channel, $0.baseAddress, $0.count, fd) } == bytes.count
    }
}

/// A file's type and "device:inode", as lstat sees it (a link is not followed).
struct FileIdentity: Equatable {
    enum Kind: String { case socket, file, directory, other }
    let kind: Kind
    let id: String

    /// The identity of what is at `path`, or the errno of lstat's failure.
    static func of(_ path: String) -> Result<FileIdentity, Errno> {
        var st = stat()
        guard lstat(path, &st) == 0 else { return .failure(Errno(code: errno)) }
        let kind: Kind
        switch st.st_mode & S_IFMT {
        case S_IFSOCK: kind = .socket
        case S_IFREG: kind = .file
        case S_IFDIR: kind = .directory
        default: kind = .other
        }
        return .success(FileIdentity(kind: kind, id: "\(st.st_dev):\(st.st_ino)"))
    }

    struct Errno: Error {
        let code: Int32
        var message: String { String(cString: strerror(code)) }
    }
}
