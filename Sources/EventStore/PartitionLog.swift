import CPrefetch
import CSystemIO
import Foundation
public import Wire

/// Why the log cannot be opened or written, in words an operator can act on.
public struct EventLogError: Error, Hashable, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// One partition of the log, as readers see it: records with gap-free sequence numbers, which lie
/// in the write-ahead log's segments among other partitions' records. A sparse index per segment
/// (every 64th record) finds where to start; records of other partitions are skipped by their
/// length without being decoded.
///
/// The `EventLog` writes (one thread); any number of readers read what has been published, which
/// is only ever what is durable.
public final class PartitionLog: @unchecked Sendable {
    public let partition: Int
    /// A condition, not a `Mutex`: followers wait here for records (`waitForRecords`).
    private let condition = NSCondition()
    // Guarded by `condition`.
    private var extents: [(segment: WALSegment, extent: SegmentSummary.Extent)] = []
    private var published: UInt64 = 0
    private var publishedTime: Timestamp?
    private var bytes = 0
    // Writer-side state (the log's writer thread).
    /// The sequence the next appended record gets.
    public private(set) var nextSequence: UInt64 = 0
    /// The time of the newest appended record.
    public private(set) var lastTime: Timestamp?

    init(partition: Int) { self.partition = partition }

    // MARK: writing (the log's writer)

    /// Adds the partition's records of a recovered segment.
    func adopt(_ extent: SegmentSummary.Extent, in segment: WALSegment) {
        condition.withLock {
            extents.append((segment, extent))
            bytes += extent.bytes
        }
        nextSequence = extent.nextSequence
        lastTime = extent.lastTime
    }

    /// Notes a record written at `offset` of `segment` (not yet readable: see `publish`).
    func noteAppended(segment: WALSegment, sequence: UInt64, time: Timestamp, offset: Int, length: Int) {
        condition.lock()
        let index = extents.count - 1
        if index >= 0 && extents[index].segment === segment {
            // In place: a copy of the extent alive here would make every append copy its sparse index.
            if (sequence - extents[index].extent.firstSequence) % SegmentSummary.sparseInterval == 0 {
                extents[index].extent.sparse.append(SegmentSummary.Extent.Mark(sequence: sequence, offset: offset))
            }
            extents[index].extent.nextSequence = sequence + 1
            extents[index].extent.lastTime = time
            extents[index].extent.endOffset = offset + length
            extents[index].extent.bytes += length
        } else {
            extents.append(
                (
                    segment,
                    SegmentSummary.Extent(
                        partition: partition, firstSequence: sequence, nextSequence: sequence + 1, lastTime: time,
                        endOffset: offset + length, bytes: length, sparse: [SegmentSummary.Extent.Mark(sequence: sequence, offset: offset)])
                ))
        }
        bytes += length
        condition.unlock()
        nextSequence = sequence + 1
        lastTime = time
    }

    /// Makes everything appended (and synced) visible to readers, and wakes followers.
    func publish() {
        condition.withLock {
            guard published != nextSequence else { return }
            published = nextSequence
            publishedTime = lastTime
            condition.broadcast()
        }
    }

    /// Sets where recovery found the partition's end.
    func recovered() {
        condition.withLock {
            published = nextSequence
            publishedTime = lastTime
        }
    }

    // MARK: reading (any thread)

    /// The next sequence readers will see (the count of durable records).
    public var durableNextSequence: UInt64 { condition.withLock { published } }

    /// The enqueued time of the newest durable record.
    public var durableLastTime: Timestamp? { condition.withLock { publishedTime } }

    /// Bytes of the partition's records, and the segments that hold them.
    public var storage: (bytes: Int, segments: Int) { condition.withLock { (bytes, extents.count) } }

    /// Reads durable records from `sequence` on: at most `maxRecords`, and about `maxBytes`.
    public func read(from sequence: UInt64, maxRecords: Int, maxBytes: Int = 4 << 20) throws(EventLogError) -> [LogRecord] {
        var records: [LogRecord] = []
        _ = try visit(from: sequence, maxRecords: maxRecords, maxBytes: maxBytes) { segment, offset, _ in
            if case .record(let record, _) = RecordCodec.decode(segment.bytes, at: offset, salt: segment.salt) { records.append(record) }
        }
        return records
    }

