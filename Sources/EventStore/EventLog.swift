import Daemon
import Dispatch
import Foundation
import Synchronization
import SystemIO
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
/// <directory>/wal/<n>.wal       the write-ahead log: every partition's records in commit order
/// <directory>/wal/<n>.idx       the summary of a sealed segment (`SegmentSummary`), rebuildable
/// <directory>/idempotency.table ingest's idempotency index, mapped (`IdempotencyTable`), rebuildable
/// ```
///
/// Partitions are logical: each has gap-free sequence numbers and is read on its own, but a commit
/// group writes the records of every partition it touches in one write to one file and makes them
/// durable with one `fdatasync`, whatever the partition count. Segments are zero-filled ahead of
/// the records (a background thread extends the current one and prepares the next once it is half
/// full), so a sync mostly flushes data without a metadata journal commit.
///
/// Opening checks that the pieces agree before anything is served: every segment is present and
/// belongs to this log, every partition holds at least its high-water mark, the clock is the one
/// the log was written with. Any disagreement refuses with a message naming what is missing,
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
    /// The marks last written (held while writing, so two writers never race).
    private let lastMarks: Mutex<[UInt64]?>
    // The writer (one thread at a time: ingest's committer).
    private let walDirectory: String
    private let segmentBytes: Int
    private var current: WALSegment
    private var currentSummary: SegmentSummary
    /// Segments for storage figures, and the spare prepared in the background.
    private struct Shared {
        var segmentCount: Int
        var storedBytes: Int
        var spare: WALSegment?
        var spareFailure: String?
        var preparing = false
    }
    private let shared: Mutex<Shared>
    private let background = DispatchQueue(label: "event-log-background")

    /// Default size of a write-ahead log segment.
    public static let defaultSegmentBytes = 64 << 20
    static let manifestName = "log.json"
    static let marksName = "high-water.json"
    static let walName = "wal"
    /// The file ingest keeps its idempotency index in (`IdempotencyIndex.opening`).
    public static let idempotencyTableName = "idempotency.table"

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
    ///   - willVisit: told, before the first `visit`, at most how many keyed records recovery will
    ///     visit (fewer when an index file covers part of a segment) and the newest enqueued time
    ///     among all records (so indexes can be sized and skip what expired).
    ///   - visit: sees, partition by partition's commit order, every keyed record (its meta carries
    ///     `keyDigest` and `payloadDigest`, not always the key's text), every purchase (its
    ///     meta carries `purchasedResource`) and every plan definition (`definesPlan`, with its
    ///     sequence, for reading it back).
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

    /// Opens the log in `directory` as `options` say (see the other initializer). With `keys`, the
    /// idempotency keys come to it a segment at a time (for a bulk rebuild of the index) instead of
    /// to `visit` one by one. `keysFrom`, told the log's identity and each partition's next
    /// sequence before any key is visited, answers per partition the first sequence whose key is
    /// wanted (an index kept in a file already holds the others); sealed segments holding none of
    /// them are not read for keys at all.
    public init(
        directory: String, options: Options,
        willVisit: (_ records: Int, _ newestTime: Timestamp?) -> Void = { _, _ in },
        visit: (Int, UInt64, Timestamp, RecordMeta) -> Void = { _, _, _, _ in },
        keys: (([SegmentSummary.Key]) -> Void)? = nil,
        keysFrom: ((_ identity: String, _ next: [UInt64]) -> [UInt64])? = nil
    ) throws(EventLogError) {
        self.directory = directory
        walDirectory = directory + "/" + Self.walName
        segmentBytes = options.segmentBytes
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
        let opened: Opened
        do {
            var opening = Opening(directory: directory, options: options)
            opened = try opening.run(willVisit: willVisit, visit: visit, keys: keys, keysFrom: keysFrom)
        } catch {
            close(lockFD)
            throw error
        }
        partitions = opened.partitions
        manifest = opened.manifest
        notices = opened.notices
        current = opened.current
        currentSummary = opened.currentSummary
        shared = Mutex(Shared(segmentCount: opened.segmentCount, storedBytes: opened.storedBytes))
        lastMarks = Mutex(opened.marks)
        for summary in opened.unsummarized { writeSummaryInBackground(summary) }
    }

    deinit {
        background.sync {}
        flock(lockFD, LOCK_UN)
        close(lockFD)
    }

    /// Total bytes of the log's records.
    public var storageBytes: Int { shared.withLock { $0.storedBytes } }

    /// The number of segment files.
    public var segments: Int { shared.withLock { $0.segmentCount } }

    // MARK: writing (one thread)

    /// A record to append: its partition, time, meta and payload.
    public struct Pending: Sendable {
        public var partition: Int
        public var time: Timestamp
        public var meta: RecordMeta
        public var payload: [UInt8]
        /// Where the record's idempotency key is in `payload`, when `meta` holds none (a usage
        /// report read on ingest's fast path, whose canonical form holds its key unescaped): the
        /// key goes to the log without a string made of it.
        public var keyInPayload: Range<Int>?

        public init(partition: Int, time: Timestamp, meta: RecordMeta, payload: [UInt8], keyInPayload: Range<Int>? = nil) {
            if let keyInPayload {
                precondition(
                    meta.idempotencyKey == nil && keyInPayload.clamped(to: payload.indices) == keyInPayload,
                    "EventLog.Pending: a key in the payload must lie in it, and meta must hold none")
            }
            self.partition = partition
            self.time = time
            self.meta = meta
            self.payload = payload
            self.keyInPayload = keyInPayload
        }

        /// The record's length in the log.
        public var encodedLength: Int {
            RecordCodec.length(
                meta: meta, keyCount: keyInPayload?.count ?? meta.idempotencyKey?.utf8.count ?? 0, payloadCount: payload.count)
        }

        /// Appends the encoded record to `out`.
        public func encode(sequence: UInt64, salt: UInt32, to out: inout [UInt8]) {
            let start = out.count
            out.append(contentsOf: repeatElement(0, count: encodedLength))
            out.withUnsafeMutableBytes {
                _ = encode(sequence: sequence, salt: salt, into: UnsafeMutableRawBufferPointer(rebasing: $0[start...]))
            }
        }

        /// Writes the record at the start of `out` (room for `encodedLength` bytes); returns its length.
        public func encode(sequence: UInt64, salt: UInt32, into out: UnsafeMutableRawBufferPointer) -> Int {
            payload.withUnsafeBytes { payload in
                if let keyInPayload {
                    return RecordCodec.encode(
                        partition: partition, sequence: sequence, time: time, meta: meta,
                        key: UnsafeRawBufferPointer(rebasing: payload[keyInPayload]), payload: payload, salt: salt, into: out)
                }
                return RecordCodec.encode(
                    partition: partition, sequence: sequence, time: time, meta: meta, payload: payload, salt: salt, into: out)
            }
        }
    }

    /// Why a commit failed: nothing was written (the log is as before; refuse and go on), or a
    /// write or sync failed (what is on disk is unknown: stop, and let recovery decide).
    public enum CommitFailure: Error, CustomStringConvertible {
        case notWritten(String)
        case unknown(String)

        public var description: String {
            switch self {
            case .notWritten(let message), .unknown(let message): return message
            }
        }
    }

    /// Appends `records` in order, each partition's next sequence numbers to its records, makes
    /// them durable with one `fdatasync` and makes them readable. Records of one partition must
    /// not go back in time.
    public func commit(_ records: [Pending]) throws(CommitFailure) {
        guard !records.isEmpty else { return }
        // Where each record goes in the group's bytes, and its sequence. By index throughout:
        // `for record in records` copies each record (retains and releases its strings and
        // payload) only to read it.
        var placed: [(partition: Int, sequence: UInt64, offset: Int, length: Int)] = []
        placed.reserveCapacity(records.count)
        var next = partitions.map(\.nextSequence)
        var length = 0
        for index in records.indices {
            let partition = records[index].partition
            let count = records[index].encodedLength
            placed.append((partition, next[partition], length, count))
            next[partition] += 1
            length += count
        }
        if current.end + length > current.capacity {
            // A group never spans two segments (one sync covers it); one larger than a whole
            // segment gets a segment of its own size.
            do {
                try switchSegment(minimumCapacity: length + WALSegment.headerLength)
            } catch {
                throw .notWritten("cannot start a new log segment: \(error)")
            }
        }
        let segment = current
        // Every byte is written by the encoding, in place: none is zeroed or appended first.
        let buffer = [UInt8](unsafeUninitializedCapacity: length) { storage, initialized in
            let bytes = UnsafeMutableRawBufferPointer(storage)
            for index in records.indices {
                let place = placed[index]
                _ = records[index].encode(
                    sequence: place.sequence, salt: segment.salt,
                    into: UnsafeMutableRawBufferPointer(rebasing: bytes[place.offset..<place.offset + place.length]))
            }
            initialized = length
        }
        for index in placed.indices { placed[index].offset += segment.end }
        do {
            try segment.write(buffer)
        } catch {
            throw .unknown("the log could not be made durable: \(error)")
        }
        // Where each record went is noted while the sync runs, on a worker for a large group (the
        // sync leaves a core idle): noted records are not readable before `publish` below, and a
        // failed sync stops the writer.
        let noting = records.count >= Self.notedWhileSyncingFrom ? DispatchGroup() : nil
        if let noting {
            DispatchQueue.global().async(group: noting) { [self, placed] in note(records, placed, in: segment) }
        }
        do {
            try segment.sync()
        } catch {
            noting?.wait()
            throw .unknown("the log could not be made durable: \(error)")
        }
        if let noting { noting.wait() } else { note(records, placed, in: segment) }
        let written = buffer.count
        shared.withLock { $0.storedBytes += written }
        for partition in partitions where next[partition.partition] != partition.durableNextSequence { partition.publish() }
        if segment.wantsExtension { extendInBackground(segment) }
        if segment.end > segment.capacity / 2 { prepareSpare() }
    }

    /// From how many records a commit group's records are noted on a worker while the group is
    /// synced: below it, waking a worker costs more than it saves.
    public static let notedWhileSyncingFrom = 256

    /// Notes where each of a commit group's records went, for readers (not yet readable) and for
    /// the segment's summary.
    private func note(
        _ records: [Pending], _ placed: [(partition: Int, sequence: UInt64, offset: Int, length: Int)], in segment: WALSegment
    ) {
        // Through a buffer: each record's meta is read in place (from the array it was copied,
        // retains and releases of its strings, a tenth of a large group's commit).
        records.withUnsafeBufferPointer { records in
            for index in records.indices {
                let place = placed[index]
                partitions[place.partition].noteAppended(
                    segment: segment, sequence: place.sequence, time: records[index].time, offset: place.offset, length: place.length)
                currentSummary.note(
                    partition: place.partition, sequence: place.sequence, time: records[index].time, meta: records[index].meta,
                    offset: place.offset, length: place.length)
            }
        }
    }

    /// Zero-fills the next stretch of `segment` ahead of the records, off the writer's path.
    private func extendInBackground(_ segment: WALSegment) {
        background.async {
            do {
                try segment.extend()
            } catch {
                Log.warning("cannot preallocate the log segment \(segment.path): \(error); appends extend it as they go")
            }
        }
    }

    /// Seals the current segment (its summary is written in the background) and continues in the
    /// spare, or in a new segment when the spare is missing or too small.
    private func switchSegment(minimumCapacity: Int) throws(SystemError) {
        let next: WALSegment
        let ready = shared.withLock { state -> WALSegment? in
            guard let spare = state.spare, spare.capacity >= minimumCapacity else { return nil }
            state.spare = nil
            return spare
        }
        if let ready {
            next = ready
        } else {
            background.sync {}  // a spare being made would take the same number
            let leftover = shared.withLock { state -> WALSegment? in
                defer { state.spare = nil }
                return state.spare
            }
            let number = current.number + 1
            if let leftover {
                // Too small for this group: replace it by one big enough.
                unlink(leftover.path)
            }
            next = try WALSegment.create(
                directory: walDirectory, number: number, capacity: max(segmentBytes, minimumCapacity), identity: manifest.identity)
            if leftover == nil { shared.withLock { $0.segmentCount += 1 } }
        }
        let sealed = currentSummary
        current = next
        currentSummary = SegmentSummary(number: next.number, dataEnd: next.end)
        writeSummaryInBackground(sealed)
        writeMarksQuietly(reason: "a segment roll")
    }

    /// Prepares the next segment in the background, zero-filled whole, so a roll does not wait for
    /// the zeros and the segment is never extended while records are appended to it.
    private func prepareSpare() {
        let number = current.number + 1
        let go = shared.withLock { state -> Bool in
            guard state.spare == nil, !state.preparing else { return false }
            state.preparing = true
            return true
        }
        guard go else { return }
        let capacity = segmentBytes
        let identity = manifest.identity
        let directory = walDirectory
        background.async { [weak self] in
            let result = Result { () throws(SystemError) in
                try WALSegment.create(directory: directory, number: number, capacity: capacity, identity: identity, initial: capacity)
            }
            guard let self else { return }
            self.shared.withLock { state in
                state.preparing = false
                switch result {
                case .success(let segment):
                    state.spare = segment
                    state.segmentCount += 1
                    state.spareFailure = nil
                case .failure(let error):
                    if state.spareFailure == nil { Log.warning("cannot prepare the next log segment: \(error); will retry at the roll") }
                    state.spareFailure = "\(error)"
                }
            }
        }
    }

    private func writeSummaryInBackground(_ summary: SegmentSummary) {
        let path = walDirectory + "/" + Self.summaryName(summary.number)
        background.async {
            do {
                try FileIO.writeAtomically(summary.bytes, to: path)
            } catch {
                Log.warning("cannot write the segment summary \(path): \(error); the next start rebuilds it by reading the segment")
            }
        }
    }

    static func summaryName(_ number: UInt64) -> String {
        let digits = String(number)
        return String(repeating: "0", count: max(0, 20 - digits.count)) + digits + ".idx"
    }

    /// Waits until background work (the spare segment, summaries) is done (tests, shutdown).
    public func settle() { background.sync {} }

    // MARK: high-water marks

    /// Writes every partition's count of acknowledged (published) records to `high-water.json`
    /// when it changed since the last write. Called at least once a second by ingest, at every
    /// segment roll and at shutdown; safe from any thread.
    public func writeHighWaterMarks() throws(EventLogError) {
        try lastMarks.withLock { (lastMarks: inout [UInt64]?) throws(EventLogError) in
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
    }

    private func writeMarksQuietly(reason: String) {
        do {
            try writeHighWaterMarks()
        } catch {
            Log.warning("\(error) (after \(reason)); will retry within a second")
        }
    }

    static func partitionDirectoryName(_ partition: Int) -> String {
        let digits = String(partition)
        return "p" + String(repeating: "0", count: max(0, 3 - digits.count)) + digits
    }

    static func readMarks(_ directory: String) -> Result<HighWaterMarks, EventLogError> {
        guard let data = FileManager.default.contents(atPath: directory + "/" + marksName) else {
            return .failure(EventLogError("cannot read it"))
        }
        return HighWaterMarks.decode(Array(data))
    }

    // MARK: opening

    struct Opened {
        var partitions: [PartitionLog]
        var manifest: LogManifest
        var notices: [String]
        var current: WALSegment
        var currentSummary: SegmentSummary
        var segmentCount: Int
        var storedBytes: Int
        var marks: [UInt64]?
        /// Sealed segments whose summary file was missing or damaged (rebuilt by scanning).
        var unsummarized: [SegmentSummary]
    }
}
