import SystemIO
public import Wire

/// What recovery needs to know of one segment without reading its records: where each
/// partition's records lie in it (a sparse index), the idempotency keys it holds, and the
/// purchases that fix routes. Built while appending (or by scanning the segment) and written
/// beside a sealed segment as `wal/<number>.idx`, so a restart reads summaries instead of
/// re-checking every record; a missing or damaged summary is rebuilt by scanning. Pure: encoded
/// and decoded with byte arrays.
public struct SegmentSummary: Sendable, Equatable {
    /// A sparse index entry every this many records of a partition.
    static let sparseInterval: UInt64 = 64

    /// One partition's records in the segment.
    public struct Extent: Sendable, Equatable {
        public var partition: Int
        public var firstSequence: UInt64
        /// One past the last record's sequence.
        public var nextSequence: UInt64
        public var lastTime: Timestamp
        /// The offset just after the partition's last record in the segment.
        public var endOffset: Int
        /// Bytes of the partition's records in the segment.
        public var bytes: Int
        /// (sequence, offset) of the first record and of every `sparseInterval`-th one after it.
        public var sparse: [Mark]

        public struct Mark: Sendable, Equatable {
            public var sequence: UInt64
            public var offset: Int
        }

        /// The offset to start scanning from to find `sequence` (a record of the partition at or before it).
        func scanStart(for sequence: UInt64) -> Int {
            var low = 0
            var high = sparse.count - 1
            var best = sparse.first?.offset ?? 0
            while low <= high {
                let middle = (low + high) / 2
                if sparse[middle].sequence <= sequence {
                    best = sparse[middle].offset
                    low = middle + 1
                } else {
                    high = middle - 1
                }
            }
            return best
        }
    }

    /// An idempotency key held by a record of the segment.
    public struct Key: Sendable, Equatable {
        public var key: PayloadDigest
        public var payload: PayloadDigest
        public var partition: Int
        public var sequence: UInt64
        public var time: Timestamp
    }

    /// A purchase's names, which route its subscription's later messages.
    public struct Purchase: Sendable, Equatable {
        public var partition: Int
        public var resource: ResourceName
    }

    public var number: UInt64
    /// The offset just after the segment's last record.
    public var dataEnd: Int
    public var extents: [Extent] = []
    public var keys: [Key] = []
    public var purchases: [Purchase] = []
    /// Position of each partition's extent in `extents`, for appending without a search.
    private var extentIndex: [Int: Int] = [:]

    public static func == (lhs: SegmentSummary, rhs: SegmentSummary) -> Bool {
        lhs.number == rhs.number && lhs.dataEnd == rhs.dataEnd && lhs.extents == rhs.extents && lhs.keys == rhs.keys
            && lhs.purchases == rhs.purchases
    }

    public init(number: UInt64, dataEnd: Int) {
        self.number = number
        self.dataEnd = dataEnd
    }

    /// The newest enqueued time among the segment's records.
    public var newestTime: Timestamp? { extents.map(\.lastTime).max() }

    /// Notes a record appended at `offset`, `length` bytes long.
    mutating func note(partition: Int, sequence: UInt64, time: Timestamp, meta: RecordMeta, offset: Int, length: Int) {
        if extentIndex.count != extents.count {
            extentIndex = Dictionary(extents.indices.map { (extents[$0].partition, $0) }, uniquingKeysWith: { $1 })
        }
        if let index = extentIndex[partition] {
            if (sequence - extents[index].firstSequence) % Self.sparseInterval == 0 {
                extents[index].sparse.append(Extent.Mark(sequence: sequence, offset: offset))
            }
            extents[index].nextSequence = sequence + 1
            extents[index].lastTime = time
            extents[index].endOffset = offset + length
            extents[index].bytes += length
        } else {
            extentIndex[partition] = extents.count
            extents.append(
                Extent(
                    partition: partition, firstSequence: sequence, nextSequence: sequence + 1, lastTime: time, endOffset: offset + length,
                    bytes: length, sparse: [Extent.Mark(sequence: sequence, offset: offset)]))
        }
        dataEnd = max(dataEnd, offset + length)
        if let key = meta.keyDigest, let payload = meta.payloadDigest {
            keys.append(Key(key: key, payload: payload, partition: partition, sequence: sequence, time: time))
        }
        if let resource = meta.purchasedResource { purchases.append(Purchase(partition: partition, resource: resource)) }
    }

    // MARK: the file

    static let magic = Array("MTRIDX02".utf8)

