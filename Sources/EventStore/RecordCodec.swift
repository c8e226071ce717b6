import SystemIO
public import Wire

/// The binary format of a record in the write-ahead log, where the records of every partition
/// follow each other in commit order. Pure: tested with byte arrays.
///
/// ```
/// 0   u32  masked CRC-32C, seeded with the segment's salt, of bytes 4..<8+B
/// 4   u32  body length B (bytes after offset 8)
/// 8   u64  sequence within the partition
/// 16  i64  enqueued time, µs since the epoch
/// 24  u16  partition
/// 26  u16  flags (bit 0: purchase; bit 1: payload digest present; bit 2: key digest present;
///          bit 3: defines a plan of the catalog)
/// 28  u16  idempotency key length K
/// 30  u16  purchased resourceId length I
/// 32  u16  purchased resourceUri length U
/// 34  u16  reserved, 0
/// 36  16 bytes of payload digest when flag bit 1 is set; 16 bytes of key digest when bit 2 is set
///     K + I + U bytes of UTF-8, then the payload (the message's canonical JSON)
/// ```
/// All integers little-endian. The CRC covers the length, so a damaged length is detected, and
/// the salt, so bytes left over from another segment never pass for a record of this one. Eight
/// zero bytes where a record would start mark the end of the written part of a segment (segments
/// are preallocated with zeros).
public enum RecordCodec {
    public static let prefixLength = 8
    public static let fixedHeaderLength = 36
    static let digestLength = 16
    static let purchaseFlag: UInt16 = 1
    static let payloadDigestFlag: UInt16 = 2
    static let keyDigestFlag: UInt16 = 4
    static let planFlag: UInt16 = 8
    /// The largest payload ingest may be configured to accept (`METERING_MAX_FRAME_BYTES`).
    public static let maximumPayloadLength = 256 << 20
    /// The largest body accepted when reading, so a damaged length never causes a huge allocation.
    public static let maximumBodyLength = maximumPayloadLength + 3 * (1 << 16) + 64

    /// The encoded length of a record.
    public static func length(meta: RecordMeta, payloadCount: Int) -> Int {
        length(meta: meta, keyCount: meta.idempotencyKey?.utf8.count ?? 0, payloadCount: payloadCount)
    }

    /// The length of a record whose idempotency key is `keyCount` bytes given apart from `meta`
    /// (`EventLog.Pending.keyInPayload`).
    public static func length(meta: RecordMeta, keyCount: Int, payloadCount: Int) -> Int {
        let limit = Int(UInt16.max)
        return fixedHeaderLength + (meta.payloadDigest == nil ? 0 : digestLength) + (meta.keyDigest == nil ? 0 : digestLength)
            + min(keyCount, limit) + min(meta.purchasedResource?.resourceId?.utf8.count ?? 0, limit)
            + min(meta.purchasedResource?.resourceUri?.utf8.count ?? 0, limit) + payloadCount
    }

    /// Appends the encoded record to `out`.
    public static func encode(
        partition: Int, sequence: UInt64, time: Timestamp, meta: RecordMeta, payload: UnsafeRawBufferPointer, salt: UInt32,
        to out: inout [UInt8]
    ) {
        let start = out.count
        let count = length(meta: meta, payloadCount: payload.count)
        out.append(contentsOf: repeatElement(0, count: count))
        out.withUnsafeMutableBytes { bytes in
            _ = encode(
                partition: partition, sequence: sequence, time: time, meta: meta, payload: payload, salt: salt,
                into: UnsafeMutableRawBufferPointer(rebasing: bytes[start...]))
        }
    }

    /// Writes the encoded record at the start of `out`, which has room for `length(meta:payloadCount:)`
    /// bytes, and returns that length. Written in place (no array to grow): a commit group's
    /// records are encoded into one buffer sized ahead.
    public static func encode(
        partition: Int, sequence: UInt64, time: Timestamp, meta: RecordMeta, payload: UnsafeRawBufferPointer, salt: UInt32,
        into out: UnsafeMutableRawBufferPointer
    ) -> Int {
        guard var key = meta.idempotencyKey else {
            return encode(
                partition: partition, sequence: sequence, time: time, meta: meta, key: nil, payload: payload, salt: salt, into: out)
        }
        return key.withUTF8 { key in
            encode(
                partition: partition, sequence: sequence, time: time, meta: meta, key: UnsafeRawBufferPointer(key), payload: payload,
                salt: salt, into: out)
        }
    }

