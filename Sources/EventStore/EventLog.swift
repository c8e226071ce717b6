import Foundation
public import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// The partitioned, append-only event log under one directory:
///
/// ```
/// <directory>/LOCK          flock'd by the one process that owns the log
/// <directory>/log.json      {"format":1,"partitions":N}, fixed when the log is created
/// <directory>/p000/00000000000000000000.log, ...   segments of partition 0
/// ```
public final class EventLog: @unchecked Sendable {
    public let directory: String
    public let partitions: [PartitionLog]
    private let lockFD: Int32

    /// Default size at which a partition starts a new segment.
    public static let defaultSegmentBytes = 64 << 20

    /// Opens the log in `directory`, creating it with `partitionCount` partitions when new.
    ///
    /// - Parameters:
    ///   - partitionCountIsExplicit: the operator asked for `partitionCount`; a different count in
    ///     an existing log is then an error instead of a notice.
    ///   - willVisit: told, before the first `visit`, how many records recovery found and the
    ///     newest enqueued time among them (so indexes can be sized and skip what has expired).
    ///   - visit: sees every record's partition, sequence, time and meta, in order within each
    ///     partition, partitions one after another.
    public init(
        directory: String, partitionCount: Int, partitionCountIsExplicit: Bool = false,
        segmentBytes: Int = EventLog.defaultSegmentBytes,
        willVisit: (_ records: Int, _ newestTime: Timestamp?) -> Void = { _, _ in },
        visit: (Int, UInt64, Timestamp, RecordMeta) -> Void = { _, _, _, _ in }
    ) throws(EventLogError) {
        self.directory = directory
        do {
            try FileIO.makeDirectory(directory)
        } catch {
            throw EventLogError("cannot create the log directory: \(error)")
        }
        let lockFD: Int32
        do {
            lockFD = try FileIO.lockExclusively(directory + "/LOCK")
        } catch {
            guard let owner = error.owner else { throw EventLogError(error.description) }
            throw EventLogError("the log at \(directory) is owned by another process (pid \(owner)); only one meter-ingest may own a log")
        }
        self.lockFD = lockFD

        let metaPath = directory + "/log.json"
        var count = partitionCount
        if let data = FileManager.default.contents(atPath: metaPath) {
            guard let json = try? JSONParser.parse(Array(data)), let stored = json["partitions"]?.intValue, stored > 0 else {
                close(lockFD)
                throw EventLogError("\(metaPath) is damaged: it must hold {\"format\":1,\"partitions\":N}")
            }
            if stored != partitionCount {
                if partitionCountIsExplicit {
                    close(lockFD)
                    throw EventLogError(
                        "METERING_PARTITIONS=\(partitionCount) but the log at \(directory) was created with \(stored) partitions; the count is fixed once the log exists"
                    )
                }
                Log.notice("the log has \(stored) partitions (fixed when it was created)")
            }
            count = stored
        } else {
            guard partitionCount > 0 else {
                close(lockFD)
                throw EventLogError("a log needs at least one partition")
            }
            do {
                try FileIO.writeAtomically(Array("{\"format\":1,\"partitions\":\(partitionCount)}\n".utf8), to: metaPath)
            } catch {
                close(lockFD)
                throw EventLogError("cannot write \(metaPath): \(error)")
            }
        }
        // Partitions recover in parallel (each scans and checks its own segments); what they found
        // is then visited in partition order, so callers see the same order as a serial recovery.
        let results = RecoveryResults(count: count)
        let segmentBytes = segmentBytes
        DispatchQueue.concurrentPerform(iterations: count) { partition in
            let path = directory + "/" + Self.partitionDirectoryName(partition)
            var found: [(UInt64, Timestamp, RecordMeta)] = []
            let outcome = Result { () throws(EventLogError) -> PartitionLog in
                try PartitionLog(partition: partition, directory: path, segmentBytes: segmentBytes) { _, sequence, time, meta in
                    found.append((sequence, time, meta))
                }
            }
            results.store(partition, outcome, found)
        }
        willVisit(results.recordCount, results.newestTime)
        var partitions: [PartitionLog] = []
        for partition in 0..<count {
            let (outcome, found) = results.take(partition)
            switch outcome {
            case .success(let log): partitions.append(log)
            case .failure(let error):
                close(lockFD)
                throw error
            }
            for (sequence, time, meta) in found { visit(partition, sequence, time, meta) }
        }
        self.partitions = partitions
    }

    deinit {
        flock(lockFD, LOCK_UN)
        close(lockFD)
    }

    /// What each partition's recovery produced, filled from several threads.
    private final class RecoveryResults: @unchecked Sendable {
        private let lock = NSLock()
        private var outcomes: [Result<PartitionLog, EventLogError>?]
        private var found: [[(UInt64, Timestamp, RecordMeta)]]

        init(count: Int) {
            outcomes = Array(repeating: nil, count: count)
            found = Array(repeating: [], count: count)
        }

        func store(_ partition: Int, _ outcome: Result<PartitionLog, EventLogError>, _ records: [(UInt64, Timestamp, RecordMeta)]) {
            lock.withLock {
                outcomes[partition] = outcome
                found[partition] = records
            }
        }

        var recordCount: Int { lock.withLock { found.reduce(0) { $0 + $1.count } } }

        var newestTime: Timestamp? {
            lock.withLock { found.compactMap { $0.last?.1 }.max() }
        }

        func take(_ partition: Int) -> (Result<PartitionLog, EventLogError>, [(UInt64, Timestamp, RecordMeta)]) {
            lock.withLock {
                defer { found[partition] = [] }
                return (outcomes[partition]!, found[partition])
            }
        }
    }

    static func partitionDirectoryName(_ partition: Int) -> String {
        let digits = String(partition)
        return "p" + String(repeating: "0", count: max(0, 3 - digits.count)) + digits
    }

    /// Total bytes of all segments.
    public var storageBytes: Int { partitions.reduce(0) { $0 + $1.storage.bytes } }
}
