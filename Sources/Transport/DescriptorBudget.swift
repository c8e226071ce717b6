import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// The descriptors a server may spend on connections: its open-file limit (`RLIMIT_NOFILE`,
/// raised to the hard limit first) less those open already and a reserve for the files it still
/// has to open (log segments, snapshots, connections of its own). Connection limits derived from
/// it can never take the descriptor a segment roll or a snapshot needs.
public struct DescriptorBudget: Sendable, CustomStringConvertible {
    /// The open-file limit.
    public let limit: Int
    /// Descriptors open when it was measured.
    public let open: Int
    /// Descriptors kept for files and outgoing connections.
    public let reserve: Int

    /// What is left for connections.
    public var available: Int { max(0, limit - open - reserve) }

    public init(limit: Int, open: Int, reserve: Int) {
        self.limit = limit
        self.open = open
        self.reserve = reserve
    }

    /// Raises the soft open-file limit to the hard one and measures, keeping `reserve`.
    public static func measure(reserve: Int) -> DescriptorBudget {
        DescriptorBudget(limit: UnixSocket.raiseOpenFileLimit(), open: openDescriptorCount(), reserve: reserve)
    }

    /// The number of descriptors open in this process (the entries of `/proc/self/fd`).
    public static func openDescriptorCount() -> Int {
        guard let directory = opendir("/proc/self/fd") else { return 0 }
        defer { closedir(directory) }
        var count = 0
        while let entry = readdir(directory) {
            if UInt8(bitPattern: entry.pointee.d_name.0) != UInt8(ascii: ".") { count += 1 }
        }
        // The directory being read is one of them.
        return max(0, count - 1)
    }

    /// `requested` connections, or fewer when the budget (shared `ways` ways) holds less.
    public func cap(_ requested: Int, ways: Int = 1) -> Int { min(requested, available / max(1, ways)) }

    /// Why a start-up with fewer than `needed` connections must fail, naming the setting.
    public func tooFew(_ needed: Int) -> String {
        "the open-file limit of \(limit) (RLIMIT_NOFILE: LimitNOFILE= in the unit, ulimit -n) leaves \(available) descriptors for connections "
            + "after \(open) open and \(reserve) kept for files; at least \(needed) are needed: raise it to \(open + reserve + needed) or more"
    }

    public var description: String { "open-file limit \(limit), \(open) open, \(reserve) kept for files, \(available) for connections" }
}
