import Foundation
import StackTestSupport
import Testing
import Transport
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// A workload on real processes: ingest on the manual clock, and the readers under test.
struct Workload: @unchecked Sendable {
    let ingest: IngestProcess

    /// Ingest and query on a fresh home, ingest's manual clock at 2024-03-01T00:00:00Z.
    static func started(queryEnvironment: [String: String] = [:]) throws -> (Workload, QueryProcess) {
        let home = StackHome()
        let work = Workload(ingest: try IngestProcess(home: home))
        let query = try QueryProcess(home: home, environment: queryEnvironment)
        try work.advance(to: "2024-03-01T00:00:00Z")
        return (work, query)
    }

    static let plan =
        #"{"planId":"plan-q","billingDimensions":{"email":{"type":"simple","dimension":"emails","included":100},"sms":{"type":"simple","dimension":"texts","included":0},"calls":{"type":"waterfall","tiers":[{"dimension":"calls-a","threshold":50},{"dimension":"calls-b","threshold":500},{"dimension":"calls-c","threshold":1000}]}}}"#

    func purchase(_ resourceId: String, start: String) throws -> JSONValue {
        try JSONParser.parse(
            #"{"type":"SubscriptionPurchased","value":{"subscription":{"resourceId":"\#(resourceId)","subscriptionStart":"\#(start)","renewalInterval":"Monthly","plan":\#(Self.plan)}}}"#
        )
    }

    func usage(_ resourceId: String, _ meter: String, _ quantity: String, properties: [String: String] = [:], id: String? = nil)
        -> JSONValue
    {
        var value = JSONObject([
            "resourceId": .string(resourceId), "timestamp": "2024-03-01T00:00:00Z", "meterName": .string(meter),
            "quantity": .number(quantity),
        ])
        if !properties.isEmpty {
            value["properties"] = .object(JSONObject(properties.sorted { $0.key < $1.key }.map { .init($0.key, .string($0.value)) }))
        }
        var envelope = JSONObject(["type": "UsageReported", "value": .object(value)])
        if let id { envelope["id"] = .string(id) }
        return .object(envelope)
    }

    func advance(to time: String) throws {
        _ = try ingest.admin().call(Request(op: "advance-clock", fields: JSONObject(["to": .string(time)])))
    }

