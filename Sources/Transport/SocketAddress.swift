public import Glibc
public import SystemIO
import Wire

/// Unix-domain socket plumbing shared by the server and the client.
public enum UnixSocket {
    /// Builds a `sockaddr_un` for `path` and runs `body` with it. Fails when the path does not fit.
    static func withAddress<T>(
        _ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> T
    ) throws(SystemError) -> T {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard bytes.count < capacity else {
            throw SystemError("socket path", "\(path) (longer than \(capacity - 1) bytes)", errno: ENAMETOOLONG)
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
    }

    /// Creates, binds and listens on a Unix socket at `path` with file mode `mode`.
    ///
    /// A stale socket file (nobody accepting) is replaced; a live one is an error, so two
    /// processes never silently share a path.
    public static func listen(path: String, mode: mode_t, backlog: Int32 = 1024) throws(SystemError) -> Int32 {
        var info = stat()
        if lstat(path, &info) == 0 {
            guard info.st_mode & S_IFMT == S_IFSOCK else {
                throw SystemError("bind", "\(path) (exists and is not a socket)", errno: EEXIST)
            }
            if let probe = try? connect(path: path) {
                close(probe)
                throw SystemError("bind", "\(path) (another process is serving it)", errno: EADDRINUSE)
            }
            unlink(path)
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemError("socket", path) }
        let previous = umask(~mode & 0o777)
        let bound = try withAddress(path) { bind(fd, $0, $1) }
        umask(previous)
        guard bound == 0 else {
            let error = SystemError("bind", path)
            close(fd)
            throw error
        }
        chmod(path, mode)
        guard Glibc.listen(fd, backlog) == 0 else {
            let error = SystemError("listen", path)
            close(fd)
            throw error
        }
        return fd
    }

    /// Connects a blocking stream socket to `path`.
    public static func connect(path: String) throws(SystemError) -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemError("socket", path) }
        while true {
            let result = try withAddress(path) { Glibc.connect(fd, $0, $1) }
            if result == 0 { return fd }
            if errno == EINTR { continue }
            let error = SystemError("connect", path)
            close(fd)
            throw error
        }
    }

    /// Writes all of `bytes` to a blocking descriptor (finishing partial writes, retrying EINTR).
    public static func writeAll(_ fd: Int32, _ bytes: [UInt8]) throws(SystemError) {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if written < 0 {
                if errno == EINTR { continue }
                throw SystemError("send")
            }
            offset += written
        }
    }

    /// Raises the soft limit of open files to the hard limit (servers hold many connections);
    /// returns the soft limit in force afterwards.
    @discardableResult
    public static func raiseOpenFileLimit() -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 1024 }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        return limit.rlim_cur == rlim_t.max ? Int(Int32.max) : Int(clamping: limit.rlim_cur)
    }

    /// Ignores SIGPIPE process-wide: a vanished peer is an error return, never a signal.
    public static func ignoreSIGPIPE() {
        signal(SIGPIPE, SIG_IGN)
    }
}

/// Who is on the other end of a Unix socket (`SO_PEERCRED`).
public struct PeerCredentials: Hashable, Sendable, CustomStringConvertible {
    public var pid: Int32
    public var uid: UInt32
    public var gid: UInt32

    public var description: String { "pid=\(pid) uid=\(uid) gid=\(gid)" }
}
