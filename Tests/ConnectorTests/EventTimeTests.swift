import Foundation
import StackTestSupport
import Testing
import Transport
import Wire

@Suite("meter-connector with event-time attribution", .serialized)
struct EventTimeTests {
    /// A grace of 30 minutes of its own: alone, it would emit hour H after billing closed it.
    static let config = #"""
        {"graceSeconds":1800,"pollMilliseconds":20,"sources":[
          {"name":"gateway","file":"$LOGS/access.log","format":"ndjson","meters":[
            {"name":"calls","meterName":"api_calls","subscription":{"field":"subscription"},"timestamp":"time","quantity":{"count":true}}]}]}
        """#

    @Test(
        "with ingest attributing by timestamp, the connector emits each hour within half of ingest's grace, so the last hour of a period is billed in that period"
    )
    func lastHourOfPeriod() throws {
        let stack = try ConnectorStack(
            config: Self.config, start: "2024-04-30T23:00:00Z",
            ingestEnvironment: ["METERING_CLOCK": "manual", "METERING_ATTRIBUTION": "event", "METERING_LATE_GRACE": "10m"])
        let aggregator = try AggregatorProcess(home: stack.home)
        let purchase = try JSONParser.parse(
            #"{"type":"SubscriptionPurchased","value":{"subscription":{"resourceId":"sub-a","subscriptionStart":"2024-04-01T00:00:00Z","renewalInterval":"Monthly","plan":{"planId":"api","billingDimensions":{"api_calls":{"type":"simple","dimension":"calls","included":2}}}}}}"#
        )
        _ = try stack.ingest.client().call(appendRequest([purchase]))
        let gateway = try LogWriter(stack.log("access.log"))
        for minute in [10, 20, 30, 40, 50] {
            try gateway.write(#"{"time":"2024-04-30T23:\#(minute):00Z","subscription":"sub-a"}"# + "\n")
        }
        try stack.startConnector()
        try stack.waitForRead("gateway", records: 5)
        // Past the renewal at midnight, within billing's grace for hour 23 (it closes at 00:10).
        try stack.advance(to: "2024-05-01T00:05:00Z")
        try stack.waitForClock("2024-05-01T00:05:00Z", sources: ["gateway"], timeout: 30)
        let status = try #require(stack.connector?.source("gateway"))
        #expect(status["graceSeconds"]?.intValue == 300)
        #expect(try stack.ledger() == ["api_calls sub-a 2024-04-30T23:00:00Z": Quantity(5)])
        try stack.advance(to: "2024-05-01T00:10:00Z")
        try aggregator.waitUntilCaughtUp(with: stack.ingest, timeout: 30)
        let pending = try aggregator.client().call("pending")["items"]?.arrayValue ?? []
        // April: 5 calls against 2 included, in April's last hour; May starts untouched.
        #expect(
            pending.map {
                "\($0["dimension"]?.stringValue ?? "") \($0["effectiveStartTime"]?.stringValue ?? "") \($0["quantity"].map(JSONWriter.string) ?? "")"
            } == [
                "calls 2024-04-30T23:00:00Z 3"
            ])
        let state = try aggregator.client().call(Request(op: "state", fields: JSONObject(["resourceId": "sub-a"])))
        #expect(state["subscription"]?["period"]?["start"] == "2024-05-01T00:00:00Z")
        #expect(state["subscription"]?["meters"]?.arrayValue?.first?["consumed"] == 0)
        #expect(
            (try aggregator.client().call("status")["partitions"]?.arrayValue ?? []).compactMap { $0["lateUsage"]?.intValue }.reduce(0, +)
                == 0)
    }
}
