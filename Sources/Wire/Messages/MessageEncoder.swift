/// The typed writer beside `Message.decode`: every message as the envelope the decoder reads
/// (`{"type": T, "value": {...}, "id"?: key}`), so code that produces messages (ingest's ticks,
/// the submitter's outcomes, the connector's usage, test support) builds them from the types and
/// never spells the format by hand. `Message.decode(message.json) == .success(message)` holds for
/// every message (a property test checks it).
extension Message {
    /// The message's JSON envelope. Members follow the reference's order; ingest stores the
    /// canonical form (`CanonicalJSON`) whatever the order.
    public var json: JSONValue {
        var envelope: [JSONObject.Member] = [.init("type", .string(type.rawValue)), .init("value", .object(value))]
        if let id { envelope.append(.init("id", .string(id))) }
        return .object(JSONObject(envelope))
    }

    /// The envelope's `value`.
    var value: JSONObject {
        switch body {
        case .subscriptionPurchased(let purchase): return purchase.json
        case .usageReported(let usage): return usage.json
        case .subscriptionDeleted(let resource): return JSONObject(resource.members)
        case .usageSubmittedToAPI(let outcome): return outcome.value
        case .removeUnprocessedMessages(let removal): return removal.json
        case .ping(let ping): return ping.json
        case .planChanged(let change): return JSONObject(change.resource.members + [.init("plan", change.plan.json)])
        case .usageVoided(let void): return void.json
        case .planDefined(let definition):
            var members: [JSONObject.Member] = [.init("plan", definition.plan.json)]
            if let version = definition.version { members.append(.init("version", .number(String(version)))) }
            return JSONObject(members)
        }
    }
}

extension ResourceName {
    /// `resourceId` and `resourceUri`, those that are present, in that order.
    public var members: [JSONObject.Member] {
        var members: [JSONObject.Member] = []
        if let resourceId { members.append(.init("resourceId", .string(resourceId))) }
        if let resourceUri { members.append(.init("resourceUri", .string(resourceUri))) }
        return members
    }
}

extension SubscriptionPurchased {
    /// The purchase's `value`: `{"subscription": {names, subscriptionStart, renewalInterval, plan}}`.
    public var json: JSONObject {
        var subscription = resource.members
        subscription.append(.init("subscriptionStart", .string(subscriptionStart.iso8601)))
        subscription.append(.init("renewalInterval", .string(renewalInterval.rawValue)))
        subscription.append(.init("plan", plan.json))
        return JSONObject([.init("subscription", .object(JSONObject(subscription)))])
    }
}

extension Plan {
    /// `{"planId": ..., "billingDimensions": {meter: dimension, ...}, "prices"?: ...}`, meters in
    /// the plan's order; a reference to the catalog is `{"planId": ...}` alone.
    public var json: JSONValue {
        var members: [JSONObject.Member] = [.init("planId", .string(planId))]
        guard !isCatalogReference else { return .object(JSONObject(members)) }
        let dimensions = billingDimensions.map { JSONObject.Member($0.meterName, $0.dimension.json) }
        members.append(.init("billingDimensions", .object(JSONObject(dimensions))))
        if let prices {
            let perUnit = prices.perUnit.map { JSONObject.Member($0.dimension, $0.price.json) }
            members.append(
                .init(
                    "prices",
                    .object(JSONObject([.init("currency", .string(prices.currency)), .init("perUnit", .object(JSONObject(perUnit)))]))))
        }
        return .object(JSONObject(members))
    }
}

extension BillingDimension {
    /// A simple dimension (its included quantity, `"Infinite"` or a number; its aggregation
    /// unless it is the default `sum`), or a waterfall's tiers.
    public var json: JSONValue {
        switch self {
        case .simple(let dimension, let included, let aggregation):
            var members: [JSONObject.Member] = [.init("type", "simple"), .init("dimension", .string(dimension))]
            switch included {
            case .infinite: members.append(.init("included", "Infinite"))
            case .finite(let quantity): members.append(.init("included", quantity.json))
            }
            if aggregation != .sum { members.append(.init("aggregation", .string(aggregation.rawValue))) }
            return .object(JSONObject(members))
        case .waterfall(let tiers):
            let list = tiers.map {
                JSONValue.object(JSONObject([.init("dimension", .string($0.dimension)), .init("threshold", $0.threshold.json)]))
            }
            return .object(JSONObject([.init("type", "waterfall"), .init("tiers", .array(list))]))
        }
    }
}

extension UsageReported {
    /// The usage's `value`; properties sorted by name, so one usage has one JSON form.
    public var json: JSONObject {
        var members = resource.members
        members.append(.init("timestamp", .string(timestamp.iso8601)))
        members.append(.init("meterName", .string(meterName)))
        members.append(.init("quantity", quantity.json))
        if !properties.isEmpty {
            let sorted = properties.sorted { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }
            members.append(.init("properties", .object(JSONObject(sorted.map { .init($0.key, .string($0.value)) }))))
        }
        return JSONObject(members)
    }
}

extension RemoveUnprocessedMessages {
    /// `{"partitionId": "p", "beforeIncluding" | "exactly": n | "all": "all"}`.
    public var json: JSONObject {
        var members: [JSONObject.Member] = [.init("partitionId", .string(String(partition)))]
        switch selection {
        case .beforeIncluding(let sequence): members.append(.init("beforeIncluding", .number(String(sequence))))
        case .exactly(let sequence): members.append(.init("exactly", .number(String(sequence))))
        case .all: members.append(.init("all", "all"))
        }
        return JSONObject(members)
    }
}

extension Ping {
    /// The tick's `value`: partition, local time, reason, sender and attribution, those present.
    public var json: JSONObject {
        var members: [JSONObject.Member] = [.init("partitionId", .string(String(partition)))]
        if let localTime { members.append(.init("localTime", .string(localTime.iso8601))) }
        members.append(.init("reason", .string(reason)))
        if let sender { members.append(.init("sender", .string(sender))) }
        if let attribution { members += attribution.tickMembers }
        return JSONObject(members)
    }
}

extension UsageVoided {
    /// `{"ids": [...], "reason"?: ..., "voided"?: {"sequence", "enqueuedTime", "event"}}`.
    public var json: JSONObject {
        var members: [JSONObject.Member] = [.init("ids", .array(ids.map { .string($0) }))]
        if let reason { members.append(.init("reason", .string(reason))) }
        if let voided {
            let event = Message(id: ids.first, body: .usageReported(voided.usage)).json
            members.append(
                .init(
                    "voided",
                    .object(
                        JSONObject([
                            .init("sequence", .number(String(voided.sequence))),
                            .init("enqueuedTime", .string(voided.enqueuedTime.iso8601)),
                            .init("event", event),
                        ]))))
        }
        return JSONObject(members)
    }
}
