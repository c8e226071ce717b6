import Testing
import Wire

/// Random messages of every type, within what the decoder accepts.
struct MessageGenerator {
    var random: SplitMix64

    mutating func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &random) }
    mutating func chance(_ percent: Int) -> Bool { int(1...100) <= percent }

    /// A non-empty string, sometimes with escapes, control characters and non-ASCII text.
    mutating func text(maximum: Int = 12) -> String {
        let alphabet: [String] = ["a", "Z", "7", "-", "_", "/", " ", "\"", "\\", "\n", "\u{1}", "é", "€", "𝄞", "<", "}"]
        return (0..<int(1...maximum)).map { _ in alphabet[int(0...alphabet.count - 1)] }.joined()
    }

    mutating func time() -> Timestamp {
        // 1970 to 2100, sometimes on a whole second, sometimes with microseconds.
        let seconds = Int64(int(0...4_102_444_800))
        return Timestamp(microseconds: seconds * 1_000_000 + (chance(50) ? 0 : Int64(int(0...999_999))))
    }

    mutating func quantity() -> Quantity {
        switch int(0...3) {
        case 0: return .zero
        case 1: return Quantity(int(0...1_000_000))
        case 2: return Quantity(units: Int128(int(0...Int.max)) * Int128(int(1...1_000_000)))
        default: return Quantity(units: Int128(int(1...999)))
        }
    }

    mutating func resource() -> ResourceName {
        switch int(0...2) {
        case 0: return ResourceName(resourceId: text())
        case 1: return ResourceName(resourceUri: "/subscriptions/" + text())
        default: return ResourceName(resourceId: text(), resourceUri: "/subscriptions/" + text())
        }
    }

    mutating func plan() -> Plan {
        var dimensions: [(meterName: String, dimension: BillingDimension)] = []
        for index in 0..<int(1...4) {
            let dimension: BillingDimension
            if chance(70) {
                let included: IncludedQuantity = chance(20) ? .infinite : .finite(quantity())
                let aggregation = Aggregation.allCases[int(0...Aggregation.allCases.count - 1)]
                dimension = .simple(dimension: text(), included: included, aggregation: aggregation)
            } else {
                dimension = .waterfall(tiers: (0..<int(1...3)).map { _ in WaterfallTier(dimension: text(), threshold: quantity()) })
            }
            dimensions.append((meterName: "m\(index)" + text(maximum: 4), dimension: dimension))
        }
        var plan = Plan(planId: text(), billingDimensions: dimensions)
        if chance(30) {
            let priced = Array(Set(plan.dimensions)).sorted().prefix(int(1...3))
            plan.prices = DisplayPrices(
                currency: ["USD", "EUR"][int(0...1)], perUnit: priced.map { .init(dimension: $0, price: quantity()) })
        }
        return plan
    }

    /// A plan of the catalog named by its id alone, as a purchase or plan change may give it.
    mutating func planOrReference() -> Plan { chance(20) ? Plan(planId: text(), billingDimensions: []) : plan() }

    mutating func usage() -> UsageReported {
        var properties: [String: String] = [:]
        for _ in 0..<int(0...3) { properties[text(maximum: 6)] = chance(10) ? "" : text() }
        return UsageReported(resource: resource(), timestamp: time(), meterName: text(), quantity: quantity(), properties: properties)
    }

    mutating func id() -> String? { chance(60) ? text(maximum: 40) : nil }

    mutating func message() throws -> Message {
        switch int(0...8) {
        case 0:
            let interval = RenewalInterval.allCases[int(0...RenewalInterval.allCases.count - 1)]
            return Message(
                id: id(),
                body: .subscriptionPurchased(
                    SubscriptionPurchased(
                        resource: resource(), subscriptionStart: time(), renewalInterval: interval, plan: planOrReference())))
        case 1: return Message(id: id(), body: .usageReported(usage()))
        case 2: return Message(id: id(), body: .subscriptionDeleted(resource()))
        case 3:
            var result = JSONObject(resource().members)
            result["status"] = .string(["Accepted", "Duplicate", "Expired", "ResourceNotFound"][int(0...3)])
            if chance(70) { result["planId"] = .string(text()) }
            if chance(70) { result["dimension"] = .string(text()) }
            if chance(70) { result["effectiveStartTime"] = .string(time().iso8601) }
            if chance(70) { result["quantity"] = quantity().json }
            if chance(30) { result["messageTime"] = .string(time().iso8601) }
            let headers = JSONObject([.init("xMsRequestId", .string(text())), .init("xMsCorrelationId", .string(text()))])
            return Message(id: id(), body: .usageSubmittedToAPI(try UsageSubmittedToAPI(result: result, httpHeaders: headers)))
        case 4:
            let selections: [RemoveUnprocessedMessages.Selection] = [
                .beforeIncluding(Int64(int(0...Int(Int64.max)))), .exactly(Int64(int(0...1000))), .all,
            ]
            return Message(
                body: .removeUnprocessedMessages(RemoveUnprocessedMessages(partition: int(0...1023), selection: selections[int(0...2)])))
        case 5:
            let attribution: Attribution? =
                chance(30)
                ? nil
                : chance(50) ? .enqueued : .event(lateGrace: Int64(int(0...Int(Attribution.maximumLateGrace / 1_000_000))) * 1_000_000)
            return Message(
                body: .ping(
                    Ping(
                        partition: int(0...1023), localTime: chance(80) ? time() : nil, reason: text(), attribution: attribution,
                        sender: chance(50) ? "meter-ingest" : nil)))
        case 6: return Message(id: id(), body: .planChanged(PlanChanged(resource: resource(), plan: planOrReference())))
        case 7: return Message(id: id(), body: .planDefined(PlanDefined(plan: plan(), version: chance(50) ? int(1...1000) : nil)))
        default:
            if chance(50) {
                let key = text(maximum: 40)
                let voided = VoidedUsage(sequence: UInt64(int(0...Int.max)), enqueuedTime: time(), usage: usage())
                return Message(id: id(), body: .usageVoided(UsageVoided(ids: [key], reason: chance(50) ? text() : nil, voided: voided)))
            }
            let ids = Array(Set((0..<int(1...5)).map { _ in text(maximum: 20) }))
            return Message(id: id(), body: .usageVoided(UsageVoided(ids: ids, reason: chance(50) ? text() : nil)))
        }
    }
}