    /// Writes durable records from `sequence` on as the wire protocol shows them
    /// (`{"partition","sequence","enqueuedTime","event"}`, comma-separated), straight from the
    /// log's bytes: at most `maxRecords`, and about `maxBytes`. Returns how many, and the
    /// sequence to ask for next.
    public func appendJSON(
        from sequence: UInt64, maxRecords: Int, maxBytes: Int = 4 << 20, to out: inout [UInt8]
    ) throws(EventLogError) -> (count: Int, next: UInt64) {
        // Each record is `{"partition":P,"sequence":S,"enqueuedTime":"T","event":E}`, written from
        // two pieces kept ready (the part before S; the part after it, remade when T changes), the
        // digits of S, and the event's bytes as stored, copied right after their CRC was checked,
        // while they are in the cache.
        var count = 0
        let head = Array(#",{"partition":"#.utf8) + Array(String(partition).utf8) + Array(#","sequence":"#.utf8)
        // The part after S in memory of its own, not an array: an array's bytes read in the loop,
        // where the closure also changes it, were retained and released for every record.
        var middle = UnsafeMutableRawBufferPointer.allocate(byteCount: 128, alignment: 1)
        defer { middle.deallocate() }
        var middleCount = 0
        var middleTime: Timestamp?
        let available = Int(min(UInt64(maxRecords), durableNextSequence &- min(sequence, durableNextSequence)))
        let next = try visit(from: sequence, maxRecords: maxRecords, maxBytes: maxBytes) { segment, _, checked in
            if checked.time != middleTime {
                middleTime = checked.time
                var text = Array(#","enqueuedTime":""#.utf8)
                checked.time.appendISO8601(to: &text)
                text.append(contentsOf: #"","event":"#.utf8)
                if text.count > middle.count {
                    middle.deallocate()
                    middle = .allocate(byteCount: text.count, alignment: 1)
                }
                middle.copyBytes(from: text)
                middleCount = text.count
            }
            if count == 0 {
                // Room for the records ready, each about the size of the first (grown by
                // doubling, a 5,000-record answer was copied at every step), capped near the byte
                // budget, so a large first record (a plan) reserves no more than the answer holds.
                let perRecord = head.count + 20 + middleCount + checked.payload.count + checked.payload.count / 4 + 1
                out.reserveCapacity(out.count + min(max(1, available) * perRecord, maxBytes + perRecord))
            }
            head.withUnsafeBytes { out.append(contentsOf: count == 0 ? UnsafeRawBufferPointer(rebasing: $0.dropFirst()) : $0) }
            JSONWriter.writeInteger(checked.sequence, to: &out)
            out.append(contentsOf: UnsafeRawBufferPointer(rebasing: middle[..<middleCount]))
            out.append(contentsOf: UnsafeRawBufferPointer(rebasing: segment.bytes[checked.payload]))
            out.append(UInt8(ascii: "}"))
            count += 1
        }
        return (count, next)
    }

    /// How far ahead of the record being read the log's bytes are asked for.
    static let prefetchDistance = 4096

    /// Visits durable records from `sequence` on, in order, each checked (length, CRC, sequence):
    /// at most `maxRecords`, and about `maxBytes`. Returns the sequence after the last visited.
    private func visit(
        from sequence: UInt64, maxRecords: Int, maxBytes: Int, _ body: (WALSegment, Int, RecordCodec.Checked) -> Void
    ) throws(EventLogError) -> UInt64 {
        var next = sequence
        var visited = 0
        var bytesRead = 0
        while visited < maxRecords && bytesRead < maxBytes {
            // The extent holding `next`, and how far it may be read.
            let found = condition.withLock { () -> (WALSegment, start: Int, end: Int, limit: UInt64)? in
                guard next < published else { return nil }
                var low = 0
                var high = extents.count - 1
                while low < high {
                    let middle = (low + high + 1) / 2
                    if extents[middle].extent.firstSequence <= next { low = middle } else { high = middle - 1 }
                }
                let (segment, extent) = extents[low]
                guard next < extent.nextSequence else { return nil }
                return (segment, extent.scanStart(for: next), extent.endOffset, min(published, extent.nextSequence))
            }
            guard let (segment, start, end, limit) = found else { break }
            let bytes = segment.bytes
            var offset = start
            while offset < end && next < limit && visited < maxRecords && bytesRead < maxBytes {
                guard let header = RecordCodec.peek(bytes, at: offset), offset + header.length <= end else {
                    throw EventLogError("partition \(partition): \(segment.path) ends inside the record at byte \(offset)")
                }
                // The lines a few kilobytes ahead, as far as this record reaches there: the headers
                // read next lie in them (the other partitions' records, skipped by their header
                // alone, each touch a line of their own), and they are no longer waited for.
                var line = offset + Self.prefetchDistance
                let stop = min(line + header.length, end)
                while line < stop {
                    cprefetch_read(bytes.baseAddress! + line)
                    line += 64
                }
                if header.partition == partition && header.sequence >= next {
                    guard let checked = RecordCodec.check(bytes, at: offset, salt: segment.salt) else {
                        var reason = "damaged record"
                        if case .invalid(let why) = RecordCodec.decode(bytes, at: offset, salt: segment.salt) { reason = why }
                        throw EventLogError("partition \(partition): \(segment.path) is corrupt at byte \(offset): \(reason)")
                    }
                    guard checked.sequence == next else {
                        throw EventLogError(
                            "partition \(partition): \(segment.path) holds record \(checked.sequence) at byte \(offset) where \(next) was expected"
                        )
                    }
                    body(segment, offset, checked)
                    visited += 1
                    bytesRead += header.length
                    next += 1
                }
                offset += header.length
            }
            if next < limit && offset >= end {
                throw EventLogError("partition \(partition): records from \(next) are missing from \(segment.path)")
            }
        }
        return next
    }

    /// The record at `sequence`, if it is durable.
    public func record(at sequence: UInt64) throws(EventLogError) -> LogRecord? {
        try read(from: sequence, maxRecords: 1).first
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
