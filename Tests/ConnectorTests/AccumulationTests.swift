import Testing
import Wire

@testable import Connector

@Suite("Connector hourly accumulation and emission")
struct AccumulationTests {
    static func time(_ text: String) -> Timestamp { Timestamp(iso8601: text)! }

    static let source = try! ConnectorConfig.parse(
        #"""
        {"graceSeconds":60,"sources":[{"name":"gw","file":"/var/log/gw.log","format":"ndjson","meters":[
          {"name":"calls","meterName":"api_calls","filter":[{"field":"status","prefix":"2"}],"subscription":{"field":"sub"},
           "timestamp":"time","quantity":{"count":true,"scale":"0.001"}},
          {"name":"egress","subscription":{"field":"sub"},"timestamp":"time","quantity":{"sum":"bytes"}}]}]}
        """#
    ).sources[0]

    @Test("An hour closes once the clock passes its end plus the grace period")
    func boundary() {
        #expect(HourlyAccumulator.boundary(now: Self.time("2024-05-01T11:00:59Z"), graceSeconds: 60) == Self.time("2024-05-01T10:00:00Z"))
        #expect(HourlyAccumulator.boundary(now: Self.time("2024-05-01T11:01:00Z"), graceSeconds: 60) == Self.time("2024-05-01T11:00:00Z"))
        #expect(HourlyAccumulator.boundary(now: Self.time("2024-05-01T11:00:00Z"), graceSeconds: 0) == Self.time("2024-05-01T11:00:00Z"))
    }

    @Test("Records are summed per meter, subscription and hour; closing takes the past hours oldest first")
    func closing() {
        var hours = HourlyAccumulator()
        #expect(hours.add(meter: "m", subscription: "b", time: Self.time("2024-05-01T10:59:59Z"), amount: Quantity(2)) == .onTime)
        #expect(hours.add(meter: "m", subscription: "a", time: Self.time("2024-05-01T10:00:00Z"), amount: Quantity(1)) == .onTime)
        #expect(hours.add(meter: "m", subscription: "a", time: Self.time("2024-05-01T10:30:00Z"), amount: Quantity(1)) == .onTime)
        #expect(hours.add(meter: "m", subscription: "a", time: Self.time("2024-05-01T11:00:00Z"), amount: Quantity(5)) == .onTime)
        #expect(hours.add(meter: "m", subscription: "a", time: Self.time("2024-05-01T09:00:00Z"), amount: Quantity(7)) == .onTime)
        #expect(hours.openRecords == 5)
        #expect(hours.oldestOpenHour == Self.time("2024-05-01T09:00:00Z"))
        let closed = hours.close(before: Self.time("2024-05-01T11:00:00Z"))
        #expect(
            closed.map { "\($0.key.hour) \($0.key.subscription) \($0.bucket.total)/\($0.bucket.records)" } == [
                "2024-05-01T09:00:00Z a 7/1", "2024-05-01T10:00:00Z a 2/2", "2024-05-01T10:00:00Z b 2/1",
            ])
        #expect(hours.emittedBefore == Self.time("2024-05-01T11:00:00Z"))
        #expect(hours.open.count == 1)
        #expect(hours.newestTime == Self.time("2024-05-01T11:00:00Z"))
    }

    @Test("A record for an emitted hour is late: counted into the oldest open hour, never into the emitted one")
    func lateRecords() {
        var hours = HourlyAccumulator()
        _ = hours.add(meter: "m", subscription: "a", time: Self.time("2024-05-01T10:10:00Z"), amount: Quantity(1))
        _ = hours.close(before: Self.time("2024-05-01T11:00:00Z"))
        #expect(
            hours.add(meter: "m", subscription: "a", time: Self.time("2024-05-01T10:20:00Z"), amount: Quantity(3))
                == .late(into: Self.time("2024-05-01T11:00:00Z")))
        _ = hours.add(meter: "m", subscription: "a", time: Self.time("2024-05-01T11:20:00Z"), amount: Quantity(4))
        let bucket = hours.open[HourlyAccumulator.Key(hour: Self.time("2024-05-01T11:00:00Z"), meter: "m", subscription: "a")]
        #expect(bucket == HourlyAccumulator.Bucket(total: Quantity(7), records: 2, late: 1))
        // A clock that steps back closes nothing and moves nothing back.
        #expect(hours.close(before: Self.time("2024-05-01T10:00:00Z")).isEmpty)
        #expect(hours.emittedBefore == Self.time("2024-05-01T11:00:00Z"))
    }

    @Test("A total that would leave Quantity's range is refused, and the bucket keeps what it had")
    func overflow() {
        var hours = HourlyAccumulator()
        let big = Quantity(exactly: "170000000000000000000")!
        #expect(hours.add(meter: "m", subscription: "a", time: Self.time("2024-05-01T10:00:00Z"), amount: big) == .onTime)
        #expect(hours.add(meter: "m", subscription: "a", time: Self.time("2024-05-01T10:00:00Z"), amount: big) == .overflow)
        #expect(hours.openRecords == 1)
    }

    @Test("The idempotency key names source, meter, subscription and hour; a long subscription is replaced by its digest")
    func keys() {
        let hour = Self.time("2024-05-01T10:00:00Z")
        #expect(
            UsageEvent.idempotencyKey(source: "gw", meter: "calls", subscription: "s-1", hour: hour)
                == "conn:gw:calls:s-1:2024-05-01T10:00:00Z")
        let uri = "/subscriptions/" + String(repeating: "0123456789", count: 20)
        let key = UsageEvent.idempotencyKey(source: "gw", meter: "calls", subscription: uri, hour: hour)
        #expect(key.utf8.count <= Message.maximumIdLength)
        #expect(key.hasPrefix("conn:gw:calls:#") && key.hasSuffix(":2024-05-01T10:00:00Z"))
        #expect(key == UsageEvent.idempotencyKey(source: "gw", meter: "calls", subscription: uri, hour: hour))
        #expect(key != UsageEvent.idempotencyKey(source: "gw", meter: "calls", subscription: uri + "x", hour: hour))
    }

    @Test("The emitted event is a valid UsageReported (ingest's own validation) with the scaled quantity and its provenance")
    func event() throws {
        let rule = Self.source.meters[0]
        let key = HourlyAccumulator.Key(hour: Self.time("2024-05-01T10:00:00Z"), meter: "calls", subscription: "s-1")
        let json = try #require(
            UsageEvent.message(
                source: "gw", rule: rule, key: key, bucket: HourlyAccumulator.Bucket(total: Quantity(1234), records: 1234, late: 2)))
        let message = try Message.decode(json).get()
        #expect(message.id == "conn:gw:calls:s-1:2024-05-01T10:00:00Z")
        guard case .usageReported(let usage) = message.body else {
            Issue.record("not a UsageReported")
            return
        }
        #expect(usage.meterName == "api_calls")
        #expect(usage.quantity == Quantity(exactly: "1.234"))
        #expect(usage.resource.resourceId == "s-1")
        #expect(usage.timestamp == Self.time("2024-05-01T10:00:00Z"))
        #expect(usage.properties["records"] == "1234")
        #expect(usage.properties["lateRecords"] == "2")
        #expect(usage.properties["connector"] == "gw")
    }

    func fold(_ lines: [String], into state: inout SourceState, config: SourceConfig = source) {
        var header: CSVHeader?
        for (index, line) in lines.enumerated() {
            state.fold(line: ArraySlice(line.utf8), config: config, header: &header, at: "line \(index + 1)")
        }
    }

    @Test("Every line read is counted, skipped or malformed, once; the latest five malformed lines are kept as examples")
    func counters() {
        var state = SourceState(source: "gw", kind: .file)
        var lines = [
            #"{"status":200,"sub":"a","time":"2024-05-01T10:00:00Z","bytes":10}"#,
            #"{"status":404,"sub":"a","time":"2024-05-01T10:00:00Z","bytes":5}"#,
            "   ",
            #"{"status":200,"sub":"a","time":"2024-05-01T10:00:00Z","bytes":"x"}"#,
        ]
        lines += (0..<6).map { "not json \($0)" }
        fold(lines, into: &state)
        let counters = state.counters
        #expect(counters.read == 9)
        #expect(counters.counted == 2)
        #expect(counters.skipped == 0)
        #expect(counters.malformed == 7)
        #expect(counters.read == counters.counted + counters.skipped + counters.malformed)
        #expect(counters.meters["calls"] == MeterCounters(counted: 2, skipped: 1, malformed: 0))
        #expect(counters.meters["egress"] == MeterCounters(counted: 2, skipped: 0, malformed: 1))
        #expect(counters.examples.count == 5)
        #expect(counters.examples.first?.at == "line 6")
        #expect(counters.examples.last?.text == "not json 5")
        #expect(counters.examples.last?.reason.hasPrefix("not JSON: ") == true)
    }

    @Test("A CSV source's first line is its header; an unusable header makes every row malformed, saying why")
    func csvHeaders() throws {
        let csv = try ConnectorConfig.parse(
            #"{"sources":[{"name":"jobs","file":"/j.csv","format":"csv","meters":[{"name":"cpu","subscription":{"field":"sub"},"timestamp":"time","quantity":{"sum":"cpu"}}]}]}"#
        ).sources[0]
        var state = SourceState(source: "jobs", kind: .file)
        fold(
            ["time,sub,cpu", "2024-05-01T10:00:00Z,a,1.5", "2024-05-01T10:10:00Z,a,2.5", "2024-05-01T10:10:00Z,a"], into: &state,
            config: csv)
        #expect(state.counters.read == 3)
        #expect(state.counters.counted == 2)
        #expect(state.accumulator.open.values.first?.total == Quantity(4))
        var broken = SourceState(source: "jobs", kind: .file)
        fold(["time,sub,sub", "2024-05-01T10:00:00Z,a,1"], into: &broken, config: csv)
        #expect(broken.counters.malformed == 2)
        #expect(
            broken.counters.examples.map(\.reason) == [
                #"header line: column "sub" appears twice"#, "the header line of this file is unusable",
            ])
    }

    @Test("Closing puts one event per bucket in the outbox; zero totals make none")
    func outbox() {
        var state = SourceState(source: "gw", kind: .file)
        fold(
            [
                #"{"status":200,"sub":"a","time":"2024-05-01T10:00:00Z","bytes":0}"#,
                #"{"status":200,"sub":"a","time":"2024-05-01T10:05:00Z","bytes":0}"#,
                #"{"status":200,"sub":"b","time":"2024-05-01T11:05:00Z","bytes":3}"#,
            ], into: &state)
        #expect(state.close(before: Self.time("2024-05-01T11:00:00Z"), config: Self.source) == 1)
        #expect(state.outbox.map { $0["id"]?.stringValue ?? "" } == ["conn:gw:calls:a:2024-05-01T10:00:00Z"])
        #expect(state.outbox.first?["value"]?["quantity"] == .number("0.002"))
        #expect(state.close(before: Self.time("2024-05-01T12:00:00Z"), config: Self.source) == 2)
        #expect(state.outbox.count == 3)
    }

    @Test("Ingest's answers settle accepted and duplicate events, keep unavailable ones, and record final refusals")
    func acknowledgement() {
        var state = SourceState(source: "gw", kind: .file)
        let events: [JSONValue] = (0..<5).map { index in
            ["id": .string("e\(index)"), "value": ["quantity": .number("1.5"), "properties": ["meter": "calls"]]]
        }
        state.outbox = events
        state.acknowledge([
            ["status": "accepted"], ["status": "duplicate"],
            ["status": "rejected", "error": ["code": "unavailable", "message": "meter-ingest is shutting down; retry"]],
            ["status": "rejected", "error": ["code": "invalid_event", "message": "value.meterName: must be a string"]],
        ])
        #expect(state.outbox.map { $0["id"]?.stringValue ?? "" } == ["e2", "e4"])
        #expect(state.counters.accepted == 1)
        #expect(state.counters.duplicates == 1)
        #expect(state.counters.rejected == 1)
        #expect(state.counters.meters["calls"]?.events == 2)
        #expect(state.counters.meters["calls"]?.quantity == Quantity(3))
        #expect(state.counters.problems == ["ingest refused e3: invalid_event: value.meterName: must be a string"])
    }

    @Test("Random bytes, JSON-like and CSV-like, never crash the fold, and every line is read as exactly one of its outcomes")
    func randomInput() throws {
        let csv = try ConnectorConfig.parse(
            #"{"sources":[{"name":"jobs","file":"/j.csv","format":"csv","meters":[{"name":"cpu","subscription":{"field":"sub"},"timestamp":"time","quantity":{"sum":"cpu"}}]}]}"#
        ).sources[0]
        var generator = SplitMix64(seed: 99)
        let alphabet =
            Array(#"{}[]":,.0123456789-eE+ \"tn"subtimebytes2024-05-01T10:00:00Z\#u{00}\#u{FF}"#.utf8) + [0xC3, 0xA9, 0xFF, 0x0D]
        for config in [Self.source, csv] {
            var state = SourceState(source: config.name, kind: .file)
            var header: CSVHeader?
            var expectedRead = 0
            for _ in 0..<3000 {
                let length = Int(generator.next() % 60)
                let line = (0..<length).map { _ in alphabet[Int(generator.next() % UInt64(alphabet.count))] }
                let blank = line.allSatisfy { $0 == 0x20 || $0 == 0x09 }
                let isHeader = !blank && config.format == .csv && header == nil
                state.fold(line: ArraySlice(line), config: config, header: &header, at: "random")
                // A header line is a record only when it is unusable (then it is a malformed one).
                if !blank && (!isHeader || header == .unusable) { expectedRead += 1 }
            }
            let counters = state.counters
            #expect(counters.read == expectedRead)
            #expect(counters.read == counters.counted + counters.skipped + counters.malformed)
        }
    }
}
