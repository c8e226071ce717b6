public import EventStore
import Foundation
import Wire

/// The stream's first message: its identity, partition count and clock, fixed when the stream is
/// made (the embedded log's `log.json`). Written once with `Nats-Expected-Last-Sequence: 0`, so of
/// several ingest instances starting together exactly one writes it and all read the same.
public struct StreamManifest: Sendable, Hashable {
    public static let format = 1
    public var identity: String
    public var partitions: Int
    public var clock: String
    public var created: String

    public init(identity: String, partitions: Int, clock: String, created: String) {
        self.identity = identity
        self.partitions = partitions
        self.clock = clock
        self.created = created
    }

    /// A new manifest with a fresh identity.
    public static func new(partitions: Int, clock: String) -> StreamManifest {
        var generator = SystemRandomNumberGenerator()
        let identity = (0..<2).map { _ in String(generator.next() as UInt64, radix: 16) }.joined(separator: "-")
        let now = Timestamp(microseconds: Int64(Date().timeIntervalSince1970 * 1_000_000))
        return StreamManifest(identity: identity, partitions: partitions, clock: clock, created: now.iso8601)
    }

    public var bytes: [UInt8] {
        JSONWriter.bytes([
            "format": .number(String(Self.format)), "identity": .string(identity), "partitions": .number(String(partitions)),
            "clock": .string(clock), "created": .string(created),
        ])
    }

    /// Decodes a manifest, or says what is wrong with it.
    public static func decode(_ bytes: [UInt8]) -> Result<StreamManifest, EventLogError> {
        guard let value = try? JSONParser.parse(bytes) else { return .failure(EventLogError("the stream's manifest is not JSON")) }
        guard value["format"]?.intValue == format else {
            return .failure(
                EventLogError("the stream's manifest has format \(value["format"].map { JSONWriter.string($0) } ?? "none"), not \(format)"))
        }
        guard let identity = value["identity"]?.stringValue, let partitions = value["partitions"]?.intValue,
            (1...1024).contains(partitions),
            let clock = value["clock"]?.stringValue, let created = value["created"]?.stringValue
        else { return .failure(EventLogError("the stream's manifest lacks identity, partitions, clock or created")) }
        return .success(StreamManifest(identity: identity, partitions: partitions, clock: clock, created: created))
    }
}
