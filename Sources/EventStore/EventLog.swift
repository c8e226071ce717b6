import Foundation
public import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// The partitioned, append-only event log under one directory:
///
/// ```
/// <directory>/LOCK              flock'd by the one process that owns the log
/// <directory>/log.json          identity, partition count, clock (`LogManifest`), fixed at creation
/// <directory>/high-water.json   acknowledged records per partition (`HighWaterMarks`)
/// <directory>/p000/00000000000000000000.log, ...   segments of partition 0
/// ```
///
/// Opening checks that the pieces agree before anything is served: the partition directories are
/// exactly those `log.json` names, every partition holds at least its high-water mark, the clock is
/// the one the log was written with. Any disagreement refuses with a message naming what is missing,
/// because serving a log that lost acknowledged records would reuse their sequence numbers and
/// accept their idempotency keys again (billing them twice).
public final class EventLog: @unchecked Sendable {
    public let directory: String
    public let partitions: [PartitionLog]
    /// The log's identity, partition count and clock as now recorded.
    public private(set) var manifest: LogManifest
    /// What opening did that an operator should know of (an upgrade, a clock switch, a loss accepted).
    public private(set) var notices: [String] = []
    private let lockFD: Int32
    private let marksLock = NSLock()
    private var lastMarks: [UInt64]?

    /// Default size at which a partition starts a new segment.
    public static let defaultSegmentBytes = 64 << 20
    static let manifestName = "log.json"
    static let marksName = "high-water.json"

    /// How the log is opened.
    public struct Options: Sendable {
        /// The partition count of a new log.
        public var partitionCount: Int
        /// The operator asked for `partitionCount`: a different count in an existing log is then an
        /// error instead of a notice.
        public var partitionCountIsExplicit = false
        public var segmentBytes = EventLog.defaultSegmentBytes
        /// `system` or `manual`: the clock the process runs on.
        public var clock = "system"
        /// Switch an existing log to `clock` instead of refusing.
        public var allowClockChange = false
        /// Open a damaged log by cutting what is lost, recording the loss and giving the log a new
        /// identity (`meterctl log accept-loss`), instead of refusing.
        public var acceptingLoss = false

        public init(partitionCount: Int) { self.partitionCount = partitionCount }
    }

    /// Opens the log in `directory`, creating it with `partitionCount` partitions when new.
    ///
    /// - Parameters:
    ///   - willVisit: told, before the first `visit`, how many records recovery found and the
    ///     newest enqueued time among them (so indexes can be sized and skip what has expired).
    ///   - visit: sees every record's partition, sequence, time and meta, in order within each
    ///     partition, partitions one after another.
    public convenience init(
        directory: String, partitionCount: Int, partitionCountIsExplicit: Bool = false,
        segmentBytes: Int = EventLog.defaultSegmentBytes,
        willVisit: (_ records: Int, _ newestTime: Timestamp?) -> Void = { _, _ in },
        visit: (Int, UInt64, Timestamp, RecordMeta) -> Void = { _, _, _, _ in }
    ) throws(EventLogError) {
        var options = Options(partitionCount: partitionCount)
        options.partitionCountIsExplicit = partitionCountIsExplicit
        options.segmentBytes = segmentBytes
        try self.init(directory: directory, options: options, willVisit: willVisit, visit: visit)
    }

    /// Opens the log in `directory` as `options` say (see the other initializer).
    public init(
        directory: String, options: Options,
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
        do {
            let opened = try Self.open(directory: directory, options: options, willVisit: willVisit, visit: visit)
            partitions = opened.partitions
            manifest = opened.manifest
            notices = opened.notices
        } catch {
            close(lockFD)
            throw error
        }
        for partition in partitions {
            partition.onRoll = { [weak self] in self?.writeMarksQuietly(reason: "a segment roll") }
        }
        if let marks = try? Self.readMarks(directory) { lastMarks = marks.next }
    }

    deinit {
        flock(lockFD, LOCK_UN)
        close(lockFD)
    }

    // MARK: opening

    private struct Opened {
        var partitions: [PartitionLog]
        var manifest: LogManifest
        var notices: [String]
    }

