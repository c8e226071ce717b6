import SystemIO
import Wire

/// The durable high-water mark of every partition: how many records had been acknowledged when it
/// was written. Kept in `high-water.json` beside the log, rewritten at least once a second while
/// records arrive and at every segment roll, never per append.
///
/// At start-up every partition must hold at least its mark; a partition that ends earlier lost
/// acknowledged records (a deleted segment, a truncated file, a bit flip in a durable record), and
/// ingest refuses to start naming them instead of reusing their sequence numbers.
///
/// The file is one line: the masked CRC-32C of the JSON that follows, a space, and the JSON, so a
/// damaged mark is detected rather than believed.
public struct HighWaterMarks: Sendable, Hashable {
    /// The identity of the log the marks belong to.
    public var identity: String
    /// Per partition: the sequence the next record gets (the count of acknowledged records).
    public var next: [UInt64]
    /// When the marks were written (wall clock), for the refusal message.
    public var written: String

    public init(identity: String, next: [UInt64], written: String) {
        self.identity = identity
        self.next = next
        self.written = written
    }

    /// The file's bytes.
    public var bytes: [UInt8] {
        let body = JSONWriter.bytes([
            "format": 1, "identity": .string(identity), "partitions": .number(String(next.count)),
            "next": .array(next.map { .number(String($0)) }), "written": .string(written),
        ])
        let crc = body.withUnsafeBytes { CRC32C.mask(CRC32C.checksum($0)) }
        return Array("\(crc) ".utf8) + body + [0x0A]
    }

    /// Reads the file's bytes; the error says what is wrong.
    public static func decode(_ bytes: [UInt8]) -> Result<HighWaterMarks, EventLogError> {
        var content = bytes[...]
        if content.last == 0x0A { content = content.dropLast() }
        guard let space = content.firstIndex(of: 0x20), let crc = UInt32(String(decoding: content[..<space], as: UTF8.self)) else {
            return .failure(EventLogError("it does not start with a checksum"))
        }
        let body = Array(content[(space + 1)...])
        guard body.withUnsafeBytes({ CRC32C.mask(CRC32C.checksum($0)) }) == crc else {
            return .failure(EventLogError("its checksum does not match (the file is damaged)"))
        }
        guard let json = try? JSONParser.parse(body, maximumDepth: 4), json["format"]?.intValue == 1,
            let identity = json["identity"]?.stringValue, let marks = json["next"]?.arrayValue,
            json["partitions"]?.intValue == marks.count
        else { return .failure(EventLogError("it is not a format-1 high-water mark")) }
        var next: [UInt64] = []
        for mark in marks {
            guard let value = mark.intValue, value >= 0 else { return .failure(EventLogError("a mark is not a sequence number")) }
            next.append(UInt64(value))
        }
        return .success(HighWaterMarks(identity: identity, next: next, written: json["written"]?.stringValue ?? "?"))
    }
}
