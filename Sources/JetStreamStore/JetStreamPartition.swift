public import EventStore
import Foundation
public import Wire

/// One partition of the stream, as readers see it: its records lie in the stream's group
/// messages among other partitions' records; an extent per message says which of its sequences
/// a message holds, and the message is fetched (or found in the store's cache) to read them.
public final class JetStreamPartition: RecordPartition, @unchecked Sendable {
    struct Extent {
        var firstSequence: UInt64
        var nextSequence: UInt64
        var streamSequence: UInt64
    }

    public let partition: Int
    private unowned let store: JetStreamStore
    /// A condition variable, not just a lock: followers wait on it for new records (`waitForRecords`).
    private let condition = NSCondition()
    // Guarded by `condition`.
    private var extents: [Extent] = []
    private var next: UInt64 = 0
    private var newest: Timestamp?
    private var bytes = 0

    init(partition: Int, store: JetStreamStore) {
        self.partition = partition
        self.store = store
    }

    // Applied is durable here: JetStream acknowledged it (or another writer's acknowledged group
    // was read back), so the writer's view and the readers' are the same.
    public var nextSequence: UInt64 { condition.withLock { next } }
    public var lastTime: Timestamp? { condition.withLock { newest } }
    public var durableNextSequence: UInt64 { nextSequence }
    public var durableLastTime: Timestamp? { lastTime }
    public var storage: (bytes: Int, segments: Int) { condition.withLock { (bytes, extents.count) } }

    /// Notes the records `first..<next` held by stream message `streamSequence` (the store's writer lock held).
    func noteApplied(first: UInt64, next: UInt64, time: Timestamp, streamSequence: UInt64, bytes count: Int) {
        condition.withLock {
            if let last = extents.last, last.streamSequence == streamSequence {
                extents[extents.count - 1].nextSequence = next
            } else {
                extents.append(Extent(firstSequence: first, nextSequence: next, streamSequence: streamSequence))
            }
            self.next = next
            newest = time
            bytes += count
        }
    }

    /// Wakes readers once a group is applied.
    func publish() { condition.withLock { condition.broadcast() } }

    public func read(from sequence: UInt64, maxRecords: Int, maxBytes: Int) throws(EventLogError) -> [LogRecord] {
        var records: [LogRecord] = []
        _ = try visit(from: sequence, maxRecords: maxRecords, maxBytes: maxBytes) { bytes, offset, _ in
            if case .record(let record, _) = RecordCodec.decode(bytes, at: offset, salt: 0) { records.append(record) }
        }
        return records
    }

    public func appendJSON(from sequence: UInt64, maxRecords: Int, maxBytes: Int, to out: inout [UInt8]) throws(EventLogError) -> (
        count: Int, next: UInt64
    ) {
        var count = 0
        let prefix = Array(#"{"partition":"#.utf8) + Array(String(partition).utf8) + Array(#","sequence":"#.utf8)
        let next = try visit(from: sequence, maxRecords: maxRecords, maxBytes: maxBytes) { bytes, _, checked in
            if count > 0 { out.append(UInt8(ascii: ",")) }
            out.append(contentsOf: prefix)
            JSONWriter.writeInteger(checked.sequence, to: &out)
            out.append(contentsOf: #","enqueuedTime":""#.utf8)
            out.append(contentsOf: checked.time.iso8601.utf8)
            out.append(contentsOf: #"","event":"#.utf8)
            out.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[checked.payload]))
            out.append(UInt8(ascii: "}"))
            count += 1
        }
        return (count, next)
    }

    /// Visits records from `sequence` on, each checked (length, CRC, sequence), message by message.
    private func visit(
        from sequence: UInt64, maxRecords: Int, maxBytes: Int, _ body: (UnsafeRawBufferPointer, Int, RecordCodec.Checked) -> Void
    ) throws(EventLogError) -> UInt64 {
        var next = sequence
        var visited = 0
        var bytesRead = 0
        while visited < maxRecords && bytesRead < maxBytes {
            let found = condition.withLock { () -> Extent? in
                guard next < self.next, !extents.isEmpty else { return nil }
                var low = 0
                var high = extents.count - 1
                while low < high {
                    let middle = (low + high + 1) / 2
                    if extents[middle].firstSequence <= next { low = middle } else { high = middle - 1 }
                }
                return next < extents[low].nextSequence ? extents[low] : nil
            }
            guard let extent = found else { break }
            let payload = try store.payload(of: extent.streamSequence)
            var failure: EventLogError?
            payload.withUnsafeBytes { bytes in
                var offset = 0
                while offset < bytes.count && next < extent.nextSequence && visited < maxRecords && bytesRead < maxBytes {
                    guard let checked = RecordCodec.check(bytes, at: offset, salt: 0) else {
                        failure = EventLogError(
                            "partition \(partition): stream message \(extent.streamSequence) is damaged at byte \(offset)")
                        return
                    }
                    if checked.partition == partition && checked.sequence >= next {
                        guard checked.sequence == next else {
                            failure = EventLogError(
                                "partition \(partition): stream message \(extent.streamSequence) holds record \(checked.sequence) where \(next) was expected"
                            )
                            return
                        }
                        body(bytes, offset, checked)
                        visited += 1
                        bytesRead += checked.length
                        next += 1
                    }
                    offset += checked.length
                }
            }
            if let failure { throw failure }
            if next < extent.nextSequence && visited < maxRecords && bytesRead < maxBytes {
                throw EventLogError("partition \(partition): records from \(next) are missing from stream message \(extent.streamSequence)")
            }
        }
        return next
    }

    public func waitForRecords(from sequence: UInt64, timeout: Double) -> Bool {
        let deadline = Date(timeIntervalSinceNow: timeout)
        condition.lock()
        defer { condition.unlock() }
        while next <= sequence {
            if !condition.wait(until: deadline) { return next > sequence }
        }
        return true
    }

    public func wakeFollowers() { publish() }
}