@Suite("The typed message encoder")
struct MessageEncoderTests {
    @Test("every message decodes to itself from its JSON and from the bytes written, and to the same stored form from its canonical bytes")
    func roundTrip() throws {
        var generator = MessageGenerator(random: SplitMix64(seed: 0x5EED_C0DE))
        var types = Set<MessageType>()
        for _ in 0..<5000 {
            let message = try generator.message()
            types.insert(message.type)
            #expect(try Message.decode(message.json).get() == message, "\(JSONWriter.string(message.json))")
            let written = try JSONParser.parse(JSONWriter.bytes(message.json))
            #expect(try Message.decode(written).get() == message, "\(JSONWriter.string(message.json))")
            // The stored form sorts members, a plan's meters too: equal up to that order.
            let canonical = CanonicalJSON.bytes(message.json)
            let stored = try Message.decode(try JSONParser.parse(canonical)).get()
            #expect(CanonicalJSON.bytes(stored.json) == canonical, "\(JSONWriter.string(message.json))")
            #expect(stored.type == message.type && stored.id == message.id && stored.resource == message.resource)
        }
        #expect(types == Set(MessageType.allCases))
    }

    @Test("the encoder writes the reference's form: a purchase from the samples comes out member for member")
    func referenceForm() throws {
        let text =
            #"{"type":"SubscriptionPurchased","value":{"subscription":{"resourceId":"fdc778a6-1281-40e4-cade-4a5fc11f5440","subscriptionStart":"2021-11-04T16:12:26Z","renewalInterval":"Monthly","plan":{"planId":"free_monthly_yearly","billingDimensions":{"nde":{"type":"simple","dimension":"nodecharge","included":1000},"cpu":{"type":"simple","dimension":"cpucharge","included":"Infinite"},"dta":{"type":"waterfall","tiers":[{"dimension":"datasourcecharge","threshold":0},{"dimension":"datasourcecharge2","threshold":100}]}}}}}}"#
        let message = try Message.decode(try JSONParser.parse(text)).get()
        #expect(JSONWriter.string(message.json) == text)
    }

    @Test("a usage's properties are written sorted, so one usage has one form whatever order they were sent in")
    func propertiesSorted() throws {
        let usage = UsageReported(
            resource: ResourceName(resourceId: "r"), timestamp: Timestamp(seconds: 0), meterName: "cpu", quantity: Quantity(2),
            properties: ["zone": "b", "app": "a", "Zed": "c"])
        #expect(
            JSONWriter.string(Message(body: .usageReported(usage)).json)
                == #"{"type":"UsageReported","value":{"resourceId":"r","timestamp":"1970-01-01T00:00:00Z","meterName":"cpu","quantity":2,"properties":{"Zed":"c","app":"a","zone":"b"}}}"#
        )
    }

    @Test("an outcome built from the marketplace's answer is refused when the answer names no resource")
    func outcomeNeedsResource() {
        #expect(throws: MessageError.self) {
            try UsageSubmittedToAPI(result: JSONObject([.init("status", "Accepted")]), httpHeaders: JSONObject())
        }
    }
}
