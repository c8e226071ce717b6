import Billing
import BillingTestSupport
import QueryModel
import Testing
import Wire

@Suite("Closed-hour usage records")
struct UsageRecordTests {
    /// A record's fields built as a JSON tree the plain way (as the journal built them before it
    /// wrote bytes): the oracle for the bytes.
    static func tree(_ record: UsageRecord) -> JSONObject {
        var members: [JSONObject.Member] = [.init("subscription", .string(record.subscription))]
        members += record.resource.members
        members += [
            .init("planId", .string(record.planId)), .init("meterName", .string(record.meterName)),
            .init("dimension", .string(record.dimension)), .init("hour", .string(record.hour.iso8601)),
            .init("quantity", record.quantity.json), .init("billed", record.billed.json),
        ]
        if record.netted > .zero { members.append(.init("netted", record.netted.json)) }
        if record.voided > .zero { members.append(.init("voided", record.voided.json)) }
        if record.reversed > .zero { members.append(.init("reversed", record.reversed.json)) }
        let saturated = [("quantity", record.quantity), ("billed", record.billed), ("voided", record.voided)]
            .filter { $0.1 == .largest }.map { JSONValue.string($0.0) }
        if !saturated.isEmpty { members.append(.init("saturated", .array(saturated))) }
        return JSONObject(members)
    }

    /// A record of names and figures drawn from `names` and `figures`, its resource named by an
    /// id, a URI or both.
    static func randomRecord(
        _ random: inout SplitMix64, names: [String], figures: [Quantity], partition: Int, ordinal: UInt64, hour: Timestamp
    ) -> UsageRecord {
        func name() -> String { names[Int(random.next() % UInt64(names.count))] }
        func figure() -> Quantity { figures[Int(random.next() % UInt64(figures.count))] }
        let resource: ResourceName
        switch random.next() % 3 {
        case 0: resource = ResourceName(resourceId: name(), resourceUri: nil)
        case 1: resource = ResourceName(resourceId: nil, resourceUri: name())
        default: resource = ResourceName(resourceId: name(), resourceUri: name())
        }
        var record = UsageRecord(
            partition: partition, ordinal: ordinal, subscription: name(), resource: resource, planId: name(), meterName: name(),
            dimension: name(), hour: hour, quantity: figure(), billed: figure())
        record.netted = figure()
        record.voided = figure()
        record.reversed = figure()
        return record
    }

    @Test("a record's journal fields written straight into bytes are the JSON tree's, for random records, names and figures")
    func appendedFieldsAreTheTree() {
        var random = SplitMix64(seed: 9)
        let names = ["s", "sub-\u{E9}t\u{E9}", "quote \" and \\ back", "tab\tnew\nline", "\u{1}ctl", "ümlaut-é-日本", ""]
        let figures: [Quantity] = [.zero, Quantity(units: 1), Quantity(1), Quantity(units: 1_500_000_000_000_000_000), .largest]
        for _ in 0..<2_000 {
            let ordinal = random.next() % 1_000
            let hour = Timestamp(seconds: Int64(random.next() % 2_000_000_000))
            let record = Self.randomRecord(&random, names: names, figures: figures, partition: 1, ordinal: ordinal, hour: hour)
            var bytes: [UInt8] = [0x7B]
            record.appendFields(to: &bytes)
            bytes.append(0x7D)
            var expected = JSONWriter.bytes(.object(Self.tree(record)))
            // The tree's object starts with its first member; the bytes with a comma before it.
            expected.insert(0x2C, at: 1)
            #expect(bytes == expected, "\(String(decoding: expected, as: UTF8.self))")
            #expect(record.fields == Self.tree(record))
        }
    }