    /// `encode(partition:sequence:time:meta:payload:salt:into:)` with the idempotency key's bytes
    /// given apart (`meta.idempotencyKey` is not read): a key kept in the payload is written
    /// without a string made of it.
    public static func encode(
        partition: Int, sequence: UInt64, time: Timestamp, meta: RecordMeta, key: UnsafeRawBufferPointer?, payload: UnsafeRawBufferPointer,
        salt: UInt32, into out: UnsafeMutableRawBufferPointer
    ) -> Int {
        let limit = Int(UInt16.max)
        let key = key.map { UnsafeRawBufferPointer(rebasing: $0.prefix(limit)) }
        let count = length(meta: meta, keyCount: key?.count ?? 0, payloadCount: payload.count)
        precondition(out.count >= count, "RecordCodec.encode: \(out.count) bytes of room for a record of \(count)")
        var flags: UInt16 = meta.purchasedResource == nil ? 0 : purchaseFlag
        if meta.payloadDigest != nil { flags |= payloadDigestFlag }
        if meta.keyDigest != nil { flags |= keyDigestFlag }
        if meta.definesPlan { flags |= planFlag }
        var at = 4
        func put<T: FixedWidthInteger>(_ value: T) {
            out.storeBytes(of: value.littleEndian, toByteOffset: at, as: T.self)
            at += MemoryLayout<T>.size
        }
        func put(_ text: String?) {
            guard var text else { return }
            text.withUTF8 { utf8 in
                let part = UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: utf8.prefix(limit)))
                UnsafeMutableRawBufferPointer(rebasing: out[at...]).copyMemory(from: part)
                at += part.count
            }
        }
        put(UInt32(count - prefixLength))
        put(sequence)
        put(UInt64(bitPattern: time.microseconds))
        put(UInt16(truncatingIfNeeded: partition))
        put(flags)
        put(UInt16(key?.count ?? 0))
        put(UInt16(min(meta.purchasedResource?.resourceId?.utf8.count ?? 0, limit)))
        put(UInt16(min(meta.purchasedResource?.resourceUri?.utf8.count ?? 0, limit)))
        put(UInt16(0))
        if let digest = meta.payloadDigest {
            put(digest.high)
            put(digest.low)
        }
        if let digest = meta.keyDigest {
            put(digest.high)
            put(digest.low)
        }
        if let key {
            UnsafeMutableRawBufferPointer(rebasing: out[at...]).copyMemory(from: key)
            at += key.count
        }
        put(meta.purchasedResource?.resourceId)
        put(meta.purchasedResource?.resourceUri)
        UnsafeMutableRawBufferPointer(rebasing: out[at...]).copyMemory(from: payload)
        at += payload.count
        let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: out[4..<at]), continuing: salt)
        out.storeBytes(of: CRC32C.mask(crc).littleEndian, toByteOffset: 0, as: UInt32.self)
        return at
    }

    static func appendInteger<T: FixedWidthInteger>(_ value: T, to out: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { out.append(contentsOf: $0) }
    }

    /// A record's fixed header, read without checking anything: for skipping records of other
    /// partitions in a stretch already verified.
    public struct Header: Sendable, Hashable {
        public var length: Int
        public var sequence: UInt64
        public var partition: Int
    }

    /// The header at `offset`, or nil when fewer bytes than a header remain or the length is 0.
    @inline(__always)
    public static func peek(_ bytes: UnsafeRawBufferPointer, at offset: Int) -> Header? {
        guard bytes.count - offset >= fixedHeaderLength else { return nil }
        let body = Int(bytes.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self).littleEndian)
        guard body > 0 else { return nil }
        return Header(
            length: prefixLength + body, sequence: bytes.loadUnaligned(fromByteOffset: offset + 8, as: UInt64.self).littleEndian,
            partition: Int(bytes.loadUnaligned(fromByteOffset: offset + 24, as: UInt16.self).littleEndian))
    }

    /// The outcome of decoding at an offset.
    public enum Decoded {
        /// A valid record of `length` bytes.
        case record(LogRecord, length: Int)
        /// Zero bytes where a record would start: the written part of the segment ends here.
        case end
        /// Fewer bytes than the record needs (a possibly torn tail).
        case incomplete
        /// The bytes are not a valid record: the reason says why.
        case invalid(String)
    }

    /// Decodes (and checks) the record starting at `offset` of `bytes`.
    public static func decode(_ bytes: UnsafeRawBufferPointer, at offset: Int, salt: UInt32, includePayload: Bool = true) -> Decoded {
        let available = bytes.count - offset
        guard available >= prefixLength else { return available == 0 || isZero(bytes, from: offset) ? .end : .incomplete }
        let storedCRC = bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self).littleEndian
        let body = Int(bytes.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self).littleEndian)
        if storedCRC == 0 && body == 0 { return .end }
        guard body >= fixedHeaderLength - prefixLength, body <= maximumBodyLength else {
            return .invalid("record length \(body) is impossible")
        }
        guard available >= prefixLength + body else { return .incomplete }
        let end = offset + prefixLength + body
        let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[(offset + 4)..<end]), continuing: salt)
        guard CRC32C.mask(crc) == storedCRC else { return .invalid("checksum mismatch") }
        let sequence = bytes.loadUnaligned(fromByteOffset: offset + 8, as: UInt64.self).littleEndian
        let micros = Int64(bitPattern: bytes.loadUnaligned(fromByteOffset: offset + 16, as: UInt64.self).littleEndian)
        let partition = Int(bytes.loadUnaligned(fromByteOffset: offset + 24, as: UInt16.self).littleEndian)
        let flags = bytes.loadUnaligned(fromByteOffset: offset + 26, as: UInt16.self).littleEndian
        let keyLength = Int(bytes.loadUnaligned(fromByteOffset: offset + 28, as: UInt16.self).littleEndian)
        let idLength = Int(bytes.loadUnaligned(fromByteOffset: offset + 30, as: UInt16.self).littleEndian)
        let uriLength = Int(bytes.loadUnaligned(fromByteOffset: offset + 32, as: UInt16.self).littleEndian)
        var cursor = offset + fixedHeaderLength
        var meta = RecordMeta()
        func digest() -> PayloadDigest {
            defer { cursor += digestLength }
            return PayloadDigest(
                high: bytes.loadUnaligned(fromByteOffset: cursor, as: UInt64.self).littleEndian,
                low: bytes.loadUnaligned(fromByteOffset: cursor + 8, as: UInt64.self).littleEndian)
        }
        let digests = (flags & payloadDigestFlag != 0 ? digestLength : 0) + (flags & keyDigestFlag != 0 ? digestLength : 0)
        guard cursor + digests + keyLength + idLength + uriLength <= end else {
            return .invalid("record header lengths exceed the record")
        }
        if flags & payloadDigestFlag != 0 { meta.payloadDigest = digest() }
        if flags & keyDigestFlag != 0 { meta.keyDigest = digest() }
        func text(_ count: Int) -> String? {
            defer { cursor += count }
            return count == 0 ? nil : String(decoding: UnsafeRawBufferPointer(rebasing: bytes[cursor..<cursor + count]), as: UTF8.self)
        }
        meta.idempotencyKey = text(keyLength)
        let resourceId = text(idLength)
        let resourceUri = text(uriLength)
        if flags & purchaseFlag != 0 { meta.purchasedResource = ResourceName(resourceId: resourceId, resourceUri: resourceUri) }
        meta.definesPlan = flags & planFlag != 0
        let payload = includePayload ? Array(UnsafeRawBufferPointer(rebasing: bytes[cursor..<end])) : []
        let record = LogRecord(
            partition: partition, sequence: sequence, enqueuedTime: Timestamp(microseconds: micros), meta: meta, payload: payload)
        return .record(record, length: prefixLength + body)
    }

    /// A record checked (length and CRC) without building its meta: where its payload lies.
    public struct Checked: Sendable {
        public var length: Int
        public var sequence: UInt64
        public var time: Timestamp
        public var partition: Int
        public var payload: Range<Int>
    }

    /// Checks the record at `offset` as `decode` does, allocating nothing; nil when it is not a
    /// sound record (`decode` says why).
    @inline(__always)
    public static func check(_ bytes: UnsafeRawBufferPointer, at offset: Int, salt: UInt32) -> Checked? {
        guard bytes.count - offset >= fixedHeaderLength else { return nil }
        let storedCRC = bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self).littleEndian
        let body = Int(bytes.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self).littleEndian)
        guard body >= fixedHeaderLength - prefixLength, body <= maximumBodyLength, bytes.count - offset >= prefixLength + body else {
            return nil
        }
        let end = offset + prefixLength + body
        let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[(offset + 4)..<end]), continuing: salt)
        guard CRC32C.mask(crc) == storedCRC else { return nil }
        let flags = bytes.loadUnaligned(fromByteOffset: offset + 26, as: UInt16.self).littleEndian
        let digests = (flags & payloadDigestFlag != 0 ? digestLength : 0) + (flags & keyDigestFlag != 0 ? digestLength : 0)
        let names =
            Int(bytes.loadUnaligned(fromByteOffset: offset + 28, as: UInt16.self).littleEndian)
            + Int(bytes.loadUnaligned(fromByteOffset: offset + 30, as: UInt16.self).littleEndian)
            + Int(bytes.loadUnaligned(fromByteOffset: offset + 32, as: UInt16.self).littleEndian)
        let payloadStart = offset + fixedHeaderLength + digests + names
        guard payloadStart <= end else { return nil }
        return Checked(
            length: prefixLength + body, sequence: bytes.loadUnaligned(fromByteOffset: offset + 8, as: UInt64.self).littleEndian,
            time: Timestamp(
                microseconds: Int64(bitPattern: bytes.loadUnaligned(fromByteOffset: offset + 16, as: UInt64.self).littleEndian)),
            partition: Int(bytes.loadUnaligned(fromByteOffset: offset + 24, as: UInt16.self).littleEndian), payload: payloadStart..<end)
    }

    /// The meta of a checked record as an index needs it (its digests), read without building the
    /// key's text; nil for a purchase (its names are needed), a plan definition (rare: decoded whole)
    /// or a key written without its digest.
    @inline(__always)
    public static func digestsOnly(_ bytes: UnsafeRawBufferPointer, at offset: Int) -> RecordMeta? {
        let flags = bytes.loadUnaligned(fromByteOffset: offset + 26, as: UInt16.self).littleEndian
        let keyLength = bytes.loadUnaligned(fromByteOffset: offset + 28, as: UInt16.self).littleEndian
        guard flags & (purchaseFlag | planFlag) == 0, keyLength == 0 || flags & keyDigestFlag != 0 else { return nil }
        var meta = RecordMeta()
        var cursor = offset + fixedHeaderLength
        if flags & payloadDigestFlag != 0 {
            meta.payloadDigest = PayloadDigest(
                high: bytes.loadUnaligned(fromByteOffset: cursor, as: UInt64.self).littleEndian,
                low: bytes.loadUnaligned(fromByteOffset: cursor + 8, as: UInt64.self).littleEndian)
            cursor += digestLength
        }
        if flags & keyDigestFlag != 0 {
            meta.keyDigest = PayloadDigest(
                high: bytes.loadUnaligned(fromByteOffset: cursor, as: UInt64.self).littleEndian,
                low: bytes.loadUnaligned(fromByteOffset: cursor + 8, as: UInt64.self).littleEndian)
        }
        return meta
    }

    /// Whether every byte from `offset` to the end is zero.
    static func isZero(_ bytes: UnsafeRawBufferPointer, from offset: Int) -> Bool {
        var index = offset
        while index < bytes.count {
            if bytes[index] != 0 { return false }
            index += 1
        }
        return true
    }
}
