// Which descriptors Lua code may hand to libev (gsock.wait_*, gsock.io, socket.select).
//
// libev aborts the process when epoll_ctl refuses a watcher's descriptor with an error it
// does not expect: a descriptor that is not open (EBADF), or one of the loop's own (its
// epoll fd, eventfd, signalfd: EINVAL, as epoll cannot watch itself). The fcntl check
// alone passes the loop's own descriptors, which are open, so they are recognised by
// what they are: the runtime owns every epoll, eventfd and signalfd descriptor (Lua code
// has no way to make one), and a descriptor the runtime owns is refused as if it were
// not open, EBADF, the error SPEC §3 gives for a descriptor that is not open.
// A regular file is accepted: epoll_ctl says EPERM, which libev handles (it reports
// the file always ready).
import Glibc

enum WaitableDescriptor {
    /// nil when `fd` may be watched, else the errno to report.
    static func refusal(_ fd: Int) -> Int32? {
        guard fd >= 0, fd <= Int(Int32.max), Syscall.isOpen(Int32(fd)) else { return EBADF }
        return isRuntimeOwned(Int32(fd)) ? EBADF : nil
    }

    static func isRuntimeOwned(_ fd: Int32) -> Bool {
        var buf = [CChar](repeating: 0, count: 64)
        let n = readlink("/proc/self/fd/\(fd)", &buf, buf.count - 1)
        guard n > 0 else { return false }
        let target = String(cString: buf)
        return target == "anon_inode:[eventpoll]" || target == "anon_inode:[eventfd]"
            || target == "anon_inode:[signalfd]"
    }
}
