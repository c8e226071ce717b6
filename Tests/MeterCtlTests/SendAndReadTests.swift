import Foundation
import StackTestSupport
import Testing
import Transport
import Wire

/// ingest (manual clock), and optionally the aggregator and the query service, on a fresh home,
/// with `meterctl` run against it.
final class CommandStack {
    let home = StackHome()
    let ingest: IngestProcess
    let aggregator: AggregatorProcess?
    let query: QueryProcess?

    /// Starts the processes; `prepare` runs first, on the empty home (to restore a backup into it).
    init(
        aggregator withAggregator: Bool = true, query withQuery: Bool = true, ingestEnvironment: [String: String] = [:],
        queryEnvironment: [String: String] = [:], prepare: (StackHome) throws -> Void = { _ in }
    ) throws {
        try prepare(home)
        ingest = try IngestProcess(home: home, environment: ingestEnvironment)
        aggregator = withAggregator ? try AggregatorProcess(home: home) : nil
        query = withQuery ? try QueryProcess(home: home, environment: queryEnvironment) : nil
    }

    /// `meterctl` with this stack's home in its environment (and no other METERING_ setting).
    func meterctl(_ arguments: [String], input: String? = nil) throws -> TestCommand.Outcome {
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("METERING_") }
        environment["METERING_HOME"] = home.path
        return try TestCommand.run(Binaries.path("meterctl"), arguments, environment: environment, input: input, timeout: 60)
    }

    /// `meterctl`, which must succeed: its output.
    @discardableResult
    func ok(_ arguments: [String], sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        let outcome = try meterctl(arguments)
        #expect(outcome.status == 0, "\(arguments): \(outcome.errors)", sourceLocation: sourceLocation)
        return outcome.output
    }

    /// Waits until the aggregator and the query service have folded everything ingest has.
    func caughtUp() throws {
        try aggregator?.waitUntilCaughtUp(with: ingest, timeout: 60)
        try query?.waitUntilCaughtUp(with: ingest, timeout: 60)
    }

    /// Every record ingest holds whose event has `type`.
    func events(_ type: String) throws -> [JSONValue] {
        try readAll(ingest.client(), partitions: 4).compactMap { $0["event"] }.filter { $0["type"]?.stringValue == type }
    }

    static let purchase = ["--plan-id", "basic", "--dimension", "email=emails:100", "--dimension", "cpu=cpu_hours:Infinite"]
}

@Suite("meterctl send and the read commands against a real stack", .serialized)
struct SendAndReadTests {
    @Test("send purchase and send usage without a time take ingest's clock (the manual one here), not the wall clock")
    func defaultTimesFromIngest() throws {
        let stack = try CommandStack(aggregator: false, query: false)
        try stack.ok(["advance-clock", "2024-03-01T10:20:00Z"])
        try stack.ok(["send", "purchase", "--resource-id", "sub-a"] + CommandStack.purchase)
        try stack.ok(["send", "usage", "--resource-id", "sub-a", "--meter", "email", "--quantity", "1", "--no-check"])
        let purchase = try #require(try stack.events("SubscriptionPurchased").first)
        #expect(purchase["value"]?["subscription"]?["subscriptionStart"] == "2024-03-01T10:20:00Z")
        let usage = try #require(try stack.events("UsageReported").first)
        #expect(usage["value"]?["timestamp"] == "2024-03-01T10:20:00Z")
    }

    @Test("usage the aggregator cannot bill is reported with its reason and exit 1; billable usage passes quietly")
    func unbillableUsage() throws {
        let stack = try CommandStack(query: false)
        try stack.ok(["advance-clock", "2024-03-01T10:00:00Z"])
        try stack.ok(["send", "purchase", "--resource-id", "sub-a"] + CommandStack.purchase)
        let good = try stack.meterctl(["send", "usage", "--resource-id", "sub-a", "--meter", "email", "--quantity", "5"])
        #expect(good.status == 0, "\(good.errors)")
        #expect(good.output.contains("event 0: accepted"))
        #expect(good.errors.isEmpty, "\(good.errors)")

        let unknown = try stack.meterctl(["send", "usage", "--resource-id", "nobody", "--meter", "email", "--quantity", "5"])
        #expect(unknown.status == 1)
        #expect(unknown.output.contains("event 0: accepted"))
        #expect(unknown.errors.contains("event 0: accepted, but it cannot be billed: no subscription nobody"), "\(unknown.errors)")
        #expect(unknown.errors.contains("meterctl unprocessable"))

        let meter = try stack.meterctl(["send", "usage", "--resource-id", "sub-a", "--meter", "sms", "--quantity", "5"])
        #expect(meter.status == 1)
        #expect(meter.errors.contains("has no meter \"sms\""), "\(meter.errors)")

        // A file mixing both: only the unbillable one is named.
        let file = stack.home.path + "/mixed.json"
        try Data(
            """
            [{"type":"UsageReported","value":{"resourceId":"sub-a","timestamp":"2024-03-01T10:00:00Z","meterName":"email","quantity":1}},
             {"type":"UsageReported","value":{"resourceId":"sub-a","timestamp":"2024-03-01T10:00:00Z","meterName":"fax","quantity":1}}]
            """.utf8
        ).write(to: URL(fileURLWithPath: file))
        let mixed = try stack.meterctl(["send", "--file", file])
        #expect(mixed.status == 1)
        #expect(!mixed.errors.contains("event 0: accepted, but"), "\(mixed.errors)")
        #expect(mixed.errors.contains("event 1: accepted, but it cannot be billed"), "\(mixed.errors)")
        #expect(mixed.errors.contains("1 of 2 events accepted into the log but kept as unprocessable"))
    }

