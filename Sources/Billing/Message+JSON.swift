import Wire

extension Message {
    /// The message as its JSON envelope, for the messages that can become unprocessable (usage and
    /// deletions), so operators see what was sent; nil for the others.
    var billingJSON: JSONValue? {
        var value: JSONObject
        switch body {
        case .usageReported(let usage):
            value = JSONObject(usage.resource.jsonMembers)
            value["timestamp"] = .string(usage.timestamp.iso8601)
            value["meterName"] = .string(usage.meterName)
            value["quantity"] = usage.quantity.json
            if !usage.properties.isEmpty {
                // Sorted, so the same message always has the same JSON (the fold is deterministic).
                let properties = usage.properties.sorted { $0.key < $1.key }.map { JSONObject.Member($0.key, .string($0.value)) }
                value["properties"] = .object(JSONObject(properties))
            }
        case .subscriptionDeleted(let resource):
            value = JSONObject(resource.jsonMembers)
        default:
            return nil
        }
        var envelope = JSONObject(["type": .string(type.rawValue), "value": .object(value)])
        if let id { envelope["id"] = .string(id) }
        return .object(envelope)
    }
}
