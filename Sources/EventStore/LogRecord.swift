public import Wire

/// One record of the event log, as stored and as read back.
public struct LogRecord: Sendable, Hashable {
    public var partition: Int
    /// Gap-free within the partition, from 0.
    public var sequence: UInt64
    /// The authoritative business time, assigned by ingest; never decreases within a partition.
    public var enqueuedTime: Timestamp
    public var meta: RecordMeta
    /// The message as appended: compact UTF-8 JSON of its envelope.
    public var payload: [UInt8]

    public init(partition: Int, sequence: UInt64, enqueuedTime: Timestamp, meta: RecordMeta, payload: [UInt8]) {
        self.partition = partition
        self.sequence = sequence
        self.enqueuedTime = enqueuedTime
        self.meta = meta
        self.payload = payload
    }

    /// The record as the wire protocol shows it: `{"partition","sequence","enqueuedTime","event"}`,
    /// the stored payload spliced in without re-parsing.
    public func appendJSON(to out: inout [UInt8]) {
        out.append(contentsOf: #"{"partition":"#.utf8)
        out.append(contentsOf: String(partition).utf8)
        out.append(contentsOf: #","sequence":"#.utf8)
        out.append(contentsOf: String(sequence).utf8)
        out.append(contentsOf: #","enqueuedTime":""#.utf8)
        out.append(contentsOf: enqueuedTime.iso8601.utf8)
        out.append(contentsOf: #"","event":"#.utf8)
        out.append(contentsOf: payload)
        out.append(UInt8(ascii: "}"))
    }
}

/// What recovery needs of a record without parsing its JSON: the idempotency key, and for
/// purchases the names that fix the subscription's partition.
public struct RecordMeta: Sendable, Hashable {
    public var idempotencyKey: String?
    /// Set on purchases only.
    public var purchasedResource: ResourceName?
    /// The digest of the message's canonical form, kept with every keyed record so a resend of the
    /// key can be told apart from a different message reusing it. Nil in records written before
    /// log format 2 (recovery computes it from the payload then).
    public var payloadDigest: PayloadDigest?

    public init(idempotencyKey: String? = nil, purchasedResource: ResourceName? = nil, payloadDigest: PayloadDigest? = nil) {
        self.idempotencyKey = idempotencyKey
        self.purchasedResource = purchasedResource
        self.payloadDigest = payloadDigest
    }
}

/// The binary record format. Pure: tested with byte arrays.
///
/// ```
/// 0   u32  masked CRC-32C of bytes 4..<end
/// 4   u32  body length B (bytes after offset 8)
/// 8   u64  sequence
/// 16  i64  enqueued time, µs since the epoch
/// 24  u16  idempotency key length K
/// 26  u16  purchased resourceId length I
/// 28  u16  purchased resourceUri length U
/// 30  u16  flags (bit 0: purchase; bit 1: a payload digest follows)
/// 32  16 bytes of payload digest (high, low words) when flag bit 1 is set
///     K + I + U bytes of UTF-8, then the JSON payload
/// ```
/// All integers little-endian. The CRC covers the length too, so a damaged length is detected.
public enum RecordCodec {
    public static let prefixLength = 8
    public static let fixedHeaderLength = 32
    static let digestLength = 16
    static let purchaseFlag: UInt16 = 1
    static let digestFlag: UInt16 = 2
    /// The largest payload ingest may be configured to accept (`METERING_MAX_FRAME_BYTES`).
    public static let maximumPayloadLength = 256 << 20
    /// The largest body accepted when reading, so a damaged length never causes a huge allocation.
    public static let maximumBodyLength = maximumPayloadLength + 3 * (1 << 16) + 32

    /// Appends the encoded record to `out`.
    public static func encode(sequence: UInt64, time: Timestamp, meta: RecordMeta, payload: [UInt8], to out: inout [UInt8]) {
        var key = meta.idempotencyKey ?? ""
        var resourceId = meta.purchasedResource?.resourceId ?? ""
        var resourceUri = meta.purchasedResource?.resourceUri ?? ""
        let limit = Int(UInt16.max)
        let lengths = (min(key.utf8.count, limit), min(resourceId.utf8.count, limit), min(resourceUri.utf8.count, limit))
        let start = out.count
        let digestBytes = meta.payloadDigest == nil ? 0 : digestLength
        let body = 24 + digestBytes + lengths.0 + lengths.1 + lengths.2 + payload.count
        out.reserveCapacity(out.count + 8 + body)
        appendInteger(UInt32(0), to: &out)
        appendInteger(UInt32(body), to: &out)
        appendInteger(sequence, to: &out)
        appendInteger(UInt64(bitPattern: time.microseconds), to: &out)
        appendInteger(UInt16(lengths.0), to: &out)
        appendInteger(UInt16(lengths.1), to: &out)
        appendInteger(UInt16(lengths.2), to: &out)
        appendInteger((meta.purchasedResource == nil ? 0 : purchaseFlag) | (meta.payloadDigest == nil ? 0 : digestFlag), to: &out)
        if let digest = meta.payloadDigest {
            appendInteger(digest.high, to: &out)
            appendInteger(digest.low, to: &out)
        }
        key.withUTF8 { out.append(contentsOf: UnsafeBufferPointer(rebasing: $0.prefix(limit))) }
        resourceId.withUTF8 { out.append(contentsOf: UnsafeBufferPointer(rebasing: $0.prefix(limit))) }
        resourceUri.withUTF8 { out.append(contentsOf: UnsafeBufferPointer(rebasing: $0.prefix(limit))) }
        out.append(contentsOf: payload)
        let crc = out.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[(start + 4)...])) }
        let masked = CRC32C.mask(crc).littleEndian
        withUnsafeBytes(of: masked) { bytes in
            for index in 0..<4 { out[start + index] = bytes[index] }
        }
    }

    static func appendInteger<T: FixedWidthInteger>(_ value: T, to out: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { out.append(contentsOf: $0) }
    }

    /// The outcome of decoding at an offset.
    public enum Decoded {
        /// A valid record of `length` bytes.
        case record(LogRecord, length: Int)
        /// Fewer bytes than the record needs (a possibly torn tail).
        case incomplete
        /// The bytes are not a valid record: the reason says why.
        case invalid(String)
    }

    /// Decodes the record starting at `offset` of `bytes` (which may hold more records after it).
    public static func decode(_ bytes: UnsafeRawBufferPointer, at offset: Int, partition: Int, includePayload: Bool = true) -> Decoded {
        let available = bytes.count - offset
        guard available >= prefixLength else { return .incomplete }
        let storedCRC = bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self).littleEndian
        let body = Int(bytes.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self).littleEndian)
        if storedCRC == 0 && body == 0 { return .invalid("zero bytes where a record should start") }
        guard body >= 24, body <= maximumBodyLength else { return .invalid("record length \(body) is impossible") }
        guard available >= prefixLength + body else { return .incomplete }
        let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[(offset + 4)..<(offset + prefixLength + body)]))
        guard CRC32C.mask(crc) == storedCRC else { return .invalid("checksum mismatch") }
        let sequence = bytes.loadUnaligned(fromByteOffset: offset + 8, as: UInt64.self).littleEndian
        let micros = Int64(bitPattern: bytes.loadUnaligned(fromByteOffset: offset + 16, as: UInt64.self).littleEndian)
        let keyLength = Int(bytes.loadUnaligned(fromByteOffset: offset + 24, as: UInt16.self).littleEndian)
        let idLength = Int(bytes.loadUnaligned(fromByteOffset: offset + 26, as: UInt16.self).littleEndian)
        let uriLength = Int(bytes.loadUnaligned(fromByteOffset: offset + 28, as: UInt16.self).littleEndian)
        let flags = bytes.loadUnaligned(fromByteOffset: offset + 30, as: UInt16.self).littleEndian
        let digestBytes = flags & digestFlag != 0 ? digestLength : 0
        let keyStart = offset + fixedHeaderLength + digestBytes
        let metaEnd = keyStart + keyLength + idLength + uriLength
        guard metaEnd <= offset + prefixLength + body else { return .invalid("record header lengths exceed the record") }
        func text(_ from: Int, _ count: Int) -> String? {
            count == 0 ? nil : String(decoding: UnsafeRawBufferPointer(rebasing: bytes[from..<from + count]), as: UTF8.self)
        }
        var meta = RecordMeta(idempotencyKey: text(keyStart, keyLength))
        if digestBytes > 0 {
            meta.payloadDigest = PayloadDigest(
                high: bytes.loadUnaligned(fromByteOffset: offset + fixedHeaderLength, as: UInt64.self).littleEndian,
                low: bytes.loadUnaligned(fromByteOffset: offset + fixedHeaderLength + 8, as: UInt64.self).littleEndian)
        }
        if flags & purchaseFlag != 0 {
            meta.purchasedResource = ResourceName(
                resourceId: text(keyStart + keyLength, idLength), resourceUri: text(keyStart + keyLength + idLength, uriLength))
        }
        // Recovery needs only the header and meta: skipping the payload copy halves its cost.
        let payload = includePayload ? Array(UnsafeRawBufferPointer(rebasing: bytes[metaEnd..<(offset + prefixLength + body)])) : []
        let record = LogRecord(
            partition: partition, sequence: sequence, enqueuedTime: Timestamp(microseconds: micros), meta: meta,
            payload: payload)
        return .record(record, length: prefixLength + body)
    }
}
