import Foundation
import StackTestSupport
import Testing
import Transport
import Wire

/// Each marketplace outcome of DESIGN.md §4.5, produced by the real emulator and applied through
/// the log by the real aggregator.
@Suite("Marketplace outcomes through the stack", .serialized)
struct OutcomeTests {
    static let mailPlan = EndToEndTests.mailPlan

    static func quantityText(_ value: JSONValue?) -> String {
        switch value {
        case .number(let text)?, .string(let text)?: return Quantity(exactly: text)?.description ?? text
        default: return "?"
        }
    }

    @Test("an unknown resource and an invalid dimension go to the rejected ledger with their reasons, and are not retried")
    func rejections() throws {
        let stack = try Stack(emulatorArguments: ["--unknown-resources", "gone-sub", "--unknown-dimensions", "bad_dim"])
        try stack.startSubmitter()
        try stack.advance(to: "2024-03-01T10:00:00Z")
        let badPlan = #"{"planId":"odd","billingDimensions":{"x":{"type":"simple","dimension":"bad_dim"}}}"#
        try stack.send([
            try EndToEndTests.purchase("gone-sub", start: "2024-03-01T00:00:00Z", plan: Self.mailPlan),
            try EndToEndTests.purchase("baddim-sub", start: "2024-03-01T00:00:00Z", plan: badPlan),
        ])
        try stack.send([try EndToEndTests.use("gone-sub", "email", "1005"), try EndToEndTests.use("baddim-sub", "x", "2")])
        try stack.advance(to: "2024-03-01T11:00:01Z")
        try stack.wait(for: "two rejected items") { try stack.aggregatorTotal("rejected") == 2 }
        let rejected = try stack.aggregator.client().call("ledger")["rejected"]?.arrayValue ?? []
        let statuses = Set(rejected.compactMap { $0["status"]?.stringValue })
        #expect(statuses == ["ResourceNotFound", "InvalidDimension"])
        #expect(rejected.allSatisfy { ($0["reason"]?.stringValue ?? "").isEmpty == false })
        // Not retried: a second later the emulator has still seen each exactly once.
        usleep(1_000_000)
        let (_, stats) = try TestHTTP.call("GET", stack.emulator.baseURL + "/emulator/stats")
        #expect(stats?["statuses"]?["ResourceNotFound"]?.intValue == 1)
        #expect(stats?["statuses"]?["InvalidDimension"]?.intValue == 1)
        #expect(try stack.aggregatorTotal("pending") == 0)
        #expect(try stack.ledger().isEmpty)
    }

    @Test("a slot the marketplace already holds with another quantity is recorded as a conflict with both quantities")
    func conflict() throws {
        let stack = try Stack()
        // Something else reported this slot first (another deployment, a script, an older system).
        let (tokenStatus, token) = try TestHTTP.call(
            "POST", stack.emulator.baseURL + "/other/oauth2/token",
            form: "grant_type=client_credentials&client_id=other&client_secret=s&resource=20e940b3-4c77-4b0b-9a53-9e16a1b010a7")
        #expect(tokenStatus == 200)
        try stack.advance(to: "2024-03-01T10:30:00Z")
        let (status, _) = try TestHTTP.call(
            "POST", stack.emulator.baseURL + "/api/batchUsageEvent?api-version=2018-08-31",
            body: [
                "request": [
                    [
                        "resourceId": "conflicted", "planId": "mail", "dimension": "emails", "quantity": 999,
                        "effectiveStartTime": "2024-03-01T10:00:00Z",
                    ]
                ]
            ], headers: ["Authorization": "Bearer " + (token?["access_token"]?.stringValue ?? "")])
        #expect(status == 200)
        try stack.startSubmitter()
        try stack.send([try EndToEndTests.purchase("conflicted", start: "2024-03-01T00:00:00Z", plan: Self.mailPlan)])
        try stack.send([try EndToEndTests.use("conflicted", "email", "1005")])
        try stack.advance(to: "2024-03-01T11:00:01Z")
        try stack.wait(for: "a conflict") { try stack.aggregatorTotal("conflicts") == 1 }
        let conflict = try #require(try stack.aggregator.client().call("ledger")["conflicts"]?.arrayValue?.first)
        #expect(Self.quantityText(conflict["item"]?["quantity"]) == "5")
        #expect(Self.quantityText(conflict["acceptedQuantity"]) == "999")
        #expect(try stack.aggregatorTotal("pending") == 0)
        #expect(try stack.ledger() == ["conflicted emails 2024-03-01T10:00:00Z 999"])
    }

    @Test("an item that expired at the marketplace is billed again in the open hour and reported there")
    func expired() throws {
        let stack = try Stack()
        try stack.advance(to: "2024-03-01T10:00:00Z")
        try stack.send([try EndToEndTests.purchase("late-sub", start: "2024-03-01T00:00:00Z", plan: Self.mailPlan)])
        try stack.send([try EndToEndTests.use("late-sub", "email", "1007")])
        // The submitter is down for more than a day: the hour 10:00 is too old when it comes back.
        try stack.advance(to: "2024-03-02T11:30:00Z")
        try stack.startSubmitter()
        try stack.wait(for: "the expired item to be re-billed") { try stack.aggregatorTotal("expiredRebilled") == 1 }
        try stack.advance(to: "2024-03-02T12:00:01Z")
        let ledger = try stack.waitUntilSettled(count: 1)
        #expect(ledger == ["late-sub emails 2024-03-02T11:00:00Z 7"])
        let (_, stats) = try TestHTTP.call("GET", stack.emulator.baseURL + "/emulator/stats")
        #expect(stats?["statuses"]?["Expired"]?.intValue == 1)
    }

    @Test("tokens are fetched again before they expire, so no call is refused for an expired token")
    func tokenRefresh() throws {
        let stack = try Stack(emulatorArguments: ["--token-lifetime", "2"])
        try stack.startSubmitter()
        try stack.advance(to: "2024-03-01T00:30:00Z")
        try stack.send([try EndToEndTests.purchase("token-sub", start: "2024-03-01T00:00:00Z", plan: Self.mailPlan)])
        try stack.send([try EndToEndTests.use("token-sub", "email", "1000")])
        for hour in 1...5 {
            try stack.send([try EndToEndTests.use("token-sub", "email", "1")])
            let text = hour < 10 ? "0\(hour)" : "\(hour)"
            try stack.advance(to: "2024-03-01T\(text):30:00Z")
            usleep(900_000)
        }
        try stack.advance(to: "2024-03-01T06:00:01Z")
        let ledger = try stack.waitUntilSettled(count: 5)
        #expect(ledger.count == 5)
        let (_, stats) = try TestHTTP.call("GET", stack.emulator.baseURL + "/emulator/stats")
        #expect((stats?["calls"]?["token"]?.intValue ?? 0) >= 2, "\(stats.map(JSONWriter.string) ?? "")")
        #expect(stats?["unauthorized"]?.intValue == 0)
    }
}
