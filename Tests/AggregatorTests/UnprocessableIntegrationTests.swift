import Billing
import Foundation
import StackTestSupport
import Testing
import Transport
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// Records that cannot be billed, in numbers, through the real meter-ingest and meter-aggregator.
@Suite("Unprocessable records at scale, against the real stack", .serialized)
struct UnprocessableIntegrationTests {
    /// Sends `count` usages for the unknown subscriptions `ghost-0` … `ghost-<names − 1>` in turn.
    static func flood(_ ingest: IngestProcess, count: Int, names: Int) throws {
        var index = 0
        while index < count {
            let batch = (index..<min(count, index + 500)).map { usage("ghost-\($0 % names)", "1") }
            let results = try ingest.client().call(appendRequest(batch))["results"]?.arrayValue ?? []
            #expect(results.count == batch.count && results.allSatisfy { $0["status"] == "accepted" })
            index += batch.count
        }
    }

    /// Every entry of one list of the `ledger` op, page after page, and the size of the largest page.
    static func pages(_ aggregator: AggregatorProcess, _ list: String, max: Int) throws -> (entries: [JSONValue], largest: Int) {
        var entries: [JSONValue] = []
        var largest = 0
        var after: JSONValue?
        var fields = JSONObject([.init("list", .string(list)), .init("max", .number(String(max)))])
        repeat {
            if let after { fields["after"] = after }
            let page = try aggregator.client().call(Request(op: "ledger", fields: fields))
            largest = Swift.max(largest, JSONWriter.bytes(.object(page)).count)
            entries += page[list]?.arrayValue ?? []
            // Not a ternary: `nil` would become JSON's null (JSONValue is nil-literal expressible).
            if let next = page["next"], next != .null { after = next } else { after = nil }
        } while after != nil
        return (entries, largest)
    }

