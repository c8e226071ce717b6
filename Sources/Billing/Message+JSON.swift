import Wire

extension Message {
    /// The message as its JSON envelope, for the messages that can become unprocessable (usage,
    /// deletions, plan changes, voids; a plan by its id only), so operators see what was sent; nil
    /// for the others.
    var billingJSON: JSONValue? {
        var value: JSONObject
        switch body {
        case .usageReported(let usage):
            // Properties sorted, so the same message always has the same JSON (the fold is deterministic).
            value = usage.json
        case .subscriptionDeleted(let resource):
            value = JSONObject(resource.members)
        case .subscriptionPurchased(let purchase):
            var subscription = JSONObject(purchase.resource.members)
            subscription["subscriptionStart"] = .string(purchase.subscriptionStart.iso8601)
            subscription["renewalInterval"] = .string(purchase.renewalInterval.rawValue)
            subscription["plan"] = ["planId": .string(purchase.plan.planId)]
            value = JSONObject(["subscription": .object(subscription)])
        case .planChanged(let change):
            value = JSONObject(change.resource.members)
            value["plan"] = ["planId": .string(change.plan.planId)]
        case .usageVoided(let void):
            value = JSONObject(["ids": .array(void.ids.map { .string($0) })])
            if let reason = void.reason { value["reason"] = .string(reason) }
            if let usage = void.voided?.usage {
                var voided = JSONObject(usage.resource.members)
                voided["meterName"] = .string(usage.meterName)
                voided["quantity"] = usage.quantity.json
                value["voided"] = .object(voided)
            }
        default:
            return nil
        }
        var envelope = JSONObject(["type": .string(type.rawValue), "value": .object(value)])
        if let id { envelope["id"] = .string(id) }
        return .object(envelope)
    }
}
