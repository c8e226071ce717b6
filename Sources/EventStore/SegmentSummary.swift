import SystemIO
public import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// What recovery needs to know of one segment without reading its records: where each
/// partition's records lie in it (a sparse index), the idempotency keys it holds, the
/// purchases that fix routes, and where the plan catalog's definitions are. Built while appending (or by scanning the segment) and written
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

    /// Where a record defining a plan of the catalog is.
    public struct Definition: Sendable, Equatable {
        public var partition: Int
        public var sequence: UInt64

        public init(partition: Int, sequence: UInt64) {
            self.partition = partition
            self.sequence = sequence
        }
    }

    public var number: UInt64
    /// The offset just after the segment's last record.
    public var dataEnd: Int
    public var extents: [Extent] = []
    public var keys: [Key] = []
    /// How many keys the segment holds (`keys` is empty when the summary was read without them).
    public var keyCount: Int { leftOutKeyCount ?? keys.count }
    /// The key count of a summary read without its keys.
    private var leftOutKeyCount: Int?
    public var purchases: [Purchase] = []
    /// The `PlanDefined` records of the segment, as (partition, sequence).
    public var definitions: [Definition] = []
    /// Position of each partition's extent in `extents`, for appending without a search.
    private var extentIndex: [Int: Int] = [:]

    public static func == (lhs: SegmentSummary, rhs: SegmentSummary) -> Bool {
        lhs.number == rhs.number && lhs.dataEnd == rhs.dataEnd && lhs.extents == rhs.extents && lhs.keys == rhs.keys
            && lhs.keyCount == rhs.keyCount
            && lhs.purchases == rhs.purchases && lhs.definitions == rhs.definitions
    }

    public init(number: UInt64, dataEnd: Int) {
        self.number = number
        self.dataEnd = dataEnd
    }

    /// The newest enqueued time among the segment's records.
    public var newestTime: Timestamp? { extents.map(\.lastTime).max() }

    /// Notes a record appended at `offset`, `length` bytes long.
    public mutating func note(partition: Int, sequence: UInt64, time: Timestamp, meta: RecordMeta, offset: Int, length: Int) {
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
        if meta.definesPlan { definitions.append(Definition(partition: partition, sequence: sequence)) }
    }

    // MARK: the file

    /// The format with the keys in a block of their own, checked on their own: a restart that
    /// does not want a segment's keys reads only what comes before them.
    static let magic = Array("MTRIDX04".utf8)
    /// The format before (one checksum over everything, keys in the middle): still read.
    static let previousMagic = Array("MTRIDX03".utf8)
    /// The format before the plan catalog (no definitions): still read, as such a segment can hold none.
    static let earlierMagic = Array("MTRIDX02".utf8)
    /// Bytes before the head: magic, head length, the head's and the keys' masked CRC-32C.
    static let prefixLength = 24
    /// Bytes of one key in the file.
    static let keyLength = 52

    /// The summary file's bytes: magic, the head's length, the masked CRC-32C of the head and of
    /// the keys, the head (number, end, extents, key count, purchases, definitions), the keys.
    public var bytes: [UInt8] {
        let head = encodedHead(format: 4)
        let keysBlock = encodedKeys()
        var out = Self.magic
        out.reserveCapacity(Self.prefixLength + head.count + keysBlock.count)
        RecordCodec.appendInteger(UInt64(head.count), to: &out)
        RecordCodec.appendInteger(head.withUnsafeBytes { CRC32C.mask(CRC32C.checksum($0)) }, to: &out)
        RecordCodec.appendInteger(keysBlock.withUnsafeBytes { CRC32C.mask(CRC32C.checksum($0)) }, to: &out)
        return out + head + keysBlock
    }

    /// The bytes of the format before (`MTRIDX03`): magic, masked CRC-32C of the rest, then the
    /// contents with the keys between the extents and the purchases. Kept to test reading it.
    public var previousFormatBytes: [UInt8] {
        let body = encodedHead(format: 3)
        let crc = body.withUnsafeBytes { CRC32C.mask(CRC32C.checksum($0)) }
        var out = Self.previousMagic
        RecordCodec.appendInteger(crc, to: &out)
        return out + body
    }

    private func encodedKeys() -> [UInt8] {
        var body: [UInt8] = []
        body.reserveCapacity(keys.count * Self.keyLength)
        for key in keys { Self.append(key, to: &body) }
        return body
    }

    private static func append(_ key: Key, to body: inout [UInt8]) {
        RecordCodec.appendInteger(key.key.high, to: &body)
        RecordCodec.appendInteger(key.key.low, to: &body)
        RecordCodec.appendInteger(key.payload.high, to: &body)
        RecordCodec.appendInteger(key.payload.low, to: &body)
        RecordCodec.appendInteger(UInt32(key.partition), to: &body)
        RecordCodec.appendInteger(key.sequence, to: &body)
        RecordCodec.appendInteger(key.time.microseconds, to: &body)
    }

    /// Format 4's head, or format 3's whole body (the keys in place).
    private func encodedHead(format: Int) -> [UInt8] {
        var body: [UInt8] = []
        body.reserveCapacity(64 + extents.reduce(0) { $0 + 48 + $1.sparse.count * 16 } + (format == 3 ? keys.count * 64 : 0))
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
        if format == 3 {
            for key in keys { Self.append(key, to: &body) }
        }
        put(UInt32(purchases.count))
        for purchase in purchases {
            put(UInt32(purchase.partition))
            put(UInt8((purchase.resource.resourceId == nil ? 0 : 1) | (purchase.resource.resourceUri == nil ? 0 : 2)))
            put(purchase.resource.resourceId)
            put(purchase.resource.resourceUri)
        }
        put(UInt32(definitions.count))
        for definition in definitions {
            put(UInt32(definition.partition))
            put(definition.sequence)
        }
        return body
    }

    /// Reads a summary file; nil when it is damaged or not a summary (it is then rebuilt). Without
    /// `keys`, the keys are left out (`keyCount` says how many there are): a format-4 file's keys
    /// are then not even read.
    public static func read(path: String, keys includeKeys: Bool) -> SegmentSummary? {
        guard let fd = try? FileIO.open(path, O_RDONLY) else { return nil }
        defer { close(fd) }
        guard let size = try? FileIO.size(fd, path: path), size >= prefixLength,
            let prefix = try? FileIO.pread(fd, count: prefixLength, at: 0, path: path), prefix.count == prefixLength
        else { return nil }
        guard Array(prefix[0..<8]) == magic else {
            guard let all = try? FileIO.pread(fd, count: size, at: 0, path: path), all.count == size else { return nil }
            return decode(all, keys: includeKeys)
        }
        let headLength = prefix.withUnsafeBytes {
            Int(truncatingIfNeeded: UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self)))
        }
        guard headLength >= 0, headLength <= size - prefixLength else { return nil }
        let count = includeKeys ? size : prefixLength + headLength
        guard let bytes = try? FileIO.pread(fd, count: count, at: 0, path: path), bytes.count == count else { return nil }
        return decode(bytes, keys: includeKeys, fileSize: size)
    }

    /// Reads a summary file's bytes (see `read`); in format 4, `bytes` may stop after the head
    /// when `keys` is false (`fileSize` is then the whole file's).
    public static func decode(_ bytes: [UInt8], keys includeKeys: Bool = true, fileSize: Int? = nil) -> SegmentSummary? {
        guard bytes.count >= 12 else { return nil }
        let magicBytes = Array(bytes[0..<8])
        let format: Int
        if magicBytes == magic {
            format = 4
        } else if magicBytes == previousMagic {
            format = 3
        } else if magicBytes == earlierMagic {
            format = 2
        } else {
            return nil
        }
        return bytes.withUnsafeBytes { raw -> SegmentSummary? in
            func load<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T {
                T(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: T.self))
            }
            var head: UnsafeRawBufferPointer
            var keysBlock: UnsafeRawBufferPointer?
            if format == 4 {
                guard raw.count >= prefixLength else { return nil }
                let headLength = Int(truncatingIfNeeded: load(UInt64.self, at: 8))
                guard headLength >= 0, headLength <= raw.count - prefixLength else { return nil }
                head = UnsafeRawBufferPointer(rebasing: raw[prefixLength..<prefixLength + headLength])
                guard CRC32C.mask(CRC32C.checksum(head)) == load(UInt32.self, at: 16) else { return nil }
                if includeKeys {
                    let block = UnsafeRawBufferPointer(rebasing: raw[(prefixLength + headLength)...])
                    guard CRC32C.mask(CRC32C.checksum(block)) == load(UInt32.self, at: 20) else { return nil }
                    keysBlock = block
                } else if (fileSize ?? raw.count) < prefixLength + headLength {
                    return nil
                }
            } else {
                head = UnsafeRawBufferPointer(rebasing: raw[12...])
                guard CRC32C.mask(CRC32C.checksum(head)) == load(UInt32.self, at: 8) else { return nil }
            }
            var reader = Reader(raw: head)
            guard let decoded = reader.summary(format: format, keys: includeKeys) else { return nil }
            var summary = decoded.0
            let keyCount = decoded.keyCount
            if format == 4 {
                let expected = keyCount * keyLength
                if let keysBlock {
                    guard keysBlock.count == expected else { return nil }
                    var keysReader = Reader(raw: keysBlock)
                    summary.keys.reserveCapacity(keyCount)
                    for _ in 0..<keyCount { summary.keys.append(keysReader.key()) }
                } else if (fileSize ?? raw.count) - prefixLength - head.count != expected {
                    return nil
                }
            }
            if !includeKeys { summary.leftOutKeyCount = keyCount }
            return summary
        }
    }

    /// Reads the fields of a summary in order, noting when the bytes run out.
    private struct Reader {
        let raw: UnsafeRawBufferPointer
        var cursor = 0
        var failed = false

        init(raw: UnsafeRawBufferPointer) { self.raw = raw }

        mutating func get<T: FixedWidthInteger>(_: T.Type) -> T {
            guard cursor + MemoryLayout<T>.size <= raw.count else {
                failed = true
                return 0
            }
            defer { cursor += MemoryLayout<T>.size }
            return T(littleEndian: raw.loadUnaligned(fromByteOffset: cursor, as: T.self))
        }

        mutating func text() -> String {
            let count = Int(get(UInt16.self))
            guard cursor + count <= raw.count else {
                failed = true
                return ""
            }
            defer { cursor += count }
            return String(decoding: UnsafeRawBufferPointer(rebasing: raw[cursor..<cursor + count]), as: UTF8.self)
        }

        mutating func key() -> Key {
            let key = PayloadDigest(high: get(UInt64.self), low: get(UInt64.self))
            let payload = PayloadDigest(high: get(UInt64.self), low: get(UInt64.self))
            return Key(
                key: key, payload: payload, partition: Int(get(UInt32.self)), sequence: get(UInt64.self),
                time: Timestamp(microseconds: get(Int64.self)))
        }

        /// The head (format 4) or the whole body (formats 2 and 3, keys in place).
        mutating func summary(format: Int, keys includeKeys: Bool) -> (SegmentSummary, keyCount: Int)? {
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
            guard keyCount >= 0, keyCount <= Int(UInt32.max) * 16 else { return nil }
            if format < 4 {
                guard keyCount <= raw.count / SegmentSummary.keyLength else { return nil }
                if includeKeys {
                    summary.keys.reserveCapacity(keyCount)
                    for _ in 0..<keyCount where !failed { summary.keys.append(key()) }
                } else {
                    cursor += keyCount * SegmentSummary.keyLength
                    failed = failed || cursor > raw.count
                }
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
            if format >= 3 {
                let definitionCount = Int(get(UInt32.self))
                guard definitionCount <= raw.count / 12 else { return nil }
                for _ in 0..<definitionCount where !failed {
                    summary.definitions.append(Definition(partition: Int(get(UInt32.self)), sequence: get(UInt64.self)))
                }
            }
            guard !failed, cursor == raw.count else { return nil }
            return (summary, keyCount)
        }
    }
}
