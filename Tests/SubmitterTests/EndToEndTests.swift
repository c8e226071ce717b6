import Foundation
import StackTestSupport
import Testing
import Transport
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// The whole path with the real executables: ingest (manual clock) → aggregator → submitter →
/// marketplace emulator (following ingest's clock) → outcomes back into the log.
@Suite("The stack end to end: exactly the overage, exactly once", .serialized)
struct EndToEndTests {
    static func purchase(_ name: String, uri: Bool = false, start: String, plan: String) throws -> JSONValue {
        let resource =
            uri
            ? #""resourceUri":"/subscriptions/s/resourceGroups/g/providers/Microsoft.Solutions/applications/\#(name)""#
            : #""resourceId":"\#(name)""#
        return try JSONParser.parse(
            #"{"type":"SubscriptionPurchased","value":{"subscription":{\#(resource),"subscriptionStart":"\#(start)","renewalInterval":"Monthly","plan":\#(plan)}}}"#
        )
    }

    static func use(_ name: String, uri: Bool = false, _ meter: String, _ quantity: String) throws -> JSONValue {
        let resource =
            uri
            ? #""resourceUri":"/subscriptions/s/resourceGroups/g/providers/Microsoft.Solutions/applications/\#(name)""#
            : #""resourceId":"\#(name)""#
        return try JSONParser.parse(
            #"{"type":"UsageReported","value":{\#(resource),"timestamp":"2024-02-28T22:00:00Z","meterName":"\#(meter)","quantity":\#(quantity)}}"#
        )
    }

    static let mailPlan = #"{"planId":"mail","billingDimensions":{"email":{"type":"simple","dimension":"emails","included":1000}}}"#
    static let egressPlan =
        #"{"planId":"egress","billingDimensions":{"gb":{"type":"waterfall","tiers":[{"dimension":"egress_t1","threshold":100},{"dimension":"egress_t2","threshold":1000},{"dimension":"egress_t3","threshold":5000}]}}}"#
    static let jobsPlan =
        #"{"planId":"jobs","billingDimensions":{"jobs":{"type":"simple","dimension":"jobs"},"cpu":{"type":"simple","dimension":"cpu","included":"Infinite"}}}"#

