#if canImport(Glibc)
    import Glibc
#endif

/// The CPU time a process has used, from Linux's `/proc` (for benchmarks and tests that measure
/// what a process costs).
public enum ProcessCPU {
    /// The CPU seconds (user + system) process `pid` has used so far, or nil when `/proc` does not
    /// say (no such process, not Linux).
    public static func seconds(_ pid: Int32) -> Double? {
        let fd = open("/proc/\(pid)/stat", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 4096)
        let count = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard count > 0 else { return nil }
        return seconds(stat: String(decoding: bytes[..<count], as: UTF8.self))
    }

    /// The CPU seconds in the text of a `/proc/<pid>/stat` file: after the command's closing
    /// parenthesis (the command may hold spaces and parentheses), the state is field 3; utime and
    /// stime, in clock ticks, are fields 14 and 15.
    package static func seconds(stat text: String) -> Double? {
        guard let end = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: end)...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}
