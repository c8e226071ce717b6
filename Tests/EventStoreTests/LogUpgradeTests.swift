import EventStore
import Foundation
import Testing
import Wire

/// A log written by the release before log identities (format 1: `{"format":1,"partitions":2}`,
/// records without payload digests), kept in Tests/Fixtures/format1-log exactly as that
/// release's meter-ingest wrote it: 2 partitions, 2 purchases, 41 usages (40 keyed), ticks.
@Suite("Opening a format-1 log")
struct LogUpgradeTests {
    static let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/format1-log").path

    /// A copy of the fixture to open (opening upgrades it in place).
    static func copy() throws -> TemporaryDirectory {
        let directory = TemporaryDirectory()
        try FileManager.default.removeItem(atPath: directory.path)
        try FileManager.default.copyItem(atPath: fixture, toPath: directory.path)
        return directory
    }

    @Test("it is upgraded on first start: an identity, the clock, high-water marks, and a digest for every keyed record")
    func upgrade() throws {
        let directory = try Self.copy()
        var options = EventLog.Options(partitionCount: 4)
        options.clock = "manual"
        let identity = try { () throws -> String in
            var keyed: [(PayloadDigest, PayloadDigest?)] = []
            var purchases = 0
            let log = try EventLog(directory: directory.path, options: options, willVisit: { _, _ in }) { _, _, _, meta in
                if let key = meta.keyDigest { keyed.append((key, meta.payloadDigest)) }
                if meta.purchasedResource != nil { purchases += 1 }
            }
            #expect(log.partitions.count == 2)
            #expect(log.manifest.clock == "manual")
            #expect(log.notices.contains { $0.contains("converted the format-1 log") })
            #expect(keyed.count == 41)
            #expect(purchases == 2)
            #expect(keyed.allSatisfy { $0.1 != nil })
            // The digest computed from an old record's payload is the one a resend of it gets.
            let records = try log.partitions.flatMap { try $0.read(from: 0, maxRecords: 1000) }
            let usage = try #require(records.first { $0.meta.idempotencyKey == "usage-7" })
            let message = try JSONParser.parse(usage.payload)
            let resent = PayloadDigest.ofMessage(message)
            #expect(usage.meta.payloadDigest == resent)
            #expect(keyed.first { $0.0 == PayloadDigest.hash("usage-7") }?.1 == resent)
            #expect(records.count == 2 + 41 + 6)
            let manifest = try JSONParser.parse(Array(try #require(FileManager.default.contents(atPath: directory.path + "/log.json"))))
            #expect(manifest["format"] == 2)
            #expect(FileManager.default.fileExists(atPath: directory.path + "/high-water.json"))
            return log.manifest.identity
        }()
        // Reopened, it is a current log with the same identity.
        let reopened = try EventLog(directory: directory.path, options: options)
        #expect(reopened.manifest.identity == identity)
        #expect(!reopened.notices.contains { $0.contains("converted") })
        #expect(try reopened.partitions.map { try $0.read(from: 0, maxRecords: 1000).count }.reduce(0, +) == 49)
    }

    @Test("records written now carry their digest and read back with it")
    func digestsRoundTrip() throws {
        let directory = TemporaryDirectory()
        let log = try EventLog(directory: directory.path, partitionCount: 1)
        let digest = PayloadDigest(high: 0x0123_4567_89AB_CDEF, low: 0xFEDC_BA98_7654_3210)
        try log.commit([
            EventLog.Pending(
                partition: 0, time: Timestamp(seconds: 5), meta: RecordMeta(idempotencyKey: "k", payloadDigest: digest), payload: payload(1)
            ),
            EventLog.Pending(
                partition: 0, time: Timestamp(seconds: 5),
                meta: RecordMeta(
                    idempotencyKey: "p", purchasedResource: ResourceName(resourceId: "r", resourceUri: "u"), payloadDigest: digest),
                payload: payload(2)),
        ])
        let records = try log.partitions[0].read(from: 0, maxRecords: 10)
        #expect(records.map(\.meta.payloadDigest) == [digest, digest])
        #expect(records[1].meta.purchasedResource == ResourceName(resourceId: "r", resourceUri: "u"))
        #expect(records[1].payload == payload(2))
    }
}
