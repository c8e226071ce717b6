import EventStore
import Foundation
import Metrics
import StackTestSupport
import Synchronization
import Testing
import Transport
import Wire

@testable import Ingest

/// Ingest's handler with a real log in a temporary directory and its committer, driven
/// from bytes through `MemoryConnection`: no process, no socket.
final class IngestUnderTest {
    let home = StackHome()
    let log: EventLog
    let committer: Committer
    let handler: IngestHandler

    /// `store` wraps the log when given (to make commits fail).
    init(partitions: Int = 2, store: (EventLog) -> any RecordStore = { $0 }) throws {
        log = try EventLog(directory: home.path + "/log", options: EventLog.Options(partitionCount: partitions))
        let clock = Clock(mode: .manual, start: Timestamp(year: 2024, month: 3, day: 1))
        let store = store(log)
        committer = Committer(
            log: store, clock: clock, router: PartitionRouter(partitionCount: partitions), idempotency: IdempotencyIndex(retentionDays: 7))
        handler = IngestHandler(log: store, committer: committer, clock: clock, connectionCount: { 1 })
    }

    deinit { committer.stop() }

    /// `events` appended on a connection of `listener`, answered.
    func append(_ events: [String], on listener: String = IngestHandler.clientListener) throws -> JSONValue {
        let connection = MemoryConnection(listener: listener)
        let payload = #"{"op":"append","id":7,"events":["# + events.joined(separator: ",") + "]}"
        #expect(connection.request(Array(payload.utf8), to: handler))
        return try JSONParser.parse(try #require(connection.take().first))
    }
}

@Suite("meter-ingest's handler, driven from bytes without a process")
struct IngestHandlerTests {
    static let purchase =
        #"{"type":"SubscriptionPurchased","value":{"subscription":{"resourceId":"h-1","subscriptionStart":"2024-03-01T00:00:00Z","renewalInterval":"Monthly","plan":{"planId":"p","billingDimensions":{"cpu":{"type":"simple","dimension":"cpu","included":10}}}}}}"#

    static func usage(_ id: String, _ quantity: String) -> String {
        #"{"type":"UsageReported","id":"\#(id)","value":{"resourceId":"h-1","timestamp":"2024-03-01T00:00:00Z","meterName":"cpu","quantity":\#(quantity)}}"#
    }