    @Test("a record's compact journal line reads back as the full form's line, member for member, for random records")
    func compactLinesExpandToTheFullForm() throws {
        var random = SplitMix64(seed: 21)
        let names = ["s", "q-12345", "quote \" and \\ back", "tab\tnew\nline", "ümlaut-é-日本", ""]
        let figures: [Quantity] = [.zero, Quantity(units: 1), Quantity(1), Quantity(units: 7_250_000_000_000_000_000), .largest]
        var shorter = 0
        for _ in 0..<2_000 {
            // Hours before and after 1970, and (never from a fold, read all the same) a fraction of a second.
            var microseconds = (Int64(random.next() % 4_000_000_000) - 1_000_000_000) * 1_000_000
            if random.next() % 10 == 0 { microseconds += Int64(random.next() % 1_000_000) }
            let ordinal = random.next() % 1_000_000
            let record = Self.randomRecord(
                &random, names: names, figures: figures, partition: 3, ordinal: ordinal, hour: Timestamp(microseconds: microseconds))
            var full = Array(#"{"id":\#(ordinal),"partition":3,"ordinal":\#(ordinal),"closed":1709269200"#.utf8)
            record.appendFields(to: &full)
            full.append(0x7D)
            var compact = Array(#"{"id":\#(ordinal),"closed":1709269200"#.utf8)
            record.appendCompactFields(to: &compact)
            compact.append(0x7D)
            let line = try #require(JSONParser.parse(compact).objectValue)
            let expected = try #require(JSONParser.parse(full).objectValue)
            #expect(UsageRecord.expandingCompact(line, partition: 3) == expected, "\(String(decoding: compact, as: UTF8.self))")
            #expect(UsageRecord.expandingCompact(expected, partition: 3) == nil, "a full line is left as it is")
            if compact.count < full.count { shorter += 1 }
        }
        #expect(shorter == 2_000)
        // The query benchmark's lines: 232 bytes in the full form.
        let record = UsageRecord(
            partition: 2, ordinal: 4_321_987, subscription: "q-12345", resource: ResourceName(resourceId: "q-12345", resourceUri: nil),
            planId: "bench-5", meterName: "email", dimension: "emails", hour: Timestamp(iso8601: "2024-03-01T05:00:00Z")!,
            quantity: Quantity(units: 7_250_000_000_000_000_000), billed: .zero)
        var compact = Array(#"{"id":4321987,"closed":1709269200"#.utf8)
        record.appendCompactFields(to: &compact)
        #expect(
            String(decoding: compact, as: UTF8.self)
                == #"{"id":4321987,"closed":1709269200,"r":"q-12345","p":"bench-5","m":"email","d":"emails","h":1709269200,"q":7.25,"b":0"#)
    }

    @Test("each closed hour gives one record per meter and dimension with all usage and the overage among it")
    func recordsPerHour() {
        var fold = RunRateTests.bought()
        fold.apply(Messages.usage("sub-1", "email", "600"), at: "2024-02-10T10:05:00Z")
        fold.apply(Messages.usage("sub-1", "email", "500"), at: "2024-02-10T10:50:00Z")
        fold.apply(Messages.usage("sub-1", "sms", "2"), at: "2024-02-10T10:59:59Z")
        #expect(fold.usage.isEmpty)
        fold.apply(Messages.usage("sub-1", "email", "1"), at: "2024-02-10T11:00:00Z")
        #expect(fold.usageSummary == ["email/email-dim@2024-02-10T10 1100 100", "sms/sms-dim@2024-02-10T10 2 2"])
        fold.ping(at: "2024-02-10T13:00:00Z")
        #expect(fold.usageSummary.last == "email/email-dim@2024-02-10T11 1 1")
        #expect(fold.usage.map(\.ordinal) == [0, 1, 2])
    }

    @Test("a waterfall meter's usage splits over its tiers, the free band unbilled on the first tier's dimension")
    func waterfallSplit() {
        var fold = RunRateTests.bought()
        fold.apply(Messages.usage("sub-1", "calls", "150"), at: "2024-02-10T10:00:00Z")
        fold.apply(Messages.usage("sub-1", "calls", "900"), at: "2024-02-10T10:10:00Z")
        fold.ping(at: "2024-02-10T11:00:00Z")
        #expect(fold.usageSummary == ["calls/calls-a@2024-02-10T10 1000 900", "calls/calls-b@2024-02-10T10 50 50"])
    }

    @Test("included and infinite usage is recorded with nothing billed")
    func includedUsage() {
        var fold = RunRateTests.bought()
        fold.apply(Messages.usage("sub-1", "email", "10"), at: "2024-02-10T10:00:00Z")
        fold.apply(Messages.usage("sub-1", "storage", "1e9"), at: "2024-02-10T10:00:00Z")
        fold.ping(at: "2024-02-10T11:00:00Z")
        #expect(fold.usageSummary == ["email/email-dim@2024-02-10T10 10 0", "storage/storage-dim@2024-02-10T10 1000000000 0"])
    }

    @Test("a view restored from a snapshot at any record produces the same records with the same ordinals, and the aggregator's state")
    func snapshotAnywhere() throws {
        var full = RunRateTests.bought()
        var times: [String] = []
        for hour in 10..<16 {
            for minute in stride(from: 0, to: 60, by: 20) { times.append("2024-02-10T\(hour):\(minute < 10 ? "0" : "")\(minute):00Z") }
        }
        for (index, time) in times.enumerated() {
            full.apply(Messages.usage("sub-1", index % 2 == 0 ? "email" : "calls", "\(97 + index).25"), at: time)
        }
        full.ping(at: "2024-02-11T00:00:00Z")
        // Recording effects changes nothing in the fold: the aggregator's state is the same.
        var plain = PartitionState(partition: 0)
        for record in full.records { plain.apply(record) }
        #expect(plain == full.view.state)
        for cut in stride(from: 1, to: full.records.count, by: 3) {
            var partial = PartitionView(partition: 0)
            var output = PartitionView.Output()
            for record in full.records[..<cut] { partial.apply(record, into: &output) }
            var restored = try PartitionView(snapshot: partial.snapshot())
            #expect(JSONWriter.string(restored.snapshot()) == JSONWriter.string(partial.snapshot()))
            for record in full.records[cut...] { restored.apply(record, into: &output) }
            #expect(output.usage == full.usage, "cut at \(cut)")
            #expect(JSONWriter.string(restored.snapshot()) == JSONWriter.string(full.view.snapshot()))
        }
    }

    @Test("usage per property value adds up to the meter's usage; beyond the group limit it shows as unattributed, never lost")
    func breakdown() throws {
        var fold = RunRateTests.bought()
        func usage(_ quantity: String, _ properties: JSONValue?) -> JSONValue {
            var usage = Messages.usage("sub-1", "email", quantity)
            if let properties, case .object(var envelope) = usage, case .object(var value)? = envelope["value"] {
                value["properties"] = properties
                envelope["value"] = .object(value)
                usage = .object(envelope)
            }
            return usage
        }
        fold.apply(usage("2", ["campaign": "spring", "user": "u1"]), at: "2024-02-10T10:00:00Z")
        fold.apply(usage("3.5", ["campaign": "spring"]), at: "2024-02-10T10:00:00Z")
        fold.apply(usage("4", ["campaign": "summer"]), at: "2024-02-10T10:00:00Z")
        fold.apply(usage("10", nil), at: "2024-02-10T10:00:00Z")
        let name = ResourceName(resourceId: "sub-1")
        let json = try #require(fold.view.breakdownJSON(name, meterName: "email", property: "campaign"))
        #expect(
            json["groups"]?.arrayValue?.map { "\($0["value"]?.stringValue ?? "") \(number($0["quantity"]) ?? .zero)" } == [
                "spring 5.5", "summer 4",
            ])
        #expect(number(json["total"]) == quantity("9.5"))
        #expect(number(json["unattributed"]) == Quantity(10))
        #expect(json["truncated"] == false)
        for index in 0..<PartitionView.maximumBreakdownGroups {
            fold.apply(usage("1", ["user": .string("user-\(index)")]), at: "2024-02-10T10:00:00Z")
        }
        let users = try #require(fold.view.breakdownJSON(name, meterName: "email", property: "user"))
        #expect(users["truncated"] == true)
        let groups = try #require(users["groups"]?.arrayValue)
        #expect(groups.count == PartitionView.maximumBreakdownGroups - 2)
        // Every unit of usage is either in a group or unattributed.
        #expect(
            (number(users["total"]) ?? .zero) + (number(users["unattributed"]) ?? .zero)
                == number(fold.meter("sub-1", "email")?["consumed"]))
        // A snapshot keeps the groups.
        let restored = try PartitionView(snapshot: fold.view.snapshot())
        #expect(restored.breakdownJSON(name, meterName: "email", property: "user") == users)
    }
}