    /// Purchases on three plans (simple with a renewal inside the window, waterfall, a managed
    /// app named by URI), usage across five hours, a deletion.
    static func scenario(_ stack: Stack) throws {
        try stack.advance(to: "2024-02-28T22:00:00Z")
        try stack.send([
            try purchase("e2e-mail", start: "2024-01-29T08:00:00Z", plan: mailPlan),
            try purchase("e2e-egress", start: "2024-02-28T21:00:00Z", plan: egressPlan),
            try purchase("e2e-jobs", uri: true, start: "2024-02-01T00:00:00Z", plan: jobsPlan),
        ])
        try stack.advance(to: "2024-02-28T22:10:00Z")
        try stack.send([try use("e2e-mail", "email", "900"), try use("e2e-egress", "gb", "50")])
        try stack.advance(to: "2024-02-28T22:40:00Z")
        try stack.send([try use("e2e-mail", "email", "250"), try use("e2e-egress", "gb", "1100")])
        try stack.advance(to: "2024-02-28T23:05:00Z")
        try stack.send((0..<10).map { _ in try use("e2e-mail", "email", "0.1") })
        try stack.send([
            try use("e2e-egress", "gb", "6000"), try use("e2e-jobs", uri: true, "jobs", "3"), try use("e2e-jobs", uri: true, "cpu", "99"),
        ])
        try stack.advance(to: "2024-02-29T00:15:00Z")
        try stack.send([try use("e2e-mail", "email", "1200")])
        try stack.advance(to: "2024-02-29T01:10:00Z")
        try stack.send([try use("e2e-mail", "email", "5"), try use("e2e-egress", "gb", "10")])
        try stack.advance(to: "2024-02-29T01:30:00Z")
        try stack.send([try JSONParser.parse(#"{"type":"SubscriptionDeleted","value":{"resourceId":"e2e-egress"}}"#)])
        try stack.advance(to: "2024-02-29T02:00:01Z")
    }

    /// What the rules of DESIGN.md §4 give for the scenario, worked out by hand.
    static let expected = [
        "/subscriptions/s/resourceGroups/g/providers/Microsoft.Solutions/applications/e2e-jobs jobs 2024-02-28T23:00:00Z 3",
        "e2e-egress egress_t1 2024-02-28T22:00:00Z 1000",
        "e2e-egress egress_t2 2024-02-28T22:00:00Z 50",
        "e2e-egress egress_t2 2024-02-28T23:00:00Z 4950",
        "e2e-egress egress_t3 2024-02-28T23:00:00Z 1050",
        "e2e-egress egress_t3 2024-02-29T01:00:00Z 10",
        "e2e-mail emails 2024-02-28T22:00:00Z 150",
        "e2e-mail emails 2024-02-28T23:00:00Z 1",
        "e2e-mail emails 2024-02-29T00:00:00Z 200",
        "e2e-mail emails 2024-02-29T01:00:00Z 5",
    ].sorted()

    @Test("the marketplace receives exactly the overage of the rules, per resource, dimension and hour, and nothing twice")
    func faultFree() throws {
        let stack = try Stack()
        try stack.startSubmitter()
        try Self.scenario(stack)
        let ledger = try stack.waitUntilSettled(count: Self.expected.count)
        #expect(ledger == Self.expected)
        let status = try stack.aggregator.client().call("status")["partitions"]?.arrayValue ?? []
        #expect(status.compactMap { $0["accepted"]?.intValue }.reduce(0, +) == Self.expected.count)
        #expect(status.compactMap { $0["conflicts"]?.intValue }.reduce(0, +) == 0)
        #expect(status.compactMap { $0["rejected"]?.intValue }.reduce(0, +) == 0)
        // The submitter leaves its counters for operators after each pass.
        let data = try #require(FileManager.default.contents(atPath: stack.home.path + "/run/submitter.status.json"))
        let counters = try JSONParser.parse(Array(data))
        #expect((counters["outcomes"]?["Accepted"]?.intValue ?? 0) >= Self.expected.count)
        #expect((counters["passes"]?.intValue ?? 0) > 0)
    }

    @Test("with 30% failed calls, dropped connections and the submitter killed at random, the ledger is identical")
    func withFaultsAndKills() throws {
        let stack = try Stack()
        let (status, _) = try TestHTTP.call(
            "POST", stack.emulator.baseURL + "/emulator/faults",
            body: ["failRate": .number("0.3"), "status": 503, "dropRate": .number("0.1"), "seed": 7])
        #expect(status == 200)
        try stack.startSubmitter()
        try Self.scenario(stack)
        var random = SystemRandomNumberGenerator()
        for _ in 0..<4 {
            usleep(UInt32.random(in: 50_000...400_000, using: &random))
            stack.submitter?.kill(SIGKILL)
            try stack.startSubmitter()
        }
        let ledger = try stack.waitUntilSettled(count: Self.expected.count, timeout: 120)
        #expect(ledger == Self.expected)
        let partitions = try stack.aggregator.client().call("status")["partitions"]?.arrayValue ?? []
        #expect(partitions.compactMap { $0["conflicts"]?.intValue }.reduce(0, +) == 0, "a Duplicate with a different quantity")
        // The faults really happened: failed calls and connections dropped after recording.
        let (_, stats) = try TestHTTP.call("GET", stack.emulator.baseURL + "/emulator/stats")
        #expect((stats?["faults"]?["failed"]?.intValue ?? 0) > 0, "\(stats.map(JSONWriter.string) ?? "")")
        #expect(partitions.compactMap { $0["rejected"]?.intValue }.reduce(0, +) == 0)
    }
}