    @discardableResult
    func send(_ events: [JSONValue]) throws -> [JSONValue] {
        let results = try ingest.client().call(appendRequest(events))["results"]?.arrayValue ?? []
        for result in results { #expect(result["status"] == "accepted", "\(JSONWriter.string(result))") }
        return results
    }
}

func exact(_ value: JSONValue?) -> Quantity? {
    switch value {
    case .number(let text)?, .string(let text)?: return Quantity(exactly: text)
    default: return nil
    }
}

@Suite("meter-query with meter-ingest and meter-aggregator over their sockets", .serialized)
struct QueryIntegrationTests {
    @Test("the run-rate equals the aggregator's state for the same log position")
    func runRateEqualsAggregatorState() throws {
        let home = StackHome()
        let ingest = try IngestProcess(home: home)
        let aggregator = try AggregatorProcess(home: home)
        let query = try QueryProcess(home: home)
        let work = Workload(ingest: ingest)
        var random = SplitMix64(seed: 7)
        let subscriptions = (0..<12).map { "q-sub-\($0)" }
        try work.advance(to: "2024-01-20T00:00:00Z")
        try work.send(subscriptions.enumerated().map { try work.purchase($1, start: "2024-01-\(10 + $0)T00:00:00Z") })
        for hour in 0..<60 {
            var batch: [JSONValue] = []
            for _ in 0..<20 {
                let subscription = subscriptions[Int(random.next() % UInt64(subscriptions.count))]
                let meter = ["email", "sms", "calls"][Int(random.next() % 3)]
                batch.append(work.usage(subscription, meter, "\(random.next() % 40).\(random.next() % 100)"))
            }
            try work.send(batch)
            // Every few hours a jump of days, across the renewals on the 10th to the 21st.
            let day = 20 + hour / 3
            try work.advance(
                to:
                    "2024-\(day > 31 ? "02" : "01")-\(String(format: "%02d", day > 31 ? day - 31 : day))T\(String(format: "%02d", hour % 24)):30:00Z"
            )
        }
        try aggregator.waitUntilCaughtUp(with: ingest)
        try query.waitUntilCaughtUp(with: ingest)
        for subscription in subscriptions {
            let state = try aggregator.client().call(Request(op: "state", fields: JSONObject(["resourceId": .string(subscription)])))
            let runRate = try query.client().call(Request(op: "runrate", fields: JSONObject(["resourceId": .string(subscription)])))
            #expect(runRate["asOf"] == state["asOf"])
            #expect(runRate["period"]?["start"] == state["subscription"]?["period"]?["start"])
            let stateMeters = state["subscription"]?["meters"]?.arrayValue ?? []
            let rateMeters = runRate["meters"]?.arrayValue ?? []
            #expect(stateMeters.count == 3 && rateMeters.count == 3)
            for meter in stateMeters {
                let name = meter["meterName"]
                let rate = try #require(rateMeters.first { $0["meterName"] == name }, "\(subscription) \(String(describing: name))")
                #expect(exact(rate["consumed"]) == exact(meter["consumed"]), "\(subscription) \(String(describing: name)) consumed")
                if meter["type"] == "simple" {
                    #expect(exact(rate["overage"]) == exact(meter["overage"]), "\(subscription) \(String(describing: name)) overage")
                    #expect(exact(rate["remaining"]) == exact(meter["remaining"]), "\(subscription) \(String(describing: name)) remaining")
                }
            }
        }
        // Pending at the marketplace: the aggregator's items of the current periods equal the query's.
        let items = try aggregator.client().call("pending")["items"]?.arrayValue ?? []
        var aggregatorPending = Quantity.zero
        var queryPending = Quantity.zero
        for subscription in subscriptions {
            let runRate = try query.client().call(Request(op: "runrate", fields: JSONObject(["resourceId": .string(subscription)])))
            let start = Timestamp(iso8601: runRate["period"]?["start"]?.stringValue ?? "")!
            for item in items where item["resourceId"] == .string(subscription) {
                guard let hour = Timestamp(iso8601: item["effectiveStartTime"]?.stringValue ?? ""), hour >= start else { continue }
                aggregatorPending += exact(item["quantity"]) ?? .zero
            }
            for meter in runRate["meters"]?.arrayValue ?? [] { queryPending += exact(meter["marketplace"]?["pending"]) ?? .zero }
        }
        #expect(queryPending == aggregatorPending)
        #expect(queryPending > .zero)
    }

    @Test("usage paging returns every closed hour exactly once across pages while new usage keeps arriving")
    func usagePagingWhileUsageArrives() throws {
        let (work, query) = try Workload.started()
        try work.send((0..<5).map { try work.purchase("page-\($0)", start: "2024-03-01T00:00:00Z") })
        let hours = 48
        let writer = Thread {
            for hour in 0..<hours {
                _ = try? work.send((0..<5).flatMap { [work.usage("page-\($0)", "email", "7.5"), work.usage("page-\($0)", "sms", "1")] })
                try? work.advance(
                    to: "2024-03-\(String(format: "%02d", 1 + (hour + 1) / 24))T\(String(format: "%02d", (hour + 1) % 24)):00:00Z")
            }
        }
        writer.start()
        var seen: [Int: String] = [:]
        var next = 0
        let deadline = Date().addingTimeInterval(60)
        // Page while the writer runs, then until all hours are there.
        while seen.count < hours * 10 && Date() < deadline {
            let page = try query.client().call(
                Request(op: "usage", fields: JSONObject(["startId": .number(String(next)), "batchSize": 7])))
            let records = page["records"]?.arrayValue ?? []
            for record in records {
                let id = try #require(record["id"]?.intValue)
                #expect(id == next, "ids are gap-free and in order")
                #expect(seen[id] == nil)
                seen[id] =
                    "\(record["resourceId"]?.stringValue ?? "") \(record["meterName"]?.stringValue ?? "") \(record["hour"]?.stringValue ?? "")"
                next = id + 1
            }
            #expect(page["nextId"]?.intValue == next)
            if records.isEmpty { usleep(20_000) }
        }
        #expect(seen.count == hours * 10)
        #expect(Set(seen.values).count == hours * 10, "every (subscription, meter, hour) once")
        let firstPage = try query.client().call(Request(op: "usage", fields: JSONObject(["startId": 0, "batchSize": 10000])))
        let all = firstPage["records"]?.arrayValue ?? []
        #expect(all.count == hours * 10)
        var emails = Quantity.zero
        for record in all where record["meterName"] == "email" { emails += exact(record["quantity"]) ?? .zero }
        #expect(emails == Quantity(units: Quantity.unitsPerOne * Int128(hours) * 375 / 10), "5 subscriptions × 7.5 an hour")
    }