    @Test("without an aggregator, send asks meter-query; with neither, it says it could not check")
    func unbillableWithoutAggregator() throws {
        let stack = try CommandStack(aggregator: false)
        try stack.ok(["advance-clock", "2024-03-01T10:00:00Z"])
        try stack.ok(["send", "purchase", "--resource-id", "sub-a"] + CommandStack.purchase)
        let unknown = try stack.meterctl(["send", "usage", "--resource-id", "nobody", "--meter", "email", "--quantity", "5"])
        #expect(unknown.status == 1)
        #expect(unknown.errors.contains("meter-query holds no subscription nobody"), "\(unknown.errors)")
        let meter = try stack.meterctl(["send", "usage", "--resource-id", "sub-a", "--meter", "sms", "--quantity", "5"])
        #expect(meter.status == 1)
        // The log keeps messages in their canonical form: a plan's meters in name order.
        #expect(meter.errors.contains("has no meter \"sms\"; plan basic has \"cpu\", \"email\""), "\(meter.errors)")

        stack.query?.kill(SIGTERM)
        let unchecked = try stack.meterctl(["send", "usage", "--resource-id", "nobody", "--meter", "email", "--quantity", "5"])
        #expect(unchecked.status == 0)
        #expect(unchecked.errors.contains("not checked whether the stack can bill what was accepted"), "\(unchecked.errors)")
        let quiet = try stack.meterctl(["send", "usage", "--resource-id", "nobody", "--meter", "email", "--quantity", "5", "--no-check"])
        #expect(quiet.status == 0 && quiet.errors.isEmpty, "\(quiet.errors)")
    }

    @Test("send --file - reads standard input; a missing or empty file says why")
    func files() throws {
        let stack = try CommandStack(aggregator: false, query: false)
        let message =
            #"{"type":"SubscriptionPurchased","value":{"subscription":{"resourceId":"sub-in","subscriptionStart":"2024-01-01T00:00:00Z","renewalInterval":"Monthly","plan":{"planId":"p","billingDimensions":{"m":{"type":"simple","dimension":"d"}}}}}}"#
        let piped = try stack.meterctl(["send", "--file", "-", "--no-check"], input: "\u{FEFF}" + message)
        #expect(piped.status == 0, "\(piped.errors)")
        #expect(piped.output.contains("event 0: accepted"))
        #expect(try stack.events("SubscriptionPurchased").count == 1)

        let missing = try stack.meterctl(["send", "--file", stack.home.path + "/nope.json"])
        #expect(missing.status == 1)
        #expect(missing.errors.contains("cannot read \(stack.home.path)/nope.json: No such file or directory"), "\(missing.errors)")
        let directory = try stack.meterctl(["send", "purchase", "--resource-id", "x", "--plan-file", stack.home.path])
        #expect(directory.status == 1)
        #expect(directory.errors.contains("cannot read \(stack.home.path)"), "\(directory.errors)")
        let empty = try stack.meterctl(["send", "--file", "-"], input: "")
        #expect(empty.status == 1)
        #expect(empty.errors.contains("standard input is empty"), "\(empty.errors)")
    }

    /// Two subscriptions with closed hours of usage, an outcome of the marketplace for one of
    /// them, and property-less usage: what the read commands show.
    static func history(_ stack: CommandStack) throws {
        try stack.ok(["advance-clock", "2024-03-01T09:00:00Z"])
        try stack.ok(["send", "purchase", "--resource-id", "sub-a"] + CommandStack.purchase)
        try stack.ok(["send", "purchase", "--resource-id", "sub-b"] + CommandStack.purchase)
        try stack.ok(["send", "usage", "--resource-id", "sub-a", "--meter", "email", "--quantity", "150", "--property", "campaign=spring"])
        try stack.ok(["send", "usage", "--resource-id", "sub-a", "--meter", "email", "--quantity", "20"])
        try stack.ok(["send", "usage", "--resource-id", "sub-b", "--meter", "email", "--quantity", "7"])
        try stack.ok(["advance-clock", "2024-03-01T10:00:01Z"])
        let outcome =
            #"{"type":"UsageSubmittedToAPI","value":{"result":{"resourceId":"sub-a","planId":"basic","dimension":"emails","effectiveStartTime":"2024-03-01T09:00:00Z","quantity":70,"status":"Accepted","messageTime":"2024-03-01T10:00:02Z"}}}"#
        _ = try stack.ingest.admin().call(appendRequest([try JSONParser.parse(outcome)]))
        try stack.caughtUp()
    }

