import Foundation
import HTTP
import StackTestSupport
import Testing
import Transport
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// The report of a valid usage that crashed meter-query, replayed against the real executables.
@Suite("A usage at the top of the accepted range, against the real stack", .serialized)
struct HugeQuantityIntegrationTests {
    /// The query page's address, once meter-query has written it.
    static func pageAddress(_ home: StackHome) throws -> Int {
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            let text = (try? String(contentsOfFile: home.path + "/run/query-http.addr", encoding: .utf8)) ?? ""
            if let port = Int(text.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ":").last ?? ""), port > 0 {
                return port
            }
            usleep(20_000)
        }
        Issue.record("meter-query wrote no page address in 30 s")
        return 0
    }

    func call(_ client: UnixClient, _ op: String, _ fields: [String: JSONValue] = [:]) throws -> JSONObject {
        try client.call(Request(op: op, fields: JSONObject(fields.sorted { $0.key < $1.key }.map { .init($0.key, $0.value) })))
    }

    @Test(
        "usage of 3·10¹⁷ is answered by runrate, subscriptions, state, breakdown, usage, meterctl and GET /api/runrate; the processes live on and the other subscription stays exact"
    )
    func hugeUsageIsAnsweredEverywhere() throws {
        let home = StackHome()
        let ingest = try IngestProcess(home: home)
        let aggregator = try AggregatorProcess(home: home)
        let query = try QueryProcess(home: home, environment: ["METERING_QUERY_HTTP": "127.0.0.1:0"])
        let work = Workload(ingest: ingest)
        try work.advance(to: "2024-03-01T00:00:01Z")
        try work.send([
            try work.purchase("huge", start: "2024-03-01T00:00:00Z"), try work.purchase("normal", start: "2024-03-01T00:00:00Z"),
        ])
        try work.send([
            work.usage("huge", "email", "300000000000000000", properties: ["campaign": "spring"]),
            work.usage("huge", "calls", "300000000000000000"),
            work.usage("normal", "email", "150", properties: ["campaign": "spring"]),
        ])
        try aggregator.waitUntilCaughtUp(with: ingest, timeout: 60)
        try query.waitUntilCaughtUp(with: ingest, timeout: 60)

        // What crashed: the run-rate. Its projection passes the range and says so.
        let huge = try call(query.client(), "runrate", ["resourceId": "huge"])
        let email = try #require(huge["meters"]?.arrayValue?.first { $0["meterName"] == "email" })
        #expect(exact(email["consumed"]) == Quantity(exactly: "300000000000000000"))
        #expect(exact(email["projected"]) == Quantity(units: .max))
        #expect(email["saturated"] == ["projected"])
        let outcome = try TestCommand.run(
            Binaries.path("meterctl"), ["runrate", "--home", home.path, "--resource-id", "huge"], timeout: 30)
        #expect(outcome.status == 0, "\(outcome.errors)")
        #expect(outcome.output.contains("300000000000000000"))

        // The listing, the aggregator's state and the breakdown answer too.
        let listing = try call(query.client(), "subscriptions")
        #expect(listing["subscriptions"]?.arrayValue?.compactMap { $0["key"]?.stringValue } == ["huge", "normal"])
        let state = try call(aggregator.client(), "state", ["resourceId": "huge"])
        let meters = state["subscription"]?["meters"]?.arrayValue ?? []
        #expect(exact(meters.first { $0["meterName"] == "email" }?["consumed"]) == Quantity(exactly: "300000000000000000"))
        let breakdown = try call(
            query.client(), "breakdown", ["resourceId": "huge", "meterName": "email", "property": "campaign"])
        #expect(exact(breakdown["groups"]?.arrayValue?.first?["quantity"]) == Quantity(exactly: "300000000000000000"))

        // The other subscription is answered exactly: 150 in the first hour of a 31-day month
        // projects to 150 × 744.
        let normal = try call(query.client(), "runrate", ["resourceId": "normal"])
        let normalEmail = try #require(normal["meters"]?.arrayValue?.first { $0["meterName"] == "email" })
        #expect(exact(normalEmail["consumed"]) == Quantity(150))
        #expect(exact(normalEmail["overage"]) == Quantity(50))
        #expect(exact(normalEmail["projected"]) == Quantity(111_600))
        #expect(normalEmail["saturated"] == nil)

        // The hour closes: the usage records and the pending items carry the exact quantities.
        try work.advance(to: "2024-03-01T01:00:01Z")
        try aggregator.waitUntilCaughtUp(with: ingest, timeout: 60)
        try query.waitUntilCaughtUp(with: ingest, timeout: 60)
        let records = try call(query.client(), "usage", ["batchSize": 100])["records"]?.arrayValue ?? []
        let hugeEmail = records.first { $0["subscription"] == "huge" && $0["meterName"] == "email" }
        #expect(exact(hugeEmail?["quantity"]) == Quantity(exactly: "300000000000000000"))
        #expect(exact(hugeEmail?["billed"]) == Quantity(exactly: "299999999999999900"))
        let pending = try call(aggregator.client(), "pending")["items"]?.arrayValue ?? []
        #expect(pending.contains { $0["resourceId"] == "huge" && exact($0["quantity"]) == Quantity(exactly: "299999999999999900") })

        // The customer's page asks the same over HTTP.
        let port = try Self.pageAddress(home)
        let token = try TestCommand.run(
            Binaries.path("meterctl"), ["token", "--home", home.path, "--resource-id", "huge", "--ttl", "600"], timeout: 30)
        #expect(token.status == 0, "\(token.errors)")
        let answer = try TestHTTPClient(port: port).request(
            "GET", "/api/runrate", headers: ["Authorization": "Bearer \(token.output.split(separator: "\n").first ?? "")"])
        #expect(answer.status == 200, "\(answer.text)")
        #expect(answer.json?["meters"]?.arrayValue?.first { $0["meterName"] == "email" }?["saturated"] == ["projected"])

        // Still alive, and still answering the other subscription.
        #expect(query.process.isRunning && aggregator.process.isRunning)
        let later = try call(query.client(), "runrate", ["resourceId": "normal"])
        #expect(exact(later["meters"]?.arrayValue?.first { $0["meterName"] == "email" }?["consumed"]) == Quantity(150))
    }
}