    @Test("events returns what was appended, in its canonical form, properties and ids included, within the time range and across pages")
    func eventsAreTheAuditTrail() throws {
        let (work, query) = try Workload.started()
        let ingest = work.ingest
        try work.send([
            try work.purchase("audit-a", start: "2024-03-01T00:00:00Z"), try work.purchase("audit-b", start: "2024-03-01T00:00:00Z"),
        ])
        var sent: [JSONValue] = []
        for index in 0..<30 {
            try work.advance(to: "2024-03-01T\(String(format: "%02d", index / 2)):\(index % 2 == 0 ? "10" : "40"):00Z")
            let event = work.usage(
                "audit-a", "email", "\(index).5", properties: ["campaign": "c\(index % 3)", "user": "u\(index)"], id: "audit-\(index)")
            sent.append(event)
            try work.send([event, work.usage("audit-b", "email", "1")])
        }
        try query.waitUntilCaughtUp(with: ingest)
        // From 03:00 (index 6) to 10:00 (index 20, excluded), three to a page.
        var received: [JSONValue] = []
        var after: JSONValue?
        repeat {
            var fields = JSONObject([
                "resourceId": "audit-a", "from": "2024-03-01T03:00:00Z", "to": "2024-03-01T10:00:00Z", "max": 3,
            ])
            if let after { fields["after"] = after }
            let page = try query.client().call(Request(op: "events", fields: fields))
            let records = page["records"]?.arrayValue ?? []
            #expect(records.count <= 3)
            received += records.filter { $0["event"]?["type"] == "UsageReported" }
            after = page["next"] == .null ? nil : page["next"]
        } while after != nil
        #expect(received.count == 14)
        for (offset, record) in received.enumerated() {
            // The log keeps the canonical form of what was appended (members in key order).
            #expect(
                record["event"].map(JSONWriter.bytes) == CanonicalJSON.bytes(sent[6 + offset]),
                "the event as appended, id and properties included")
            #expect(record["enqueuedTime"]?.stringValue?.hasPrefix("2024-03-01T") == true)
        }
    }

    @Test("a SIGKILLed query service restarts with the same usage ids and catches up without duplicates")
    func crashKeepsIds() throws {
        let (work, first) = try Workload.started(queryEnvironment: ["METERING_QUERY_SNAPSHOT_RECORDS": "7"])
        var query = first
        let ingest = work.ingest
        try work.send((0..<3).map { try work.purchase("crash-\($0)", start: "2024-03-01T00:00:00Z") })
        for hour in 1...10 {
            try work.send((0..<3).map { work.usage("crash-\($0)", "email", "40") })
            try work.advance(to: "2024-03-01T\(String(format: "%02d", hour)):00:00Z")
        }
        try query.waitUntilCaughtUp(with: ingest)
        let before = try query.client().call(Request(op: "usage", fields: JSONObject(["startId": 0, "batchSize": 1000])))["records"]
        query.kill()
        for hour in 11...14 {
            try work.send((0..<3).map { work.usage("crash-\($0)", "email", "40") })
            try work.advance(to: "2024-03-01T\(hour):00:00Z")
        }
        query = try QueryProcess(home: ingest.home)
        try query.waitUntilCaughtUp(with: ingest)
        let after =
            try query.client().call(Request(op: "usage", fields: JSONObject(["startId": 0, "batchSize": 1000])))["records"]?.arrayValue
            ?? []
        let earlier = before?.arrayValue ?? []
        #expect(earlier.count == 30)
        #expect(after.count == 42)
        #expect(Array(after.prefix(earlier.count)) == earlier)
        let slots = Set(after.map { "\($0["resourceId"]?.stringValue ?? "") \($0["hour"]?.stringValue ?? "")" })
        #expect(slots.count == 42)
        let runRate = try query.client().call(Request(op: "runrate", fields: JSONObject(["resourceId": "crash-0"])))
        #expect(exact(runRate["meters"]?.arrayValue?.first { $0["meterName"] == "email" }?["consumed"]) == Quantity(14 * 40))
    }

