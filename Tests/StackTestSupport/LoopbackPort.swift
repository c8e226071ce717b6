#if canImport(Glibc)
    import Glibc
#endif

/// TCP ports on 127.0.0.1 for processes that need a fixed one (nginx, a restarted server).
public enum LoopbackPort {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String { "no free loopback port" }
    }

    /// A port nobody listens on right now: the kernel's choice, released at once.
    public static func free() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer -> Int32 in
                guard bind(fd, pointer, length) == 0 else { return -1 }
                return getsockname(fd, pointer, &length)
            }
        }
        guard bound == 0 else { throw Failure() }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
