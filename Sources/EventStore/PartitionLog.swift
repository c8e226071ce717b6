import Foundation
public import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// Why the log cannot be opened or written, in words an operator can act on.
public struct EventLogError: Error, Hashable, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// One partition of the log: segments of records with gap-free sequence numbers.
///
/// One writer thread appends (`append`, `sync`, `publish`); any number of readers read what has
/// been published, which is only ever what is durable.
public final class PartitionLog: @unchecked Sendable {
    public let partition: Int
    public let directory: String
    let segmentBytes: Int
    private let condition = NSCondition()
    // Guarded by `condition` (the writer appends segments; readers look them up).
    private var segments: [Segment] = []
    private var published: UInt64 = 0
    private var publishedTime: Timestamp?
    // Writer-side state.
    /// The sequence the next appended record gets (writer thread only).
    public private(set) var nextSequence: UInt64 = 0
    /// The time of the newest appended record (writer thread only).
    public private(set) var lastTime: Timestamp?
    private var unsynced: [Segment] = []

    /// Records recovery cut off because an operator accepted losing them (`acceptingLoss`).
    public private(set) var cutOff: String?
    /// Told after a new segment was started (ingest then writes the high-water marks).
    var onRoll: (@Sendable () -> Void)?

    /// Opens (recovering) the partition in `directory`, which must exist; `visit` sees every
    /// record's position, time and meta in order, so indexes can be rebuilt without parsing JSON.
    ///
    /// - Parameters:
    ///   - acknowledged: the partition's high-water mark: records below it were acknowledged, so
    ///     damage there is never mistaken for a torn tail.
    ///   - acceptingLoss: cut the partition at the first damaged record instead of refusing (an
    ///     operator accepted the loss); `cutOff` then says what was cut.
    init(
        partition: Int, directory: String, segmentBytes: Int, acknowledged: UInt64 = 0, acceptingLoss: Bool = false,
        visit: (Int, UInt64, Timestamp, RecordMeta) -> Void
    ) throws(EventLogError) {
        self.partition = partition
        self.directory = directory
        self.segmentBytes = segmentBytes
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".log") && $0.count == 24 }
                .sorted()
        } catch {
            throw EventLogError("partition \(partition): cannot list \(directory): \(error.localizedDescription)")
        }
        for (position, name) in names.enumerated() {
            let isLast = position == names.count - 1
            if let segment = try recover(
                name: name, isLast: isLast, acknowledged: acknowledged, acceptingLoss: acceptingLoss, visit: visit)
            {
                segments.append(segment)
            }
            if cutOff != nil && !isLast {
                throw EventLogError(
                    "partition \(partition): damage in \(directory)/\(name) cuts the partition there, but later segments follow (\(names[(position + 1)...].joined(separator: ", "))); move them aside first"
                )
            }
        }
        if segments.isEmpty {
            do {
                segments.append(try Segment.create(directory: directory, partition: partition, baseSequence: 0))
            } catch {
                throw EventLogError("cannot create the first segment of partition \(partition): \(error)")
            }
        }
        nextSequence = segments.last!.nextSequence
        lastTime = segments.reversed().lazy.compactMap(\.lastTime).first
        published = nextSequence
        publishedTime = lastTime
    }

    // MARK: recovery

    private func recover(
        name: String, isLast: Bool, acknowledged: UInt64, acceptingLoss: Bool, visit: (Int, UInt64, Timestamp, RecordMeta) -> Void
    ) throws(EventLogError) -> Segment? {
        let path = directory + "/" + name
        guard let base = UInt64(name.dropLast(4)) else { return nil }
        let fd: Int32
        let size: Int
        do {
            fd = try FileIO.open(path, O_RDWR)
            size = try FileIO.size(fd, path: path)
        } catch {
            throw EventLogError("cannot open segment: \(error)")
        }
        let segment = Segment(path: path, baseSequence: base, fd: fd, size: size)
        let expectedBase = segments.last?.nextSequence ?? base
        guard base == expectedBase else {
            throw EventLogError(
                "partition \(partition): segment \(path) starts at sequence \(base) but the previous segment ends before \(expectedBase); records are missing. Restore the missing segment from a backup."
            )
        }
        guard size >= Segment.headerLength,
            let header = try? FileIO.pread(fd, count: Segment.headerLength, at: 0, path: path),
            header == Segment.header(partition: partition, baseSequence: base)
        else {
            if isLast && size < Segment.headerLength * 2 {
                // A crash while the segment was being created: it never held a record.
                Log.warning("partition \(partition): removing the unfinished new segment \(path) (\(size) bytes)")
                unlink(path)
                return nil
            }
            throw EventLogError("partition \(partition): segment \(path) has a damaged header; refusing to start.")
        }
        guard size > Segment.headerLength else { return segment }
        guard let mapped = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), mapped != MAP_FAILED else {
            throw EventLogError("cannot map segment \(path): \(SystemError("mmap"))")
        }
        defer { munmap(mapped, size) }
        let bytes = UnsafeRawBufferPointer(start: mapped, count: size)
        var offset = Segment.headerLength
        var expected = base
        var previousTime = segments.last?.lastTime ?? Timestamp(microseconds: Int64.min)
        while offset < size {
            var problem: String?
            switch RecordCodec.decode(bytes, at: offset, partition: partition, includePayload: false) {
            case .record(let record, let length):
                if record.sequence != expected {
                    problem = "sequence \(record.sequence) where \(expected) was expected"
                } else if record.enqueuedTime < previousTime {
                    problem = "enqueued time goes backwards"
                } else {
                    var meta = record.meta
                    if meta.idempotencyKey != nil && meta.payloadDigest == nil {
                        // A record written before log format 2: its digest comes from its payload.
                        meta.payloadDigest = Self.digestOfPayload(bytes, at: offset, partition: partition)
                    }
                    visit(partition, record.sequence, record.enqueuedTime, meta)
                    segment.noteRecord(sequence: record.sequence, offset: offset, time: record.enqueuedTime)
                    previousTime = record.enqueuedTime
                    expected += 1
                    offset += length
                    continue
                }
            case .incomplete:
                problem = "incomplete record"
            case .invalid(let reason):
                problem = reason
            }
            let reason = problem ?? "invalid record"
            if acceptingLoss {
                try truncateTornTail(segment: segment, bytes: bytes, at: offset, reason: reason)
                if acknowledged > expected || Self.containsValidRecord(bytes, after: offset, expecting: expected, partition: partition) {
                    cutOff = "partition \(partition): records from \(expected) on (damaged at byte \(offset) of \(path): \(reason))"
                }
                break
            }
            if expected < acknowledged {
                throw EventLogError(
                    "partition \(partition): record \(expected) in segment \(path) is damaged at byte \(offset) (\(reason)), but records up to \(acknowledged - 1) were acknowledged (high-water mark), so this is not a torn write: records \(expected) to \(acknowledged - 1) would be lost. Refusing to start: restore the segment from a backup, or accept the loss with `meterctl log accept-loss` (the log then gets a new identity and the aggregator and query must be rebuilt)."
                )
            }
            if isLast, !Self.containsValidRecord(bytes, after: offset, expecting: expected, partition: partition) {
                try truncateTornTail(segment: segment, bytes: bytes, at: offset, reason: reason)
                break
            }
            throw EventLogError(
                "partition \(partition): segment \(path) is corrupt at byte \(offset) (record \(expected)): \(reason), and valid records follow, so this is not a torn write. Refusing to start: restore the segment from a backup, or accept losing the records from \(expected) on with `meterctl log accept-loss` (the log then gets a new identity and the aggregator and query must be rebuilt)."
            )
        }
        return segment
    }

    /// Whether a valid record with a sequence at or after `expecting` starts anywhere after `offset`.
    private static func containsValidRecord(
        _ bytes: UnsafeRawBufferPointer, after offset: Int, expecting: UInt64, partition: Int
    ) -> Bool {
        var candidate = offset + 1
        while candidate + RecordCodec.fixedHeaderLength <= bytes.count {
            let sequence = bytes.loadUnaligned(fromByteOffset: candidate + 8, as: UInt64.self).littleEndian
            if sequence >= expecting && sequence < expecting &+ 10_000_000,
                case .record = RecordCodec.decode(bytes, at: candidate, partition: partition)
            {
                return true
            }
            candidate += 1
        }
        return false
    }

    /// The payload digest of the record at `offset`, computed from its JSON (records written
    /// before log format 2 carry none).
    private static func digestOfPayload(_ bytes: UnsafeRawBufferPointer, at offset: Int, partition: Int) -> PayloadDigest? {
        guard case .record(let record, _) = RecordCodec.decode(bytes, at: offset, partition: partition),
            let json = try? JSONParser.parse(record.payload)
        else { return nil }
        return PayloadDigest.ofMessage(json)
    }

    private func truncateTornTail(segment: Segment, bytes: UnsafeRawBufferPointer, at offset: Int, reason: String)
        throws(EventLogError)
    {
        let tornBytes = bytes.count - offset
        let aside = "\(segment.path).torn-\(Int(Date().timeIntervalSince1970))-\(offset)"
        do {
            let fd = try FileIO.open(aside, O_WRONLY | O_CREAT | O_TRUNC)
            try FileIO.pwriteAll(fd, Array(UnsafeRawBufferPointer(rebasing: bytes[offset...])), at: 0, path: aside)
            try FileIO.fdatasync(fd, path: aside)
            close(fd)
            guard ftruncate(segment.fd, off_t(offset)) == 0 else { throw SystemError("ftruncate", segment.path) }
            try FileIO.fdatasync(segment.fd, path: segment.path)
            try FileIO.fsyncDirectory(directory)
        } catch {
            throw EventLogError("cannot truncate the torn tail of \(segment.path): \(error)")
        }
        segment.size = offset
        Log.warning(
            "partition \(partition): truncated a torn tail of \(tornBytes) bytes at byte \(offset) of \(segment.path) (\(reason)); the bytes are kept in \(aside)"
        )
    }

    // MARK: writing (the writer thread only)

    /// Appends records after the last one, returning their sequence numbers. Not durable until
    /// `sync`, not visible to readers until `publish`.
    public func append(_ records: [(time: Timestamp, meta: RecordMeta, payload: [UInt8])]) throws(SystemError) -> [UInt64] {
        guard !records.isEmpty else { return [] }
        if needsRoll { try roll() }
        let segment = condition.withLock { segments.last! }
        var buffer: [UInt8] = []
        buffer.reserveCapacity(records.reduce(0) { $0 + $1.payload.count + 64 })
        var sequences: [UInt64] = []
        sequences.reserveCapacity(records.count)
        var positions: [(UInt64, Int, Timestamp)] = []
        for record in records {
            let sequence = nextSequence + UInt64(sequences.count)
            positions.append((sequence, segment.size + buffer.count, record.time))
            RecordCodec.encode(sequence: sequence, time: record.time, meta: record.meta, payload: record.payload, to: &buffer)
            sequences.append(sequence)
        }
        try FileIO.pwriteAll(segment.fd, buffer, at: segment.size, path: segment.path)
        let written = segment
        condition.withLock {
            written.size += buffer.count
            for (sequence, offset, time) in positions { written.noteRecord(sequence: sequence, offset: offset, time: time) }
        }
        nextSequence += UInt64(records.count)
        lastTime = records.last!.time
        if !unsynced.contains(where: { $0 === segment }) { unsynced.append(segment) }
        return sequences
    }

    /// Whether the current segment is full, so the next append starts a new one (writer thread).
    public var needsRoll: Bool {
        let segment = condition.withLock { segments.last! }
        return segment.size >= segmentBytes && segment.nextSequence > segment.baseSequence
    }

    /// Starts a new segment after making the current one durable. Nothing is written to the log
    /// when it fails (for example out of file descriptors), so the caller may refuse and go on.
    public func roll() throws(SystemError) {
        let current = condition.withLock { segments.last! }
        try FileIO.fdatasync(current.fd, path: current.path)
        unsynced.removeAll { $0 === current }
        let created = try Segment.create(directory: directory, partition: partition, baseSequence: nextSequence)
        condition.withLock { segments.append(created) }
        onRoll?()
    }

    /// Makes everything appended so far durable.
    public func sync() throws(SystemError) {
        for segment in unsynced { try FileIO.fdatasync(segment.fd, path: segment.path) }
        unsynced.removeAll()
    }

    /// Makes everything appended (and synced) visible to readers, and wakes followers.
    public func publish() {
        condition.withLock {
            published = nextSequence
            publishedTime = lastTime
            condition.broadcast()
        }
    }

    // MARK: reading (any thread)

    /// The next sequence number readers will see (the count of durable records).
    public var durableNextSequence: UInt64 { condition.withLock { published } }

    /// The enqueued time of the newest durable record.
    public var durableLastTime: Timestamp? { condition.withLock { publishedTime } }

    /// Bytes in the partition's segments and their count.
    public var storage: (bytes: Int, segments: Int) {
        condition.withLock { (segments.reduce(0) { $0 + $1.size }, segments.count) }
    }

    /// Reads durable records from `sequence` on: at most `maxRecords`, and about `maxBytes`.
    public func read(from sequence: UInt64, maxRecords: Int, maxBytes: Int = 4 << 20) throws(EventLogError) -> [LogRecord] {
        let (limit, segment, start) = condition.withLock { () -> (UInt64, Segment?, (sequence: UInt64, offset: Int)) in
            guard sequence < published else { return (published, nil, (0, 0)) }
            var low = 0
            var high = segments.count - 1
            while low < high {
                let middle = (low + high + 1) / 2
                if segments[middle].baseSequence <= sequence { low = middle } else { high = middle - 1 }
            }
            let segment = segments[low]
            return (published, segment, segment.scanStart(for: sequence))
        }
        guard let segment else { return [] }
        var records: [LogRecord] = []
        var bytesRead = 0
        var offset = start.offset
        var next = start.sequence
        var chunk: [UInt8] = []
        var chunkStart = offset
        let end = condition.withLock { segment.size }
        while next < limit && records.count < maxRecords && bytesRead < maxBytes && offset < end {
            let decoded = chunk.withUnsafeBytes { RecordCodec.decode($0, at: offset - chunkStart, partition: partition) }
            switch decoded {
            case .record(let record, let length):
                if record.sequence >= sequence {
                    records.append(record)
                    bytesRead += length
                }
                offset += length
                next = record.sequence + 1
            case .incomplete:
                if offset == chunkStart && !chunk.isEmpty && chunk.count >= end - offset {
                    throw EventLogError("partition \(partition): \(segment.path) ends inside the record at byte \(offset)")
                }
                let want = max(256 << 10, min(RecordCodec.maximumBodyLength + 8, (chunk.count - (offset - chunkStart)) * 2 + 4096))
                do {
                    chunk = try FileIO.pread(segment.fd, count: min(want, end - offset), at: offset, path: segment.path)
                } catch {
                    throw EventLogError("partition \(partition): cannot read \(segment.path): \(error)")
                }
                chunkStart = offset
                if chunk.isEmpty { return records }
            case .invalid(let reason):
                throw EventLogError("partition \(partition): \(segment.path) is corrupt at byte \(offset): \(reason)")
            }
        }
        // The segment ended: continue in the next one.
        if next < limit && records.count < maxRecords && bytesRead < maxBytes && offset >= end {
            let more = try read(from: next, maxRecords: maxRecords - records.count, maxBytes: maxBytes - bytesRead)
            records.append(contentsOf: more)
        }
        return records
    }

    /// Waits until records after `sequence` are durable, or `timeout` seconds pass.
    public func waitForRecords(from sequence: UInt64, timeout: Double) -> Bool {
        let deadline = Date(timeIntervalSinceNow: timeout)
        condition.lock()
        defer { condition.unlock() }
        while published <= sequence {
            if !condition.wait(until: deadline) { return published > sequence }
        }
        return true
    }

    /// Wakes every waiting follower (for example at shut-down).
    public func wakeFollowers() { condition.withLock { condition.broadcast() } }
}
