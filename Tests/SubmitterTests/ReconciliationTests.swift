import Foundation
import StackTestSupport
import Testing
import Transport
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// Reconciliation with real processes: ingest, aggregator, query, the submitter (reconciling
/// every second) and the emulator following ingest's clock.
@Suite("Reconciliation with the marketplace", .serialized)
struct ReconciliationTests {
    static let plan = #"{"planId":"recon","billingDimensions":{"email":{"type":"simple","dimension":"emails","included":0}}}"#

    static func purchase(_ name: String) throws -> JSONValue {
        try JSONParser.parse(
            #"{"type":"SubscriptionPurchased","value":{"subscription":{"resourceId":"\#(name)","subscriptionStart":"2024-03-01T00:00:00Z","renewalInterval":"Monthly","plan":\#(plan)}}}"#
        )
    }

    static func reconciliation(_ home: StackHome) -> JSONValue? {
        FileManager.default.contents(atPath: home.path + "/run/submitter.status.json").flatMap { try? JSONParser.parse(Array($0)) }?[
            "reconciliation"]
    }

    static func meterctl(_ home: StackHome, _ arguments: [String], environment extra: [String: String]) throws -> (
        status: Int32, output: String, errors: String
    ) {
        var environment = ProcessInfo.processInfo.environment
        environment["METERING_HOME"] = home.path
        for (key, value) in extra { environment[key] = value }
        return try runToEnd("meterctl", arguments, environment: environment)
    }

