import SystemIO
import Wire

/// The record format of logs before format 3 (one file per partition segment, no partition in the
/// record). Read only, to convert such a log; pure: tested with byte arrays.
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
enum LegacyRecordCodec {
    static let prefixLength = 8
    static let fixedHeaderLength = 32
    static let digestLength = 16
    static let purchaseFlag: UInt16 = 1
    static let digestFlag: UInt16 = 2
    static let maximumBodyLength = RecordCodec.maximumBodyLength

    /// The outcome of decoding at an offset.
    enum Decoded {
        /// A valid record of `length` bytes.
        case record(LogRecord, length: Int)
        /// Fewer bytes than the record needs (a possibly torn tail).
        case incomplete
        /// The bytes are not a valid record: the reason says why.
        case invalid(String)
    }

    /// Decodes the record starting at `offset` of `bytes` (which may hold more records after it).
    static func decode(_ bytes: UnsafeRawBufferPointer, at offset: Int, partition: Int, includePayload: Bool = true) -> Decoded {
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
