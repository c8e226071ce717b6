import Foundation
import Projection
import QueryModel
import StackTestSupport
import Testing
import Transport
import Wire

#if canImport(Glibc)
    import Glibc
#endif

@Suite("meter-query restarting from its snapshots", .serialized)
struct QuerySnapshotRestartTests {
    static let subscriptions = (0..<6).map { "restart-\($0)" }

    /// Ingest and query with snapshots every few records, a few hours of usage, query caught up.
    static func folded() throws -> (Workload, QueryProcess) {
        let (work, query) = try Workload.started(queryEnvironment: ["METERING_QUERY_SNAPSHOT_RECORDS": "5"])
        try work.send(subscriptions.map { try work.purchase($0, start: "2024-03-01T00:00:00Z") })
        for hour in 1...4 {
            try work.send(subscriptions.map { work.usage($0, "email", "40", properties: ["region": "eu"]) })
            try work.send(subscriptions.map { work.usage($0, "calls", "30") })
            try work.advance(to: "2024-03-01T0\(hour):00:00Z")
        }
        try query.waitUntilCaughtUp(with: work.ingest)
        return (work, query)
    }

    /// The run-rates of every subscription, with series, and every usage record.
    static func answers(_ query: QueryProcess) throws -> [JSONObject] {
        let client = try query.client()
        var answers = try subscriptions.map { name in
            try client.call(Request(op: "runrate", fields: JSONObject(["resourceId": .string(name), "series": true])))
        }
        answers.append(try client.call(Request(op: "usage", fields: JSONObject(["startId": 0, "batchSize": 1000]))))
        return answers
    }

    /// Whether no partition folded a record since the process started (all came from snapshots).
    static func foldedNothing(_ query: QueryProcess) throws -> Bool {
        let partitions = try query.client().call("status")["partitions"]?.arrayValue ?? []
        return !partitions.isEmpty && partitions.allSatisfy { $0["recordsFolded"] == 0 }
    }

    /// The snapshot files of `home`'s query service: path, header, body.
    static func snapshots(_ home: StackHome) throws -> [(path: String, header: JSONValue, body: [UInt8])] {
        let root = home.path + "/data/query/snapshots"
        var found: [(String, JSONValue, [UInt8])] = []
        for folder in try FileManager.default.contentsOfDirectory(atPath: root).sorted() {
            for name in try FileManager.default.contentsOfDirectory(atPath: root + "/" + folder).sorted() where name.hasSuffix(".snapshot")
            {
                let path = root + "/" + folder + "/" + name
                let bytes = Array(try #require(FileManager.default.contents(atPath: path)))
                let newline = try #require(bytes.firstIndex(of: 0x0A))
                found.append((path, try JSONParser.parse(bytes[..<newline]), Array(bytes[(newline + 1)...])))
            }
        }
        return found
    }

    /// Whether a snapshot body's view part is in bytes (`query-view-5`), not JSON (`query-view-4`).
    static func viewPartInBytes(_ body: [UInt8]) -> Bool { body.count > 8 && body[8...].starts(with: Array("MBQV".utf8)) }

    @Test("meter-query writes its snapshots as query-view-5 and restarts from them to the same answers, folding no record again")
    func restartsFromBinarySnapshots() throws {
        let (work, first) = try Self.folded()
        let before = try Self.answers(first)
        first.kill(SIGTERM)
        let files = try Self.snapshots(work.ingest.home)
        #expect(!files.isEmpty)
        for file in files {
            #expect(file.header["format"] == 2, "\(file.path)")
            #expect(Self.viewPartInBytes(file.body), "\(file.path)")
            let view = try PartitionView(binarySnapshot: file.body)
            #expect(view.nextSequence > 0, "\(file.path)")
        }
        let second = try QueryProcess(home: work.ingest.home)
        try second.waitUntilCaughtUp(with: work.ingest)
        #expect(try Self.foldedNothing(second))
        #expect(try Self.answers(second) == before)
    }

    /// Folds, rewrites every snapshot file as an earlier release wrote it (`rewrite`, with the
    /// view, its store, sequence and log), checks the files (`written`, with header and body), then
    /// restarts: the same answers, nothing folded again, the next snapshots in today's format, and
    /// a restart from those folds nothing either.
    static func upgrade(
        rewrite: (PartitionView, SnapshotStore, UInt64, String?) throws -> Void, written: ([UInt8], JSONValue) -> Bool
    ) throws {
        let (work, first) = try Self.folded()
        let before = try Self.answers(first)
        first.kill(SIGTERM)
        let home = work.ingest.home
        for file in try Self.snapshots(home) {
            let view = try PartitionView(binarySnapshot: file.body)
            let sequence = try #require(file.header["sequence"]?.intValue)
            #expect(unlink(file.path) == 0)
            let store = SnapshotStore(root: home.path + "/data/query/snapshots", partition: view.partition, kept: 3)
            try rewrite(view, store, UInt64(sequence), file.header["log"]?.stringValue)
        }
        let earlier = try Self.snapshots(home)
        #expect(!earlier.isEmpty)
        #expect(earlier.allSatisfy { written($0.body, $0.header) })

        let second = try QueryProcess(home: home)
        try second.waitUntilCaughtUp(with: work.ingest)
        #expect(try Self.foldedNothing(second))
        #expect(try Self.answers(second) == before)
        try work.send(Self.subscriptions.map { work.usage($0, "email", "1") })
        try second.waitUntilCaughtUp(with: work.ingest)
        second.kill(SIGTERM)
        let upgraded = try Self.snapshots(home)
        let newest = Dictionary(grouping: upgraded) { ($0.path as NSString).deletingLastPathComponent }.values.compactMap(\.last)
        #expect(newest.allSatisfy { $0.header["format"] == 2 && Self.viewPartInBytes($0.body) })

        let third = try QueryProcess(home: home)
        try third.waitUntilCaughtUp(with: work.ingest)
        #expect(try Self.foldedNothing(third))
    }

    @Test(
        "meter-query restarts from the query-view-3 snapshots of an earlier release to the same answers and writes its next ones as query-view-5"
    )
    func upgradesFromJSONSnapshots() throws {
        // What the earlier release wrote: the view's JSON through the store's JSON path.
        try Self.upgrade(
            rewrite: { view, store, sequence, log in try store.save(sequence: sequence, body: view.snapshot(), log: log) },
            written: { body, header in header["format"] == 1 && (try? JSONParser.parse(body))?["format"] == "query-view-3" })
    }

    @Test(
        "meter-query restarts from the query-view-4 snapshots of the release before (the view's part in JSON) to the same answers and writes its next ones as query-view-5"
    )
    func upgradesFromJSONViewParts() throws {
        try Self.upgrade(
            rewrite: { view, store, sequence, log in try store.save(sequence: sequence, bytes: view.binarySnapshotWithJSONPart(), log: log)
            },
            written: { body, header in header["format"] == 2 && !Self.viewPartInBytes(body) })
    }
}
