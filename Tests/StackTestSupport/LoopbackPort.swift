import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// TCP ports on 127.0.0.1 for processes that need a fixed one (nginx, a restarted server).
public enum LoopbackPort {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String { "no free loopback port" }
    }

    /// A port nobody listens on right now: the kernel's choice, released at once. It lies in the
    /// range the kernel hands to outgoing connections: for a server that is stopped and started
    /// again on the same port, take `reusable()`.
    public static func free() throws -> Int {
        guard let port = bound(0) else { throw Failure() }
        return port
    }

    /// A port nobody listens on right now, below the kernel's range for outgoing connections
    /// (`/proc/sys/net/ipv4/ip_local_port_range`): for a server stopped and started again on the
    /// same port, which a port of that range may not be by then (any outgoing connection, or
    /// another test's `free()`, can take it meanwhile: `bind` then fails with EADDRINUSE).
    public static func reusable() throws -> Int {
        let range = try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8)
        let low = range?.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).first.flatMap { Int($0) } ?? 32_768
        let candidates = 10_000..<max(10_001, min(low, 65_536))
        for _ in 0..<200 {
            if let port = bound(Int.random(in: candidates)) { return port }
        }
        throw Failure()
    }

    /// Binds a socket to 127.0.0.1:`port` (0: the kernel's choice) and closes it: the port bound,
    /// or nil when it is taken.
    private static func bound(_ port: Int) -> Int? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let result = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer -> Int32 in
                guard bind(fd, pointer, length) == 0 else { return -1 }
                return getsockname(fd, pointer, &length)
            }
        }
        guard result == 0 else { return nil }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
