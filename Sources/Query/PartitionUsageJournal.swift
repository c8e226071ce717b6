import Daemon
import Foundation
import QueryModel
import Synchronization
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// One partition's usage records, in fold order, in segment files `<first ordinal, 20 digits>.journal`
/// of its own directory (`usage/pNNN/`): a line's id is its record's ordinal, which every replica
/// folding the same log gives the same record. A segment takes the records closed in one week;
/// segments whose records have all aged out are deleted whole (never the newest, which remembers
/// the next ordinal), so the files follow the retention without ever being rewritten.
final class PartitionUsageJournal: Sendable {
    let partition: Int
    let directory: String
    /// Oldest first; never empty.
    private let segments: Mutex<[Segment]>

    /// A segment's records are closed within this many seconds of its first one.
    static let segmentSeconds: Int64 = 7 * 86_400

    private struct Segment {
        var journal: Journal
        /// When its first and last records closed (Unix seconds); nil while it is empty.
        var firstClosed: Int64?
        var lastClosed: Int64?
    }

    static func fileName(_ ordinal: UInt64) -> String {
        let digits = String(ordinal)
        return String(repeating: "0", count: max(0, 20 - digits.count)) + digits + ".journal"
    }

    /// Opens the partition's segments, checking every line (`visit` sees each record's ordinal and
    /// close time, oldest first) and that the segments follow each other without a gap.
    init(directory: String, partition: Int, visit: (UInt64, Int64) -> Void) throws(Journal.Failure) {
        self.partition = partition
        self.directory = directory
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw Journal.Failure(description: "cannot create \(directory): \(error.localizedDescription)")
        }
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter {
            $0.hasSuffix(".journal") && $0.count == 28 && UInt64($0.prefix(20)) != nil
        }.sorted()
        var segments: [Segment] = []
        for name in names {
            let base = UInt64(name.prefix(20))!
            if let previous = segments.last {
                let expected = UInt64(previous.journal.nextId)
                guard base == expected else {
                    throw Journal.Failure(
                        description:
                            "\(directory): segment \(name) starts at record \(base) but the one before ends at \(expected); move the query's data aside to rebuild it (meterctl rebuild query)"
                    )
                }
            }
            var first: Int64?
            var last: Int64?
            var damaged: String?
            guard let firstId = Int(exactly: base) else {
                throw Journal.Failure(
                    description:
                        "\(directory): segment \(name) starts at a record beyond any ordinal; move the query's data aside to rebuild it")
            }
            let journal = try Journal(path: directory + "/" + name, firstId: firstId, impliedPartition: partition) { header in
                guard let closed = header.closed, header.partition == partition, header.ordinal == UInt64(header.id) else {
                    damaged = damaged ?? "line \(header.id - firstId + 1) is not a usage record of partition \(partition)"
                    return
                }
                first = first ?? closed
                last = closed
                visit(header.ordinal, closed)
            }
            if let damaged {
                throw Journal.Failure(description: "\(directory)/\(name): \(damaged); move the query's data aside to rebuild it")
            }
            if let previous = segments.last?.journal { try previous.seal() }
            segments.append(Segment(journal: journal, firstClosed: first, lastClosed: last))
        }
        if segments.isEmpty {
            segments.append(Segment(journal: try Journal(path: directory + "/" + Self.fileName(0), impliedPartition: partition)))
        }
        self.segments = Mutex(segments)
    }

    /// The ordinal of the oldest record still kept.
    var firstOrdinal: UInt64 { segments.withLock { UInt64($0[0].journal.firstId) } }

    /// The ordinal of the next record not in the journal yet.
    var nextOrdinal: UInt64 { segments.withLock { Self.next(of: $0[$0.count - 1].journal, partition: partition) } }

    /// The next ordinal after `journal`'s lines: its first id while it has none (a segment started
    /// just before a crash may be empty).
    private static func next(of journal: Journal, partition: Int) -> UInt64 {
        max(UInt64(journal.firstId), journal.nextOrdinal(partition: partition))
    }

    /// Adds record `ordinal`, closed at `closed` (Unix seconds), its line's fields written by
    /// `writeFields` (`UsageRecord.appendFields`), unless it is there already (false). Readable
    /// after the next `sync()`. Never fails: a segment that cannot be started now (a disk error)
    /// leaves the record in the current one, and the next record tries again.
    @discardableResult
    func append(ordinal: UInt64, closed: Int64, writeFields: (inout [UInt8]) -> Void) -> Bool {
        segments.withLock { segments -> Bool in
            var active = segments[segments.count - 1]
            let next = Self.next(of: active.journal, partition: partition)
            guard ordinal >= next else { return false }
            guard ordinal == next else {
                // Ordinals come one after the other; a gap would give a line the wrong id.
                Log.error("partition \(partition): usage record \(ordinal) skips records from \(next) on; not journaled")
                return false
            }
            if let first = active.firstClosed, closed >= first + Self.segmentSeconds {
                do {
                    // A new week: the full segment is sealed once its lines are durable.
                    try active.journal.sync()
                    let next = try Journal(
                        path: directory + "/" + Self.fileName(ordinal), firstId: Int(ordinal), impliedPartition: partition)
                    try active.journal.seal()
                    segments.append(Segment(journal: next))
                    active = segments[segments.count - 1]
                } catch {
                    Log.error("partition \(partition): cannot start a new usage segment: \(error); will retry")
                }
            }
            active.journal.append(partition: partition, ordinal: ordinal, closed: closed, writeFields: writeFields)
            active.firstClosed = active.firstClosed ?? closed
            active.lastClosed = closed
            segments[segments.count - 1] = active
            return true
        }
    }

    /// Makes what was appended durable and readable.
    func sync() throws(Journal.Failure) {
        let active = segments.withLock { $0[$0.count - 1].journal }
        try active.sync()
    }

    /// Up to `maximum` records from ordinal `start` on, across segments; fewer when they run out.
    func read(from start: UInt64, maximum: Int) throws(Journal.Failure) -> [JSONObject] {
        let journals = segments.withLock { $0.map(\.journal) }
        var records: [JSONObject] = []
        var ordinal = start
        for journal in journals where records.count < maximum {
            guard ordinal < UInt64(journal.firstId + journal.count) else { continue }
            guard ordinal >= UInt64(journal.firstId) else { break }
            let part = try journal.read(from: Int(ordinal), maximum: maximum - records.count)
            // Lines of the compact form are served as the full form's (their members, in its order).
            for line in part { records.append(UsageRecord.expandingCompact(line, partition: partition) ?? line) }
            ordinal += UInt64(part.count)
        }
        return records
    }

    /// Deletes the segments (never the newest) whose records all closed before `cutoff`; how many.
    func removeSegments(closedBefore cutoff: Int64) -> Int {
        let doomed = segments.withLock { segments -> [Journal] in
            var removed: [Journal] = []
            while segments.count > 1, let last = segments[0].lastClosed ?? segments[1].firstClosed, last < cutoff {
                removed.append(segments.removeFirst().journal)
            }
            return removed
        }
        for journal in doomed where unlink(journal.path) != 0 {
            Log.warning("cannot delete the aged-out usage segment \(journal.path): \(String(cString: strerror(errno)))")
        }
        if !doomed.isEmpty {
            let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            if fd >= 0 {
                fsync(fd)
                close(fd)
            }
        }
        return doomed.count
    }
}