    @Test("a watch stream sends the run-rate at once and again after the subscription's usage changes it")
    func watchStreams() throws {
        let (work, query) = try Workload.started()
        let ingest = work.ingest
        try work.send([
            try work.purchase("watched", start: "2024-03-01T00:00:00Z"), try work.purchase("other", start: "2024-03-01T00:00:00Z"),
        ])
        try query.waitUntilCaughtUp(with: ingest)
        let stream = try query.client()
        try stream.send(Request(op: "watch", id: 9, fields: JSONObject(["resourceId": "watched"])))
        let first = try stream.receive()
        #expect(first["id"] == 9)
        #expect(exact(first["meters"]?.arrayValue?.first { $0["meterName"] == "email" }?["consumed"]) == .zero)
        try work.send([work.usage("watched", "email", "12.5")])
        let second = try stream.receive()
        #expect(exact(second["meters"]?.arrayValue?.first { $0["meterName"] == "email" }?["consumed"]) == quantity("12.5"))
    }

    @Test("subscriptions page through every subscription once, in key order, across partitions")
    func subscriptionPages() throws {
        let (work, query) = try Workload.started()
        let ingest = work.ingest
        let names = (0..<25).map { "list-\(String(format: "%02d", $0))" }
        try work.send(names.map { try work.purchase($0, start: "2024-03-01T00:00:00Z") })
        try query.waitUntilCaughtUp(with: ingest)
        var seen: [String] = []
        var after: JSONValue?
        var pages = 0
        repeat {
            var fields = JSONObject(["max": 10])
            if let after { fields["after"] = after }
            let page = try query.client().call(Request(op: "subscriptions", fields: fields))
            #expect(page["total"] == 25)
            seen += (page["subscriptions"]?.arrayValue ?? []).compactMap { $0["key"]?.stringValue }
            after = page["next"] == .null ? nil : page["next"]
            pages += 1
        } while after != nil && pages < 10
        #expect(pages == 3)
        #expect(seen == names)
    }

    @Test("bad requests get clear errors and the connection keeps serving")
    func badRequests() throws {
        let home = StackHome()
        let ingest = try IngestProcess(home: home)
        let query = try QueryProcess(home: home)
        let client = try query.client()
        let cases: [(Request, String)] = [
            (Request(op: "nope"), "unknown_op"), (Request(op: "runrate"), "bad_request"),
            (Request(op: "runrate", fields: JSONObject(["resourceId": 5])), "bad_request"),
            (Request(op: "runrate", fields: JSONObject(["resourceId": "missing"])), "not_found"),
            (Request(op: "usage", fields: JSONObject(["batchSize": 0])), "bad_request"),
            (Request(op: "usage", fields: JSONObject(["startId": -1])), "bad_request"),
            (Request(op: "events", fields: JSONObject(["resourceId": "missing"])), "not_found"),
            (Request(op: "breakdown", fields: JSONObject(["resourceId": "missing"])), "bad_request"),
        ]
        for (request, code) in cases {
            try client.send(request)
            let response = try client.receive()
            #expect(response["ok"] == false)
            #expect(response["error"]?["code"] == .string(code), "\(request.op): \(JSONWriter.string(response))")
        }
        #expect(try client.call("status")["partitions"]?.arrayValue?.count == 4)
        #expect(ingest.process.isRunning)
    }
}

func quantity(_ text: String) -> Quantity { Quantity(exactly: text)! }
