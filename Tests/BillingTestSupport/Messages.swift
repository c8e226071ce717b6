public import Billing
public import Wire

// Messages and values written in code for the billing and read-model tests: the client's and the
// submitter's JSON formats (DESIGN.md §3.3), so tests decode them exactly as ingest does.

public func at(_ text: String) -> Timestamp {
    guard let time = Timestamp(iso8601: text) else { preconditionFailure("bad time in a test: \(text)") }
    return time
}

public func quantity(_ text: String) -> Quantity {
    guard let value = Quantity(exactly: text) else { preconditionFailure("bad quantity in a test: \(text)") }
    return value
}

/// `2024-01-31T10` for an hour: short enough to read in expectations.
public func hourText(_ time: Timestamp) -> String { String(time.iso8601.prefix(13)) }

/// Messages in the client and internal JSON formats (DESIGN.md §3.3).
public enum Messages {
    public static func purchase(
        _ resourceId: String?, resourceUri: String? = nil, start: String, interval: String = "Monthly", planId: String = "plan",
        dimensions: JSONValue
    ) -> JSONValue {
        var subscription = JSONObject()
        if let resourceId { subscription["resourceId"] = .string(resourceId) }
        if let resourceUri { subscription["resourceUri"] = .string(resourceUri) }
        subscription["subscriptionStart"] = .string(start)
        subscription["renewalInterval"] = .string(interval)
        subscription["plan"] = ["planId": .string(planId), "billingDimensions": dimensions]
        return ["type": "SubscriptionPurchased", "value": ["subscription": .object(subscription)]]
    }

    public static func simple(_ dimension: String, included: JSONValue? = nil, aggregation: String? = nil) -> JSONValue {
        var object = JSONObject(["type": "simple", "dimension": .string(dimension)])
        if let included { object["included"] = included }
        if let aggregation { object["aggregation"] = .string(aggregation) }
        return .object(object)
    }

    public static func waterfall(_ tiers: [(String, String)]) -> JSONValue {
        ["type": "waterfall", "tiers": .array(tiers.map { ["dimension": .string($0.0), "threshold": .number($0.1)] })]
    }

    public static func usage(
        _ resourceId: String?, resourceUri: String? = nil, _ meterName: String, _ quantity: String, properties: [String: String] = [:],
        timestamp: String = "2020-01-01T00:00:00Z", id: String? = nil
    ) -> JSONValue {
        var value = JSONObject()
        if let resourceId { value["resourceId"] = .string(resourceId) }
        if let resourceUri { value["resourceUri"] = .string(resourceUri) }
        value["timestamp"] = .string(timestamp)
        value["meterName"] = .string(meterName)
        value["quantity"] = .number(quantity)
        if !properties.isEmpty {
            value["properties"] = .object(JSONObject(properties.sorted { $0.key < $1.key }.map { .init($0.key, .string($0.value)) }))
        }
        var envelope = JSONObject(["type": "UsageReported", "value": .object(value)])
        if let id { envelope["id"] = .string(id) }
        return .object(envelope)
    }

    /// A plan change of `resourceId` to the plan `planId` with `dimensions`.
    public static func planChange(_ resourceId: String, planId: String, dimensions: JSONValue) -> JSONValue {
        [
            "type": "PlanChanged",
            "value": ["resourceId": .string(resourceId), "plan": ["planId": .string(planId), "billingDimensions": dimensions]],
        ]
    }

    /// A void of the usage sent with `id`, as ingest records it: one id, the usage attached.
    public static func void(_ id: String, usage: JSONValue, sequence: UInt64, enqueuedTime: Timestamp, reason: String? = nil) -> JSONValue {
        var value = JSONObject(["ids": [.string(id)]])
        if let reason { value["reason"] = .string(reason) }
        value["voided"] = [
            "sequence": .number(String(sequence)), "enqueuedTime": .string(enqueuedTime.iso8601), "event": usage,
        ]
        return ["type": "UsageVoided", "value": .object(value)]
    }

    /// A tick as ingest writes it, with its attribution: `enqueued`, or `event` with a grace in seconds.
    public static func tick(partition: Int = 0, lateGraceSeconds: Int?) -> JSONValue {
        let attribution = lateGraceSeconds.map { Attribution.event(lateGrace: Int64($0) * 1_000_000) } ?? .enqueued
        return Message(
            body: .ping(Ping(partition: partition, localTime: nil, reason: "starting", attribution: attribution, sender: "meter-ingest"))
        )
        .json
    }

    public static func deletion(_ resourceId: String) -> JSONValue {
        Message(body: .subscriptionDeleted(ResourceName(resourceId: resourceId))).json
    }

    public static func ping(partition: Int = 0) -> JSONValue {
        Message(body: .ping(Ping(partition: partition, localTime: nil, reason: "test"))).json
    }

    /// The submitter's record of the marketplace's answer for `item`.
    public static func outcome(
        _ item: ReadyItem, status: String, acceptedQuantity: Quantity? = nil, errorMessage: String? = nil, resource: ResourceName? = nil
    ) -> JSONValue {
        var result = JSONObject()
        let name = resource ?? item.resource
        if let id = name.resourceId { result["resourceId"] = .string(id) }
        if let uri = name.resourceUri { result["resourceUri"] = .string(uri) }
        result["planId"] = .string(item.planId)
        result["dimension"] = .string(item.dimension)
        // The marketplace answers without the `Z`, as in the reference's captures.
        result["effectiveStartTime"] = .string(String(item.effectiveStartTime.iso8601.dropLast()))
        result["quantity"] = .number(item.quantity.description)
        result["status"] = .string(status)
        if let acceptedQuantity {
            result["error"] = [
                "code": "Conflict", "message": "This usage event already exist.",
                "additionalInfo": ["acceptedMessage": ["quantity": .number(acceptedQuantity.description), "status": "Duplicate"]],
            ]
        } else if let errorMessage {
            result["error"] = [
                "code": "BadArgument", "message": "One or more errors have occurred.",
                "details": [["code": "BadArgument", "target": "resourceId", "message": .string(errorMessage)]],
            ]
        }
        return ["type": "UsageSubmittedToAPI", "value": ["result": .object(result)]]
    }

    public static func removal(partition: Int = 0, _ selection: JSONObject.Member) -> JSONValue {
        .object(JSONObject([JSONObject.Member("partitionId", .string(String(partition))), selection]).wrapped("RemoveUnprocessedMessages"))
    }
}

extension JSONObject {
    /// `{"type": type, "value": self}`.
    public func wrapped(_ type: String) -> JSONObject {
        JSONObject(["type": .string(type), "value": .object(self)])
    }
}