    @Test(
        "the submitter's reconciliation agrees with the marketplace on what it accepted, then finds the differences planted in the emulator; meterctl reconcile lists them"
    )
    func findsPlantedMismatch() throws {
        let stack = try Stack()
        try stack.startQuery()
        try stack.advance(to: "2024-03-01T10:00:00Z")
        try stack.send([try Self.purchase("recon-a"), try Self.purchase("recon-b")])
        for (hour, quantity) in [("10", "4"), ("11", "2.5")] {
            try stack.advance(to: "2024-03-01T\(hour):20:00Z")
            try stack.send(
                try ["recon-a", "recon-b"].map {
                    try JSONParser.parse(
                        #"{"type":"UsageReported","value":{"resourceId":"\#($0)","timestamp":"2024-03-01T10:20:00Z","meterName":"email","quantity":\#(quantity)}}"#
                    )
                })
        }
        var environment = stack.submitterEnvironment
        environment["METERING_RECONCILE_INTERVAL"] = "1"
        environment["METERING_RECONCILE_SETTLE_HOURS"] = "6"
        environment["METERING_RECONCILE_DAYS"] = "3"
        stack.submitter = try SubmitterProcess(home: stack.home, environment: environment)
        try stack.advance(to: "2024-03-01T12:00:01Z")
        _ = try stack.waitUntilSettled(count: 4)
        // Until Mar 1 is complete (ended six hours of log time ago) only the empty days before it are compared.
        try stack.wait(for: "a reconciliation of the days before Mar 1") {
            Self.reconciliation(stack.home)?["state"] == "ok" && Self.reconciliation(stack.home)?["to"] == "2024-02-29"
        }
        #expect(Self.reconciliation(stack.home)?["from"] == "2024-02-27")
        #expect(Self.reconciliation(stack.home)?["checked"] == 0)
        try stack.advance(to: "2024-03-02T12:00:00Z")
        try stack.query?.waitUntilCaughtUp(with: stack.ingest)
        try stack.wait(for: "a reconciliation that agrees") {
            Self.reconciliation(stack.home)?["state"] == "ok" && Self.reconciliation(stack.home)?["to"] == "2024-03-01"
        }
        let agreed = try #require(Self.reconciliation(stack.home))
        #expect(agreed["checked"] == 2)
        #expect(agreed["matched"] == 2)
        #expect(agreed["mismatches"] == 0)

        // The marketplace now holds 5 for recon-a on Mar 1 (we recorded 6.5), and 3 for a resource we never reported.
        for plant: JSONValue in [
            ["resourceId": "recon-a", "dimension": "emails", "usageDate": "2024-03-01", "submittedQuantity": 5],
            ["resourceId": "stranger", "dimension": "emails", "usageDate": "2024-03-01", "submittedQuantity": 3, "planId": "recon"],
        ] {
            let (status, _) = try TestHTTP.call("POST", stack.emulator.baseURL + "/emulator/reconciliation", body: plant)
            #expect(status == 200)
        }
        try stack.wait(for: "a reconciliation that finds the planted differences") {
            Self.reconciliation(stack.home)?["state"] == "mismatches"
        }
        let found = try #require(Self.reconciliation(stack.home))
        #expect(found["mismatches"] == 2)
        let items = found["items"]?.arrayValue ?? []
        #expect(items.map { $0["kind"] } == ["quantity", "unknownToUs"])
        #expect(items.first?["resourceId"] == "recon-a")
        #expect(items.first?["ours"] == .number("6.5"))
        #expect(items.first?["submitted"] == .number("5"))
        #expect(items.last?["resourceId"] == "stranger")
        #expect(items.last?["ours"] == .null)
        let report = try #require(FileManager.default.contents(atPath: stack.home.path + "/run/reconciliation.json"))
        #expect((try JSONParser.parse(Array(report)))["mismatches"] == 2)

        // On demand, for the same day: the same two, and exit status 1.
        let marketplace = stack.emulator.submitterEnvironment
        let shown = try Self.meterctl(stack.home, ["reconcile", "--from", "2024-03-01", "--to", "2024-03-01"], environment: marketplace)
        #expect(shown.status == 1, "\(shown.errors)")
        #expect(shown.output.contains("2 differ"), "\(shown.output)")
        #expect(
            shown.output.contains("quantity: 2024-03-01 recon-a emails: we recorded 6.5 accepted; the marketplace holds 5"),
            "\(shown.output)")
        #expect(shown.output.contains("unknownToUs: 2024-03-01 stranger emails"), "\(shown.output)")
        #expect(shown.errors.contains("2 mismatches with the marketplace"))
        let json = try Self.meterctl(
            stack.home, ["reconcile", "--from", "2024-03-01", "--to", "2024-03-01", "--json"], environment: marketplace)
        #expect((try? JSONParser.parse(Array(json.output.utf8)))?["checked"] == 3)
        // A day with nothing on either side agrees.
        let quiet = try Self.meterctl(stack.home, ["reconcile", "--from", "2024-02-20", "--to", "2024-02-21"], environment: marketplace)
        #expect(quiet.status == 0, "\(quiet.errors)")
        #expect(quiet.output.contains("0 differ"))
        // Without days: the week before the last day that ended 26 hours of log time ago (Mar 2 12:00).
        let lastWeek = try Self.meterctl(stack.home, ["reconcile"], environment: marketplace)
        #expect(lastWeek.status == 0, "\(lastWeek.errors)")
        #expect(lastWeek.output.hasPrefix("reconciled 2024-02-23 to 2024-02-29"), "\(lastWeek.output)")
        let status = try Self.meterctl(stack.home, ["submitter-status"], environment: [:])
        #expect(status.output.contains("reconciliation: mismatches"), "\(status.output)")
        #expect(status.output.contains("quantity: 2024-03-01 recon-a emails: ours 6.5, marketplace submitted 5"), "\(status.output)")
    }

    @Test("the marketplace ledger's cursor, taken from one query replica, continues on another without a gap or a repeat")
    func ledgerCursorAcrossReplicas() throws {
        let stack = try Stack()
        try stack.startQuery()
        var environment = ["METERING_HOME": stack.home.path + "/b", "METERING_INGEST_SOCKET": stack.home.clientSocket]
        environment["METERING_QUERY_SNAPSHOT_RECORDS"] = "3"
        let replicaB = try ServerProcess(
            executable: "meter-query", home: stack.home, readySocket: stack.home.path + "/b/run/query.sock", environment: environment)
        try stack.advance(to: "2024-03-01T10:00:00Z")
        let names = (0..<6).map { "ledger-\($0)" }
        try stack.send(try names.map { try Self.purchase($0) })
        try stack.advance(to: "2024-03-01T10:20:00Z")
        try stack.send(
            try names.map {
                try JSONParser.parse(
                    #"{"type":"UsageReported","value":{"resourceId":"\#($0)","timestamp":"2024-03-01T10:20:00Z","meterName":"email","quantity":3}}"#
                )
            })
        stack.submitter = try SubmitterProcess(home: stack.home, environment: stack.submitterEnvironment)
        try stack.advance(to: "2024-03-01T11:00:01Z")
        _ = try stack.waitUntilSettled(count: 6)
        try stack.query?.waitUntilCaughtUp(with: stack.ingest)
        try replicaB.waitUntilFolded(socket: stack.home.path + "/b/run/query.sock", with: stack.ingest, everyPartition: true, timeout: 30)
        func page(_ socket: String, _ cursor: String) throws -> (records: [JSONValue], cursor: String) {
            let answer = try UnixClient(path: socket).call(
                Request(op: "submissions", fields: JSONObject(["cursor": .string(cursor), "batchSize": 4])))
            return (answer["records"]?.arrayValue ?? [], answer["cursor"]?.stringValue ?? "?")
        }
        let first = try page(stack.home.querySocket, "")
        #expect(first.records.count == 4)
        let second = try page(stack.home.path + "/b/run/query.sock", first.cursor)
        #expect(second.records.count == 2)
        let end = try page(stack.home.path + "/b/run/query.sock", second.cursor)
        #expect(end.records.isEmpty)
        #expect(end.cursor == second.cursor)
        let read = (first.records + second.records).compactMap { $0["resourceId"]?.stringValue }
        #expect(read.sorted() == names, "every outcome once")
        #expect(throws: UnixClient.Failure.self, "a cursor that is not one is refused") {
            try UnixClient(path: stack.home.querySocket).call(
                Request(op: "submissions", fields: JSONObject(["cursor": "x-y", "batchSize": 4])))
        }
    }
}