    @Test("events show each marketplace outcome's dimension, hour, quantity and status")
    func eventsShowOutcomes() throws {
        let stack = try CommandStack()
        try Self.history(stack)
        let events = try stack.ok(["events", "--resource-id", "sub-a"])
        #expect(events.contains("UsageSubmittedToAPI"))
        #expect(events.contains("emails 2024-03-01T09:00:00Z 70 Accepted"), "\(events)")
        #expect(events.contains("email 150 campaign=spring"))
    }

    @Test("paging footers offer a next page only when there is one; usage and submissions filter by subscription")
    func pagingAndFilters() throws {
        let stack = try CommandStack()
        try Self.history(stack)
        let all = try stack.ok(["usage"])
        #expect(all.contains("2 records; the last page (2 recorded in all)"), "\(all)")
        #expect(!all.contains("next page"))
        let first = try stack.ok(["usage", "--batch-size", "1"])
        #expect(first.contains("1 records; next page: --start-id 1 (2 recorded in all)"), "\(first)")
        let second = try stack.ok(["usage", "--batch-size", "1", "--start-id", "1"])
        #expect(second.contains("the last page"), "\(second)")

        let onlyB = try stack.ok(["usage", "--resource-id", "sub-b"])
        #expect(onlyB.contains("sub-b") && !onlyB.contains("sub-a"), "\(onlyB)")
        #expect(onlyB.contains("1 records; the last page"))
        let submissionsA = try stack.ok(["submissions", "--resource-id", "sub-a"])
        #expect(submissionsA.contains("Accepted") && submissionsA.contains("1 outcomes; the last page"), "\(submissionsA)")
        let submissionsB = try stack.ok(["submissions", "--resource-id", "sub-b"])
        #expect(submissionsB.contains("0 outcomes; the last page"), "\(submissionsB)")
        let json = try JSONParser.parse(try stack.ok(["usage", "--resource-id", "sub-b", "--json"]))
        #expect(json["records"]?.arrayValue?.count == 1)
    }

    @Test("state prints a table of the meters like its siblings, --json the aggregator's own form")
    func stateTable() throws {
        let stack = try CommandStack()
        try Self.history(stack)
        let table = try stack.ok(["state", "--resource-id", "sub-a"])
        let lines = table.split(separator: "\n").map(String.init)
        #expect(lines.first?.hasPrefix("sub-a  plan basic  Monthly from 2024-03-01T09:00:00Z") == true, "\(table)")
        #expect(lines.contains { $0.hasPrefix("meter") && $0.contains("included") && $0.contains("remaining") && $0.contains("overage") })
        #expect(lines.contains { $0.hasPrefix("email") && $0.contains("170") && $0.contains("70") })
        #expect(!table.contains("{"))
        let json = try JSONParser.parse(try stack.ok(["state", "--resource-id", "sub-a", "--json"]))
        #expect(json["subscription"]?["planId"] == "basic")
    }

    @Test("query-status shows how far meter-query has folded each partition, and its journals")
    func queryStatus() throws {
        let stack = try CommandStack()
        try Self.history(stack)
        let text = try stack.ok(["query-status"])
        let lines = text.split(separator: "\n").map(String.init)
        #expect(lines.first?.hasPrefix("partition  position  ingestNext  lag") == true, "\(text)")
        #expect(lines.filter { $0.range(of: #"^[0-3]  +[0-9]"#, options: .regularExpression) != nil }.count == 4, "\(text)")
        #expect(text.contains("2 usage records, 1 marketplace outcomes"), "\(text)")
    }

    @Test("breakdown shows usage without the property as a row of the total")
    func breakdownTotal() throws {
        let stack = try CommandStack()
        try Self.history(stack)
        let text = try stack.ok(["breakdown", "--resource-id", "sub-a", "--meter", "email", "--property", "campaign"])
        let rows = text.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init) }
        #expect(rows.contains(["spring", "150"]), "\(text)")
        #expect(rows.contains(["(no", "campaign)", "20"]), "\(text)")
        #expect(rows.last == ["total", "170"], "\(text)")
    }
}