    /// The summary file's bytes: magic, masked CRC-32C of the rest, then the contents.
    public var bytes: [UInt8] {
        var body: [UInt8] = []
        body.reserveCapacity(64 + extents.reduce(0) { $0 + 48 + $1.sparse.count * 16 } + keys.count * 64)
        func put<T: FixedWidthInteger>(_ value: T) { RecordCodec.appendInteger(value, to: &body) }
        func put(_ text: String?) {
            let utf8 = Array((text ?? "").utf8.prefix(Int(UInt16.max)))
            put(UInt16(utf8.count))
            body += utf8
        }
        put(number)
        put(UInt64(dataEnd))
        put(UInt32(extents.count))
        for extent in extents {
            put(UInt32(extent.partition))
            put(extent.firstSequence)
            put(extent.nextSequence)
            put(extent.lastTime.microseconds)
            put(UInt64(extent.endOffset))
            put(UInt64(extent.bytes))
            put(UInt32(extent.sparse.count))
            for mark in extent.sparse {
                put(mark.sequence)
                put(UInt64(mark.offset))
            }
        }
        put(UInt64(keys.count))
        for key in keys {
            put(key.key.high)
            put(key.key.low)
            put(key.payload.high)
            put(key.payload.low)
            put(UInt32(key.partition))
            put(key.sequence)
            put(key.time.microseconds)
        }
        put(UInt32(purchases.count))
        for purchase in purchases {
            put(UInt32(purchase.partition))
            put(UInt8((purchase.resource.resourceId == nil ? 0 : 1) | (purchase.resource.resourceUri == nil ? 0 : 2)))
            put(purchase.resource.resourceId)
            put(purchase.resource.resourceUri)
        }
        let crc = body.withUnsafeBytes { CRC32C.mask(CRC32C.checksum($0)) }
        var out = Self.magic
        RecordCodec.appendInteger(crc, to: &out)
        return out + body
    }

    /// Reads a summary file; nil when it is damaged or not a summary (it is then rebuilt).
    public static func decode(_ bytes: [UInt8]) -> SegmentSummary? {
        guard bytes.count >= 12, Array(bytes[0..<8]) == magic else { return nil }
        return bytes.withUnsafeBytes { raw -> SegmentSummary? in
            let stored = raw.loadUnaligned(fromByteOffset: 8, as: UInt32.self).littleEndian
            guard CRC32C.mask(CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[12...]))) == stored else { return nil }
            var cursor = 12
            var failed = false
            func get<T: FixedWidthInteger>(_: T.Type) -> T {
                guard cursor + MemoryLayout<T>.size <= raw.count else {
                    failed = true
                    return 0
                }
                defer { cursor += MemoryLayout<T>.size }
                return T(littleEndian: raw.loadUnaligned(fromByteOffset: cursor, as: T.self))
            }
            func text() -> String {
                let count = Int(get(UInt16.self))
                guard cursor + count <= raw.count else {
                    failed = true
                    return ""
                }
                defer { cursor += count }
                return String(decoding: UnsafeRawBufferPointer(rebasing: raw[cursor..<cursor + count]), as: UTF8.self)
            }
            var summary = SegmentSummary(number: get(UInt64.self), dataEnd: Int(truncatingIfNeeded: get(UInt64.self)))
            let extentCount = Int(get(UInt32.self))
            guard extentCount <= 65_536 else { return nil }
            for _ in 0..<extentCount where !failed {
                var extent = Extent(
                    partition: Int(get(UInt32.self)), firstSequence: get(UInt64.self), nextSequence: get(UInt64.self),
                    lastTime: Timestamp(microseconds: get(Int64.self)), endOffset: Int(truncatingIfNeeded: get(UInt64.self)),
                    bytes: Int(truncatingIfNeeded: get(UInt64.self)), sparse: [])
                let marks = Int(get(UInt32.self))
                guard marks <= raw.count / 16 else { return nil }
                extent.sparse.reserveCapacity(marks)
                for _ in 0..<marks where !failed {
                    extent.sparse.append(Extent.Mark(sequence: get(UInt64.self), offset: Int(truncatingIfNeeded: get(UInt64.self))))
                }
                summary.extents.append(extent)
            }
            let keyCount = Int(truncatingIfNeeded: get(UInt64.self))
            guard keyCount >= 0, keyCount <= raw.count / 52 else { return nil }
            summary.keys.reserveCapacity(keyCount)
            for _ in 0..<keyCount where !failed {
                let key = PayloadDigest(high: get(UInt64.self), low: get(UInt64.self))
                let payload = PayloadDigest(high: get(UInt64.self), low: get(UInt64.self))
                summary.keys.append(
                    Key(
                        key: key, payload: payload, partition: Int(get(UInt32.self)), sequence: get(UInt64.self),
                        time: Timestamp(microseconds: get(Int64.self))))
            }
            let purchaseCount = Int(get(UInt32.self))
            guard purchaseCount <= raw.count / 9 else { return nil }
            for _ in 0..<purchaseCount where !failed {
                let partition = Int(get(UInt32.self))
                let present = get(UInt8.self)
                let id = text()
                let uri = text()
                summary.purchases.append(
                    Purchase(
                        partition: partition,
                        resource: ResourceName(resourceId: present & 1 != 0 ? id : nil, resourceUri: present & 2 != 0 ? uri : nil)))
            }
            guard !failed, cursor == raw.count else { return nil }
            return summary
        }
    }
}