    @Test("an append is answered per event in order, a resend is a duplicate, another payload under a used id a conflict")
    func appendAnswers() throws {
        let ingest = try IngestUnderTest()
        let first = try ingest.append([Self.purchase, Self.usage("u-1", "1.5"), #"{"type":"UsageReported","value":{}}"#])
        #expect(first["id"] == 7 && first["ok"] == true)
        let results = try #require(first["results"]?.arrayValue)
        #expect(results.map { $0["status"]?.stringValue } == ["accepted", "accepted", "rejected"])
        #expect(results[2]["error"]?["code"] == "invalid_event")
        let again = try #require(try ingest.append([Self.usage("u-1", "1.5"), Self.usage("u-1", "2")])["results"]?.arrayValue)
        #expect(again.map { $0["status"]?.stringValue } == ["duplicate", "conflict"])
        #expect(again[0]["sequence"] == results[1]["sequence"] && again[0]["partition"] == results[1]["partition"])
    }

    @Test("usage read on the fast path naming only a resourceUri lands where its purchase put the subscription, stored with its key")
    func fastPathRoutesByPurchaseAndKeepsTheKey() throws {
        let ingest = try IngestUnderTest(partitions: 4)
        // A managed application's name that hashes to another partition than its resourceId: only
        // the purchase's route can put its usage beside the subscription.
        let home = PartitionRouter.partition(of: "h-2", count: 4)
        let uri = try #require(
            (0..<64).map { "/subscriptions/s/resourceGroups/g/providers/Microsoft.Solutions/applications/a\($0)" }
                .first { PartitionRouter.partition(of: $0, count: 4) != home })
        let purchase =
            #"{"type":"SubscriptionPurchased","value":{"subscription":{"resourceId":"h-2","resourceUri":"\#(uri)","subscriptionStart":"2024-03-01T00:00:00Z","renewalInterval":"Monthly","plan":{"planId":"p","billingDimensions":{"cpu":{"type":"simple","dimension":"cpu","included":10}}}}}}"#
        let usage =
            #"{"type":"UsageReported","id":"by-uri-1","value":{"resourceUri":"\#(uri)","timestamp":"2024-03-01T00:00:00Z","meterName":"cpu","quantity":2}}"#
        #expect(AppendFastPath.readUsage(Array(usage.utf8))?.keyInPayload != nil, "read on the fast path, its key kept in its payload")
        let results = try #require(try ingest.append([purchase, usage])["results"]?.arrayValue)
        #expect(results.map { $0["status"]?.stringValue } == ["accepted", "accepted"])
        #expect(results.map { $0["partition"]?.intValue } == [home, home])
        let records = try ingest.log.partitions[home].read(from: 0, maxRecords: 10, maxBytes: 1 << 20)
        #expect(records.map(\.meta.idempotencyKey) == [nil, "by-uri-1"])
        #expect(records.last?.meta.keyDigest == PayloadDigest.hash("by-uri-1"))
        // Another message under the key: a conflict that names the key (made from the payload).
        let conflict =
            #"{"type":"UsageReported","id":"by-uri-1","value":{"resourceUri":"\#(uri)","timestamp":"2024-03-01T00:00:00Z","meterName":"cpu","quantity":3}}"#
        let again = try #require(try ingest.append([usage, conflict])["results"]?.arrayValue)
        #expect(again.map { $0["status"]?.stringValue } == ["duplicate", "conflict"])
        #expect(again[1]["error"]?["message"]?.stringValue?.contains("by-uri-1") == true)
    }

    @Test("an append large enough for its reply to be made while it is synced is answered per event in order, and its resend as duplicates")
    func largeAppendAnswers() throws {
        let ingest = try IngestUnderTest()
        _ = try ingest.append([Self.purchase])
        let count = Committer.repliesAheadFromEvents + 44
        var events = (0..<count).map { Self.usage("big-\($0)", "1") }
        events[100] = #"{"type":"UsageReported","value":{}}"#
        let first = try #require(try ingest.append(events)["results"]?.arrayValue)
        #expect(first.count == count)
        #expect(first.indices.allSatisfy { first[$0]["status"]?.stringValue == ($0 == 100 ? "rejected" : "accepted") })
        #expect(first[0]["sequence"] == 1 && first[101]["sequence"] == 101 && first[count - 1]["sequence"] == .number(String(count - 1)))
        // Every event valid this time: the reply is made from the committer's results alone.
        events.remove(at: 100)
        var expected = first
        expected.remove(at: 100)
        let again = try #require(try ingest.append(events)["results"]?.arrayValue)
        #expect(again.count == count - 1)
        #expect(again.allSatisfy { $0["status"] == "duplicate" })
        #expect(again.map { $0["sequence"] } == expected.map { $0["sequence"] })
    }

    @Test("status says how long each step of appending took, and the metrics count the same steps")
    func appendStepTimes() throws {
        let ingest = try IngestUnderTest()
        func status() throws -> JSONValue {
            let connection = MemoryConnection(listener: IngestHandler.clientListener)
            #expect(connection.request(Array(#"{"op":"status"}"#.utf8), to: ingest.handler))
            return try JSONParser.parse(try #require(connection.take().first))
        }
        let before = try #require(try status()["commit"]?["stepMicroseconds"]?.objectValue)
        #expect(before.members.map(\.key) == ["read", "decide", "store", "answer", "index"])
        _ = try ingest.append([Self.purchase] + (0..<Committer.repliesAheadFromEvents).map { Self.usage("t-\($0)", "1") })
        let after = try #require(try status()["commit"]?["stepMicroseconds"])
        // Reading, deciding and syncing hundreds of events takes more than a microsecond each.
        for step in ["read", "decide", "store"] {
            #expect((after[step]?.intValue ?? 0) > (before[step]?.intValue ?? 0), "\(step)")
        }
        let exposition = String(decoding: ingestMetrics.registry.exposition(), as: UTF8.self)
        for step in AppendStep.allCases {
            #expect(exposition.contains(#"metering_ingest_append_step_seconds_total{step="\#(step.name)"}"#), "\(step)")
        }
    }

    @Test("a large append the store could not write is refused whole, never answered accepted, and the next one is written")
    func largeAppendNotWritten() throws {
        let ingest = try IngestUnderTest(store: { FailingStore(log: $0, failures: [.notWritten("test: no new segment")]) })
        let events = [Self.purchase] + (1..<(Committer.repliesAheadFromEvents + 10)).map { Self.usage("nw-\($0)", "1") }
        let refused = try #require(try ingest.append(events)["results"]?.arrayValue)
        #expect(refused.count == events.count)
        #expect(refused.allSatisfy { $0["status"] == "rejected" && $0["error"]?["code"] == "unavailable" })
        #expect(ingest.log.storedPartitions.map(\.nextSequence) == [0, 0])
        let written = try #require(try ingest.append(events)["results"]?.arrayValue)
        #expect(written.allSatisfy { $0["status"] == "accepted" })
    }

    @Test("a large group another writer superseded is decided again and answered with the second decision's positions")
    func largeAppendSuperseded() throws {
        let ingest = try IngestUnderTest(store: { FailingStore(log: $0, failures: [.superseded("test: another writer")]) })
        let events = [Self.purchase] + (1..<(Committer.repliesAheadFromEvents + 10)).map { Self.usage("sup-\($0)", "1") }
        let answered = try #require(try ingest.append(events)["results"]?.arrayValue)
        #expect(answered.allSatisfy { $0["status"] == "accepted" })
        let total = ingest.log.storedPartitions.reduce(0) { $0 + Int($1.nextSequence) }
        #expect(total == events.count)
        #expect(Set(answered.map { "\($0["partition"]!)/\($0["sequence"]!)" }).count == events.count)
    }

    @Test("on the I/O thread an append is taken and answered once durable; one with a refused event is left to a worker")
    func appendOnIOThread() throws {
        let ingest = try IngestUnderTest()
        let connection = MemoryConnection(listener: IngestHandler.clientListener)
        func frame(_ events: [String]) -> [UInt8] {
            Array((#"{"op":"append","id":3,"events":["# + events.joined(separator: ",") + "]}").utf8)
        }
        let finished = DispatchSemaphore(value: 0)
        let taken = ingest.handler.handleOnIOThread(frame: frame([Self.purchase, Self.usage("u-1", "1")]), on: connection) {
            finished.signal()
        }
        #expect(taken)
        #expect(finished.wait(timeout: .now() + 10) == .success)
        let answer = try JSONParser.parse(try #require(connection.take().first))
        #expect(answer["results"]?.arrayValue?.map { $0["status"]?.stringValue } == ["accepted", "accepted"])
        // Refusals are logged, which the I/O thread leaves to a worker: nothing is taken or answered.
        let ping = #"{"type":"Ping","value":{"partitionId":"0","reason":"test"}}"#
        for events in [[Self.usage("u-2", "1"), #"{"type":"UsageReported","value":{}}"#], [ping]] {
            #expect(!ingest.handler.handleOnIOThread(frame: frame(events), on: connection) { finished.signal() })
        }
        // Not an append read from its bytes either.
        #expect(!ingest.handler.handleOnIOThread(frame: Array(#"{"op":"status"}"#.utf8), on: connection) { finished.signal() })
        #expect(connection.take().isEmpty)
    }

    @Test("a read answers the durable records of a partition with the log's identity")
    func read() throws {
        let ingest = try IngestUnderTest(partitions: 1)
        _ = try ingest.append([Self.purchase, Self.usage("u-1", "1"), Self.usage("u-2", "2")])
        let connection = MemoryConnection(listener: IngestHandler.clientListener)
        let answer = try #require(
            connection.call(Request(op: "read", fields: JSONObject(["partition": 0, "from": 0])), to: ingest.handler))
        let records = try #require(answer["records"]?.arrayValue)
        #expect(records.compactMap { $0["sequence"]?.intValue } == [0, 1, 2])
        #expect(records.last?["event"]?["id"] == "u-2")
        #expect(answer["log"]?.stringValue == ingest.log.manifest.identity)
    }

    @Test("the client socket refuses internal messages and admin operations; the admin socket takes them")
    func listeners() throws {
        let ingest = try IngestUnderTest()
        let ping = #"{"type":"Ping","value":{"partitionId":"0","reason":"test"}}"#
        let onClient = try #require(try ingest.append([ping])["results"]?.arrayValue)
        #expect(onClient.first?["status"] == "rejected" && onClient.first?["error"]?["code"] == "forbidden")
        // Among others: only the internal message and the unreadable one are refused, each in its place.
        let mixed = try #require(
            try ingest.append([Self.purchase, ping, #"{"type":"Bogus"}"#, Self.usage("u-m", "2")])["results"]?.arrayValue)
        #expect(mixed.map { $0["status"]?.stringValue } == ["accepted", "rejected", "rejected", "accepted"])
        #expect(mixed[1]["error"]?["code"] == "forbidden" && mixed[2]["error"]?["code"] == "invalid_event")
        let onAdmin = try #require(try ingest.append([ping], on: IngestHandler.adminListener)["results"]?.arrayValue)
        #expect(onAdmin.first?["status"] == "accepted")
        let client = MemoryConnection(listener: IngestHandler.clientListener)
        let advance = Request(op: "advance-clock", fields: JSONObject(["to": "2024-03-02T00:00:00Z"]))
        #expect(client.call(advance, to: ingest.handler)?["error"]?["code"] == "forbidden")
        let admin = MemoryConnection(listener: IngestHandler.adminListener)
        #expect(admin.call(advance, to: ingest.handler)?["ok"] == true)
    }

    @Test("an undecodable frame and an unknown operation get their errors, and the next request is served")
    func badRequests() throws {
        let ingest = try IngestUnderTest()
        let connection = MemoryConnection(listener: IngestHandler.clientListener)
        #expect(connection.request(Array(#"{"op":"append","events":[{"#.utf8), to: ingest.handler))
        #expect(connection.request(Array(#"{"op":"shred","id":"x"}"#.utf8), to: ingest.handler))
        #expect(connection.request(Array(#"[1,2,3]"#.utf8), to: ingest.handler))
        #expect(connection.request(Request(op: "status").bytes, to: ingest.handler))
        let answers = try connection.take().map { try JSONParser.parse($0) }
        #expect(answers.map { $0["error"]?["code"]?.stringValue } == ["bad_json", "unknown_op", "bad_json", nil])
        #expect(answers[1]["id"] == "x")
        #expect(answers[3]["ok"] == true)
    }

    @Test("a follow stream waits while its reader takes nothing, goes on when it reads, and ends when it leaves")
    func followBackpressure() throws {
        let ingest = try IngestUnderTest(partitions: 1)
        _ = try ingest.append([Self.purchase])
        let follower = MemoryConnection(listener: IngestHandler.clientListener)
        follower.holdOutput(true)
        // A stream never calls done: the request only starts it.
        #expect(!follower.request(Array(#"{"op":"follow","partition":0,"from":0}"#.utf8), to: ingest.handler, timeout: 0.2))
        #expect(follower.isStreaming)
        #expect(follower.waitForFrames(1).count == 1)
        _ = try ingest.append([Self.usage("u-1", "1")])
        Thread.sleep(forTimeInterval: 1.5)
        #expect(follower.take().count == 1, "the stream sent on while its reader took nothing")
        follower.holdOutput(false)
        let more = follower.waitForFrames(2)
        #expect(more.count == 2)
        let records = try JSONParser.parse(try #require(more.last))["records"]?.arrayValue ?? []
        #expect(records.compactMap { $0["event"]?["id"]?.stringValue } == ["u-1"])
        follower.close()
        #expect(follower.isClosed)
    }
}

/// The log, with the next commits failing as listed (nothing written), for the committer's
/// refusal and retry paths.
final class FailingStore: RecordStore, @unchecked Sendable {
    let log: EventLog
    private let failures: Mutex<[RecordStoreFailure]>

    init(log: EventLog, failures: [RecordStoreFailure]) {
        self.log = log
        self.failures = Mutex(failures)
    }

    var storedPartitions: [any RecordPartition] { log.storedPartitions }
    var identity: String { log.identity }
    var clock: String { log.clock }
    var created: String { log.created }
    var lossesAccepted: Int { log.lossesAccepted }
    var location: String { log.location }
    var notices: [String] { log.notices }
    var storageBytes: Int { log.storageBytes }

    func commitRecords(_ records: [EventLog.Pending]) throws(RecordStoreFailure) {
        if let failure = failures.withLock({ $0.isEmpty ? nil : $0.removeFirst() }) { throw failure }
        try log.commitRecords(records)
    }

    func exclusive<T>(_ body: () -> T) -> T { log.exclusive(body) }
    func observeOthers(_ visit: @escaping @Sendable (Int, UInt64, Timestamp, RecordMeta) -> Void) { log.observeOthers(visit) }
    func checkpoint() throws(EventLogError) { try log.checkpoint() }
    func shutDown() { log.shutDown() }
}
