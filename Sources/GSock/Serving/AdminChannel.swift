// The admin channel between the supervisor and each worker (SPEC §9: with several
// workers, /metrics is one view of the group). Apart from WorkerChannel, whose requests
// come from the worker and block it for the reply, this one is asked by the supervisor:
// a SOCK_SEQPACKET pair per worker, both ends non-blocking and read by fibers waiting
// on them (gsock.wait_read), so neither side's loop ever blocks on the other. A request
// is "ID WHAT" (metrics, health, ready, dump, dumpjson); its reply is one or more
// messages "ID+DATA" then "ID.DATA" (a reply is cut into parts that fit a message). A
// worker that does not answer in time is left out; its late reply carries an old ID
// and is dropped.
import CLua
import CShims
import Glibc

enum AdminChannel {
    /// The variable that gives a worker the number of its end of the channel.
    static let variable = "GSOCKD_ADMIN_CHANNEL"
    /// The largest part of a reply: well under a unix socket's default send buffer.
    static let partSize = 32 * 1024

    /// A new channel: (supervisor's end, worker's end), both non-blocking; the worker's end
    /// is inherited (no close-on-exec).
    static func pair() -> (Int32, Int32)? {
        var ends: [Int32] = [-1, -1]
        let kind = Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue)
        guard socketpair(AF_UNIX, kind, 0, &ends) == 0 else { return nil }
        _ = fcntl(ends[1], F_SETFD, 0)
        return (ends[0], ends[1])
    }

    static let functions: [(String, LuaBody)] = [
        ("admin_channel", workerEnd), ("message_send", send), ("message_receive", receive),
    ]

    /// `admin_channel()` → this worker's end of the channel, or nil.
    private static let workerEnd: LuaBody = { L in
        guard let text = getenv(variable), let fd = Int32(String(cString: text)), fd >= 0,
              fcntl(fd, F_SETFD, FD_CLOEXEC) == 0 else { return 0 }
        lua_pushinteger(L!, lua_Integer(fd))
        return 1
    }

    /// `message_send(fd, text)` → true when sent, false when the socket is full (wait to
    /// write, then again), nil and the reason when the channel is gone.
    private static let send: LuaBody = { L in luaCall(L, send) }
    private static func send(_ L: LuaState) throws(LuaError) -> Int32 {
        let fd = Int32(try Arg.integer(L, 1, in: 0...Int(Int32.max)))
        var length = 0
        guard let p = lua_tolstring(L, 2, &length), lua_type(L, 2) == LUA_TSTRING else { throw .type(L, 2, "string") }
        let n = Glibc.send(fd, p, length, Int32(MSG_DONTWAIT) | Int32(MSG_NOSIGNAL))
        if n == length {
            lua_pushboolean(L, 1)
            return 1
        }
        if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
            lua_pushboolean(L, 0)
            return 1
        }
        lua_pushnil(L)
        lua_pushstring(L, n < 0 ? String(cString: strerror(errno)) : "message cut short")
        return 2
    }

    /// `message_receive(fd)` → the next message, false when none is there yet, nil at the
    /// end (the other side is gone).
    private static let receive: LuaBody = { L in luaCall(L, receive) }
    private static func receive(_ L: LuaState) throws(LuaError) -> Int32 {
        let fd = Int32(try Arg.integer(L, 1, in: 0...Int(Int32.max)))
        let capacity = partSize + 256
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 1)
        defer { buffer.deallocate() }
        let n = recv(fd, buffer, capacity, Int32(MSG_DONTWAIT))
        if n > 0 {
            lua_pushlstring(L, buffer.assumingMemoryBound(to: CChar.self), n)
        } else if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
            lua_pushboolean(L, 0)
        } else {
            lua_pushnil(L)
        }
        return 1
    }
}