    private static func open(
        directory: String, options: Options, willVisit: (Int, Timestamp?) -> Void, visit: (Int, UInt64, Timestamp, RecordMeta) -> Void
    ) throws(EventLogError) -> Opened {
        let manifestPath = directory + "/" + manifestName
        let marksPath = directory + "/" + marksName
        let directories = try partitionDirectories(directory)
        var notices: [String] = []
        let now = Timestamp(microseconds: Int64(Date().timeIntervalSince1970 * 1_000_000)).iso8601

        // What log.json says, or what the log must be created as.
        var manifest: LogManifest
        var creating = false
        var upgrading = false
        var marks: HighWaterMarks?
        let marksExist = FileManager.default.fileExists(atPath: marksPath)
        if marksExist {
            switch readMarksResult(directory) {
            case .success(let read): marks = read
            case .failure(let failure):
                if !options.acceptingLoss {
                    throw EventLogError(
                        "\(marksPath) is unreadable: \(failure); without it lost records cannot be detected. Restore it from a backup, or rewrite it from the log as it is with `meterctl log accept-loss`."
                    )
                }
                notices.append("\(marksPath) was unreadable (\(failure)) and was rewritten")
            }
        }
        if let data = FileManager.default.contents(atPath: manifestPath) {
            switch LogManifest.decode(Array(data)) {
            case .failure(let failure):
                throw EventLogError("\(manifestPath) is damaged: \(failure); restore it from a backup")
            case .success(.formatOne(let partitions)):
                manifest = LogManifest(
                    identity: LogManifest.newIdentity(), partitions: partitions, clock: options.clock, created: now)
                upgrading = true
            case .success(.current(let read)):
                manifest = read
            }
        } else if directories.isEmpty && !marksExist {
            guard options.partitionCount > 0 else { throw EventLogError("a log needs at least one partition") }
            manifest = LogManifest(
                identity: LogManifest.newIdentity(), partitions: options.partitionCount, clock: options.clock, created: now)
            creating = true
        } else if marks == nil, try allEmpty(directory, directories) {
            // A crash while the log was being created (log.json is written last): nothing was ever
            // acknowledged, so creating it again loses nothing.
            manifest = LogManifest(
                identity: LogManifest.newIdentity(), partitions: max(options.partitionCount, (directories.max() ?? -1) + 1),
                clock: options.clock, created: now)
            creating = true
        } else if options.acceptingLoss {
            let count = max(marks?.next.count ?? 0, (directories.max() ?? -1) + 1)
            manifest = LogManifest(
                identity: marks?.identity ?? LogManifest.newIdentity(), partitions: count, clock: options.clock, created: now)
            notices.append("\(manifestPath) was missing and was rewritten for \(count) partitions")
        } else {
            var known = "partition directories \(describe(directories))"
            if let marks { known += " and \(marksName) (\(marks.next.count) partitions, written \(marks.written))" }
            throw EventLogError(
                "\(manifestPath) is missing, but the log holds \(known). Starting a new log over them would accept their idempotency keys again and bill them twice. Restore \(manifestName) from a backup, or rebuild it with `meterctl log accept-loss` (the log then gets a new identity and the aggregator and query must be rebuilt)."
            )
        }

        // The partition count, checked against the directories and the marks.
        if manifest.partitions != options.partitionCount && !creating {
            if options.partitionCountIsExplicit {
                throw EventLogError(
                    "METERING_PARTITIONS=\(options.partitionCount) but the log at \(directory) was created with \(manifest.partitions) partitions; the count is fixed once the log exists"
                )
            }
            notices.append("the log has \(manifest.partitions) partitions (fixed when it was created)")
        }
        if let marks, marks.next.count != manifest.partitions || (marks.identity != manifest.identity && !upgrading) {
            if !options.acceptingLoss {
                throw EventLogError(
                    "\(manifestName) (identity \(manifest.identity), \(manifest.partitions) partitions) and \(marksName) (identity \(marks.identity), \(marks.next.count) partitions, written \(marks.written)) disagree: one of them was edited or restored from another log. Restore both from the same backup."
                )
            }
            manifest.partitions = max(manifest.partitions, marks.next.count)
        }
        let extra = directories.filter { $0 >= manifest.partitions }
        if !extra.isEmpty {
            if !options.acceptingLoss {
                throw EventLogError(
                    "\(manifestName) says \(manifest.partitions) partitions, but the log also holds \(describe(extra)): \(manifestName) was edited or replaced. Restore it from a backup; with fewer partitions, subscriptions would move to other partitions and their idempotency keys would be accepted again."
                )
            }
            manifest.partitions = extra.max()! + 1
        }
        let missing = (0..<manifest.partitions).filter { !directories.contains($0) }
        if !missing.isEmpty && !creating {
            if !options.acceptingLoss {
                let held = missing.map { partition -> String in
                    let mark = marks.map { $0.next.indices.contains(partition) ? $0.next[partition] : 0 } ?? 0
                    return mark > 0
                        ? "\(partitionDirectoryName(partition)) (records 0 to \(mark - 1) were acknowledged)"
                        : partitionDirectoryName(partition)
                }
                throw EventLogError(
                    "the log at \(directory) has \(manifest.partitions) partitions, but the directories of \(held.joined(separator: ", ")) are missing. Restore them from a backup, or accept losing them with `meterctl log accept-loss` (the log then gets a new identity and the aggregator and query must be rebuilt)."
                )
            }
            notices.append("partition directories \(describe(missing)) were missing and were created empty")
        }
        if marks == nil && !creating && !upgrading && !options.acceptingLoss {
            throw EventLogError(
                "\(marksPath) is missing; without it lost records cannot be detected. Restore it from a backup, or rewrite it from the log as it is with `meterctl log accept-loss`."
            )
        }
        for partition in 0..<manifest.partitions {
            do {
                try FileIO.makeDirectory(directory + "/" + partitionDirectoryName(partition))
            } catch {
                throw EventLogError("cannot create the partition directory: \(error)")
            }
        }

        // Partitions recover in parallel (each scans and checks its own segments); what they found
        // is then visited in partition order, so callers see the same order as a serial recovery.
        let count = manifest.partitions
        let acknowledged: [UInt64] = (0..<count).map { partition in
            guard let marks, marks.next.indices.contains(partition) else { return 0 }
            return marks.next[partition]
        }
        let results = RecoveryResults(count: count)
        let segmentBytes = options.segmentBytes
        let acceptingLoss = options.acceptingLoss
        DispatchQueue.concurrentPerform(iterations: count) { partition in
            let path = directory + "/" + Self.partitionDirectoryName(partition)
            var found: [(UInt64, Timestamp, RecordMeta)] = []
            let outcome = Result { () throws(EventLogError) -> PartitionLog in
                try PartitionLog(
                    partition: partition, directory: path, segmentBytes: segmentBytes, acknowledged: acknowledged[partition],
                    acceptingLoss: acceptingLoss
                ) { _, sequence, time, meta in
                    found.append((sequence, time, meta))
                }
            }
            results.store(partition, outcome, found)
        }
        var partitions: [PartitionLog] = []
        var lost: [String] = []
        for partition in 0..<count {
            let log: PartitionLog
            switch results.outcome(partition) {
            case .success(let opened): log = opened
            case .failure(let error): throw error
            }
            partitions.append(log)
            if let cut = log.cutOff { lost.append(cut) }
            if log.nextSequence < acknowledged[partition] {
                lost.append(
                    "partition \(partition): records \(log.nextSequence) to \(acknowledged[partition] - 1) (the log ends at \(log.nextSequence == 0 ? "nothing" : "record \(log.nextSequence - 1)"), but \(acknowledged[partition]) records were acknowledged)"
                )
            }
        }
        if !lost.isEmpty && !acceptingLoss {
            throw EventLogError(
                "the log at \(directory) lost acknowledged records (high-water marks written \(marks?.written ?? "?")): \(lost.joined(separator: "; ")). Refusing to start: serving it would reuse their sequence numbers and accept their idempotency keys again. Restore the missing segments from a backup, or accept the loss with `meterctl log accept-loss` (the log then gets a new identity and the aggregator and query must be rebuilt)."
            )
        }

        // The clock the log's times come from.
        let clockSwitched = manifest.clock != options.clock && !creating
        if clockSwitched {
            if !options.allowClockChange && !upgrading {
                let newest = partitions.compactMap(\.lastTime).max()
                throw EventLogError(
                    "the log at \(directory) was written on the \(manifest.clock) clock\(newest.map { " (its newest record is at \($0.iso8601))" } ?? ""), but METERING_CLOCK=\(options.clock): its times would jump and hours, periods and the 24-hour window would be decided by another clock. Start with METERING_CLOCK=\(manifest.clock), or switch the log for good with METERING_CLOCK_CHANGE=allow."
                )
            }
            if !upgrading { notices.append("the log was switched from the \(manifest.clock) clock to the \(options.clock) clock") }
            manifest.clock = options.clock
        }

        // Everything agrees (or the operator accepted what does not): record it.
        let wroteManifest = creating || upgrading || acceptingLoss || clockSwitched
        if acceptingLoss {
            let previous = manifest.identity
            manifest.identity = LogManifest.newIdentity()
            manifest.losses.append(LogManifest.Loss(previousIdentity: previous, accepted: now, missing: lost))
            notices.append(
                lost.isEmpty
                    ? "no acknowledged record was missing; the log now has identity \(manifest.identity)"
                    : "accepted the loss of \(lost.joined(separator: "; ")); the log now has identity \(manifest.identity) (was \(previous))"
            )
        }
        if upgrading {
            notices.append(
                "log.json upgraded to format \(LogManifest.currentFormat): identity \(manifest.identity), clock \(manifest.clock)")
        }
        if creating || upgrading || acceptingLoss || marks == nil {
            let written = HighWaterMarks(identity: manifest.identity, next: partitions.map(\.nextSequence), written: now)
            do {
                try FileIO.writeAtomically(written.bytes, to: marksPath)
            } catch {
                throw EventLogError("cannot write \(marksPath): \(error)")
            }
        }
        if wroteManifest {
            do {
                try FileIO.writeAtomically(JSONWriter.bytes(manifest.json) + [0x0A], to: manifestPath)
            } catch {
                throw EventLogError("cannot write \(manifestPath): \(error)")
            }
        }

        willVisit(results.recordCount, results.newestTime)
        for partition in 0..<count {
            for (sequence, time, meta) in results.takeRecords(partition) { visit(partition, sequence, time, meta) }
        }
        return Opened(partitions: partitions, manifest: manifest, notices: notices)
    }