    /// The snapshot files of every partition, newest last per partition.
    static func snapshots(_ home: StackHome) -> [String] {
        let root = home.path + "/data/aggregator"
        let partitions = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).sorted()
        return partitions.flatMap { partition in
            ((try? FileManager.default.contentsOfDirectory(atPath: root + "/" + partition)) ?? []).filter { $0.hasSuffix(".snapshot") }
                .sorted().map { root + "/" + partition + "/" + $0 }
        }
    }

    static func unprocessableInStatus(_ aggregator: AggregatorProcess) throws -> Int {
        let partitions = try aggregator.client().call("status")["partitions"]?.arrayValue ?? []
        return partitions.reduce(0) { $0 + ($1["unprocessable"]?.intValue ?? 0) }
    }

    @Test(
        "20,000 usages for 1,500 unknown subscriptions: exact counts, a ledger answered in small pages, small snapshots, meterctl unprocessable"
    )
    func floodOfUnknownSubscriptions() throws {
        let home = StackHome()
        let ingest = try IngestProcess(home: home)
        let aggregator = try AggregatorProcess(home: home, environment: ["METERING_AGGREGATOR_SNAPSHOT_RECORDS": "4000"])
        try Self.flood(ingest, count: 20_000, names: 1500)
        try aggregator.waitUntilCaughtUp(with: ingest, timeout: 120)

        let whole = try aggregator.client().call("ledger")
        #expect(JSONWriter.bytes(.object(whole)).count < 200_000)
        #expect(whole["totals"]?["unprocessableRecords"] == 20000)
        #expect(whole["totals"]?["unprocessable"] == 1500)
        #expect(whole["unprocessable"]?.arrayValue?.count == 100)
        #expect(whole["next"]?["unprocessable"]?["after"] != nil)

        let (groups, largest) = try Self.pages(aggregator, "unprocessable", max: 400)
        #expect(largest < 200_000)
        #expect(groups.count == 1500)
        var counts: [String: Int] = [:]
        for group in groups {
            #expect(group["reason"] == "unknownSubscription")
            counts[group["subscription"]?.stringValue ?? "?", default: 0] += group["count"]?.intValue ?? 0
        }
        let expected = Dictionary(grouping: 0..<20_000) { "ghost-\($0 % 1500)" }.mapValues(\.count)
        #expect(counts == expected)
        #expect(try Self.unprocessableInStatus(aggregator) == 20_000)
        let examples = try Self.pages(aggregator, "examples", max: 1000).entries
        #expect(!examples.isEmpty && examples.count <= 100 * 8)

        // What people read.
        let listing = try TestCommand.run(Binaries.path("meterctl"), ["unprocessable", "--home", home.path], timeout: 60)
        #expect(listing.status == 0, "\(listing.errors)")
        #expect(listing.output.contains("20000 unprocessable records in 1500 groups"))
        let ghost = listing.output.split(separator: "\n").first { $0.contains(" ghost-7 ") }
        #expect(ghost?.contains("unknownSubscription") == true && ghost?.contains(" 14 ") == true, "\(String(describing: ghost))")
        let json = try TestCommand.run(
            Binaries.path("meterctl"), ["unprocessable", "--home", home.path, "--json", "--examples"], timeout: 60)
        #expect(json.status == 0, "\(json.errors)")
        let parsed = try JSONParser.parse(Array(json.output.utf8))
        #expect(parsed["records"] == 20000)
        #expect(parsed["unprocessable"]?.arrayValue?.count == 1500)
        #expect(parsed["examples"]?.arrayValue?.isEmpty == false)

        // Snapshots are bounded by the caps, not by the number of records; a restart restores the counts.
        aggregator.kill(SIGTERM)
        let files = Self.snapshots(home)
        #expect(!files.isEmpty)
        for file in files {
            let size = (try? FileManager.default.attributesOfItem(atPath: file)[.size] as? Int) ?? Int.max
            #expect(size < 150_000, "\(file): \(size) bytes")
        }
        let again = try AggregatorProcess(home: home)
        try again.waitUntilCaughtUp(with: ingest, timeout: 60)
        #expect(try Self.unprocessableInStatus(again) == 20_000)
    }

    @Test("bad arguments of meterctl unprocessable are refused, pointing to its help")
    func meterctlArguments() throws {
        let outcome = try TestCommand.run(Binaries.path("meterctl"), ["unprocessable", "--bogus"], timeout: 30)
        #expect(outcome.status == 64)
        #expect(outcome.errors.contains("unknown option --bogus for 'meterctl unprocessable'; see meterctl unprocessable --help"))
    }

    @Test(
        "removals through the log act on the counts; a snapshot of the earlier format loads, one of an unknown format is moved aside and replayed"
    )
    func removalsAndSnapshotFormats() throws {
        let home = StackHome()
        let ingest = try IngestProcess(home: home, environment: ["METERING_PARTITIONS": "1"])
        var aggregator = try AggregatorProcess(home: home)
        try Self.flood(ingest, count: 60, names: 4)
        try aggregator.waitUntilCaughtUp(with: ingest)
        #expect(try Self.unprocessableInStatus(aggregator) == 60)
        // The operator removes the first 30 records: up to the 30th's sequence.
        let held = try Self.pages(aggregator, "examples", max: 100).entries
        #expect(held.count == 60)
        let thirtieth = try #require(held[29]["sequence"])
        let removal = JSONObject([
            .init("type", "RemoveUnprocessedMessages"), .init("value", ["partitionId": "0", "beforeIncluding": thirtieth]),
        ])
        _ = try ingest.admin().call(appendRequest([.object(removal)]))
        try aggregator.waitUntilCaughtUp(with: ingest)
        #expect(try Self.unprocessableInStatus(aggregator) == 30)
        aggregator.kill(SIGTERM)

        // The newest snapshot rewritten as an earlier release wrote it: JSON, the records as a list.
        let file = try #require(Self.snapshots(home).last)
        #expect(try Self.header(file)["format"]?.intValue == 2, "written in the binary form")
        let (header, body) = try Self.read(file)
        guard case .object(var root) = body else { return }
        let examples = root["unprocessable"]?["examples"]?.arrayValue ?? []
        #expect(examples.count == 30)
        root["format"] = "metering-billing-partition/1"
        root["unprocessable"] = .array(
            examples.map { example in
                .object(JSONObject((example.objectValue?.members ?? []).filter { $0.key != "kind" && $0.key != "subscription" }))
            })
        try Self.write(file, header: header, body: .object(root))
        aggregator = try AggregatorProcess(home: home)
        try aggregator.waitUntilCaughtUp(with: ingest)
        #expect(try Self.unprocessableInStatus(aggregator) == 30)
        #expect(FileManager.default.fileExists(atPath: file))
        let groups = try Self.pages(aggregator, "unprocessable", max: 10).entries
        #expect(groups.map { $0["count"]?.intValue ?? 0 }.reduce(0, +) == 30)
        aggregator.kill(SIGTERM)

        // A format this version does not know: moved aside, the state replayed from the log.
        for snapshot in Self.snapshots(home) {
            let (header, body) = try Self.read(snapshot)
            guard case .object(var root) = body else { continue }
            root["format"] = "metering-billing-partition/99"
            try Self.write(snapshot, header: header, body: .object(root))
        }
        aggregator = try AggregatorProcess(home: home)
        try aggregator.waitUntilCaughtUp(with: ingest)
        #expect(try Self.unprocessableInStatus(aggregator) == 30)
        #expect(FileManager.default.fileExists(atPath: file + ".damaged"))
    }

    /// A snapshot file's header line and its billing state as JSON: the body itself (header format
    /// 1, earlier releases), or the binary state the aggregator writes (format 2) turned into its JSON.
    static func read(_ path: String) throws -> (JSONValue, JSONValue) {
        let (header, body) = try parts(path)
        guard header["format"]?.intValue == 2 else { return (header, try JSONParser.parse(body)) }
        return (header, try PartitionState(binarySnapshot: Array(body)).snapshot())
    }

    /// A snapshot file's header line.
    static func header(_ path: String) throws -> JSONValue { try parts(path).header }

    /// A snapshot file's header line, parsed, and the bytes after it.
    static func parts(_ path: String) throws -> (header: JSONValue, body: ArraySlice<UInt8>) {
        let bytes = Array(try #require(FileManager.default.contents(atPath: path)))
        let newline = try #require(bytes.firstIndex(of: 0x0A))
        return (try JSONParser.parse(bytes[..<newline]), bytes[(newline + 1)...])
    }

    /// Writes a snapshot file with `header`'s partition and sequence, and the length and CRC-32C of `body`.
    static func write(_ path: String, header: JSONValue, body: JSONValue) throws {
        let bytes = JSONWriter.bytes(body)
        let line =
            #"{"format":1,"partition":\#(header["partition"]?.intValue ?? -1),"sequence":\#(header["sequence"]?.intValue ?? -1),"bytes":\#(bytes.count),"crc32c":\#(crc32c(bytes))}"#
        try Data(Array(line.utf8) + [0x0A] + bytes).write(to: URL(fileURLWithPath: path))
    }

    /// CRC-32C (Castagnoli), as the snapshot store checks it.
    static func crc32c(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
        }
        return ~crc
    }
}
