import Foundation
import StackTestSupport
import Testing
import Transport
import Wire

/// The plan catalog when two ingest instances (two hosts) share one JetStream stream.
@Suite("The plan catalog on a shared JetStream stream", .serialized)
struct SharedCatalogTests {
    static let definition =
        #"{"type":"PlanDefined","value":{"plan":{"planId":"shared-gold","billingDimensions":{"email":{"type":"simple","dimension":"emails","included":250}},"prices":{"currency":"USD","perUnit":{"emails":0.01}}}}}"#
    static let purchase =
        #"{"type":"SubscriptionPurchased","value":{"subscription":{"resourceId":"shared-1","subscriptionStart":"2024-03-01T00:00:00Z","renewalInterval":"Monthly","plan":{"planId":"shared-gold"}}}}"#

    @Test("a plan defined through one ingest is bought by id through the other, which stores it expanded")
    func definedOnOneBoughtOnTheOther() throws {
        let cluster = try NATSCluster(nodes: 1)
        let environment = ["METERING_STORE": "jetstream", "METERING_NATS_URL": cluster.url(0), "METERING_NATS_REPLICAS": "1"]
        let homeA = StackHome()
        let homeB = StackHome()
        let ingestA = try IngestProcess(home: homeA, environment: environment)
        let ingestB = try IngestProcess(home: homeB, environment: environment)
        let defined = try ingestA.client().call(appendRequest([try JSONParser.parse(Self.definition)]))["results"]?.arrayValue?.first
        #expect(defined?["status"] == "accepted", "\(String(describing: defined))")

        // B learns the definition from the stream (its tail), not from its own appends.
        var listed: [JSONValue] = []
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            listed = try ingestB.client().call(Request(op: "plans"))["plans"]?.arrayValue ?? []
            if !listed.isEmpty { break }
            usleep(100_000)
        }
        #expect(listed.compactMap { $0["planId"]?.stringValue } == ["shared-gold"], "\(ingestB.log().suffix(2000))")

        let bought = try ingestB.client().call(appendRequest([try JSONParser.parse(Self.purchase)]))["results"]?.arrayValue?.first
        #expect(bought?["status"] == "accepted", "\(String(describing: bought))")
        let partition = try #require(bought?["partition"]?.intValue)
        let sequence = try #require(bought?["sequence"]?.intValue)
        let read = try ingestB.client().call(
            Request(op: "read", fields: JSONObject(["partition": .number(String(partition)), "from": .number(String(sequence)), "max": 1])))
        let plan = read["records"]?.arrayValue?.first?["event"]?["value"]?["subscription"]?["plan"]
        #expect(plan?["billingDimensions"]?["email"]?["included"] == .number("250"), "\(String(describing: plan))")
        #expect(plan?["catalogVersion"] == .number("1"))
    }
}