    /// The partition numbers of the `pNNN` directories in `directory`.
    static func partitionDirectories(_ directory: String) throws(EventLogError) -> [Int] {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory)
        } catch {
            throw EventLogError("cannot list the log directory \(directory): \(error.localizedDescription)")
        }
        return names.compactMap { name -> Int? in
            guard name.hasPrefix("p"), name.count >= 4, let number = Int(name.dropFirst()), number >= 0,
                name == partitionDirectoryName(number)
            else { return nil }
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: directory + "/" + name, isDirectory: &isDirectory), isDirectory.boolValue else {
                return nil
            }
            return number
        }.sorted()
    }

    /// Whether a partition directory holds no record (only empty segments, or nothing).
    private static func partitionIsEmpty(_ path: String) throws(EventLogError) -> Bool {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: path)
        } catch {
            throw EventLogError("cannot list \(path): \(error.localizedDescription)")
        }
        return names.allSatisfy { name in
            guard name.hasSuffix(".log") else { return false }
            let size = (try? FileManager.default.attributesOfItem(atPath: path + "/" + name)[.size] as? Int) ?? Int.max
            return size <= Segment.headerLength
        }
    }

    private static func allEmpty(_ directory: String, _ partitions: [Int]) throws(EventLogError) -> Bool {
        for partition in partitions where !(try partitionIsEmpty(directory + "/" + partitionDirectoryName(partition))) { return false }
        return true
    }

    private static func describe(_ partitions: [Int]) -> String {
        partitions.map(partitionDirectoryName).joined(separator: ", ")
    }

    private static func readMarksResult(_ directory: String) -> Result<HighWaterMarks, EventLogError> {
        guard let data = FileManager.default.contents(atPath: directory + "/" + marksName) else {
            return .failure(EventLogError("cannot read it"))
        }
        return HighWaterMarks.decode(Array(data))
    }

    static func readMarks(_ directory: String) throws(EventLogError) -> HighWaterMarks { try readMarksResult(directory).get() }

    // MARK: high-water marks

    /// Writes every partition's count of acknowledged (published) records to `high-water.json`
    /// when it changed since the last write. Called at least once a second by ingest, at every
    /// segment roll and at shutdown; safe from any thread.
    public func writeHighWaterMarks() throws(EventLogError) {
        marksLock.lock()
        defer { marksLock.unlock() }
        let next = partitions.map(\.durableNextSequence)
        guard next != lastMarks else { return }
        let now = Timestamp(microseconds: Int64(Date().timeIntervalSince1970 * 1_000_000)).iso8601
        let marks = HighWaterMarks(identity: manifest.identity, next: next, written: now)
        do {
            try FileIO.writeAtomically(marks.bytes, to: directory + "/" + Self.marksName)
        } catch {
            throw EventLogError("cannot write the high-water marks: \(error)")
        }
        lastMarks = next
    }

    private func writeMarksQuietly(reason: String) {
        do {
            try writeHighWaterMarks()
        } catch {
            Log.warning("\(error) (after \(reason)); will retry within a second")
        }
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

        func outcome(_ partition: Int) -> Result<PartitionLog, EventLogError> { lock.withLock { outcomes[partition]! } }

        func takeRecords(_ partition: Int) -> [(UInt64, Timestamp, RecordMeta)] {
            lock.withLock {
                defer { found[partition] = [] }
                return found[partition]
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
