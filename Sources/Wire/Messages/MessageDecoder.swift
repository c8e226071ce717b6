/// Why a message was not accepted: where (a path such as `value.plan.billingDimensions.nde.included`)
/// and what a developer should change.
public struct MessageError: Error, Hashable, Sendable, CustomStringConvertible {
    public var path: String
    public var reason: String

    public init(path: String, reason: String) {
        self.path = path
        self.reason = reason
    }

    public var description: String { path.isEmpty ? reason : "\(path): \(reason)" }
}

extension Message {
    /// The longest idempotency key accepted, in bytes.
    public static let maximumIdLength = 200

    /// Validates and decodes a message envelope. Unknown extra members are ignored (and kept in
    /// the stored JSON), so newer senders keep working.
    public static func decode(_ json: JSONValue) -> Result<Message, MessageError> {
        do {
            return .success(try MessageReader.message(json))
        } catch {
            return .failure(error)
        }
    }

    /// `decode`, throwing its error.
    static func decodeThrowing(_ json: JSONValue) throws(MessageError) -> Message { try MessageReader.message(json) }
}

private enum MessageReader {
    typealias Failure = MessageError

    static func message(_ json: JSONValue) throws(Failure) -> Message {
        guard let envelope = json.objectValue else {
            throw Failure(path: "", reason: "a message must be a JSON object {\"type\": ..., \"value\": {...}}, got \(json.typeName)")
        }
        guard let typeValue = envelope["type"] else {
            throw Failure(path: "type", reason: "missing; expected one of \(typeNames)")
        }
        guard let typeName = typeValue.stringValue else {
            throw Failure(path: "type", reason: "must be a string, one of \(typeNames)")
        }
        guard let type = MessageType(rawValue: typeName) else {
            throw Failure(path: "type", reason: "unknown message type \"\(typeName)\"; expected one of \(typeNames)")
        }
        guard let value = envelope["value"] else { throw Failure(path: "value", reason: "missing") }
        let object = try objectValue(value, "value")
        var id: String?
        if let idValue = envelope["id"], idValue != .null {
            guard let text = idValue.stringValue, !text.isEmpty, text.utf8.count <= Message.maximumIdLength else {
                throw Failure(
                    path: "id", reason: "the idempotency key must be a non-empty string of at most \(Message.maximumIdLength) bytes")
            }
            id = text
        }
        let body: Message.Body
        switch type {
        case .subscriptionPurchased: body = .subscriptionPurchased(try purchase(object))
        case .usageReported: body = .usageReported(try usage(object))
        case .subscriptionDeleted: body = .subscriptionDeleted(try resource(object, "value"))
        case .usageSubmittedToAPI: body = .usageSubmittedToAPI(try submitted(object))
        case .removeUnprocessedMessages: body = .removeUnprocessedMessages(try removal(object))
        case .ping: body = .ping(try ping(object))
        case .planChanged: body = .planChanged(try planChange(object))
        case .usageVoided: body = .usageVoided(try void(object))
        case .planDefined: body = .planDefined(try definition(object))
        }
        return Message(id: id, body: body)
    }

    static let typeNames = MessageType.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")

    static func objectValue(_ value: JSONValue, _ path: String) throws(Failure) -> JSONObject {
        guard let object = value.objectValue else { throw Failure(path: path, reason: "must be an object, got \(value.typeName)") }
        return object
    }

    static func string(_ object: JSONObject, _ key: String, _ path: String) throws(Failure) -> String {
        guard let value = object[key] else { throw Failure(path: "\(path).\(key)", reason: "missing") }
        guard let text = value.stringValue else {
            throw Failure(path: "\(path).\(key)", reason: "must be a string, got \(value.typeName)")
        }
        guard !text.isEmpty else { throw Failure(path: "\(path).\(key)", reason: "must not be empty") }
        return text
    }

    static func optionalString(_ object: JSONObject, _ key: String, _ path: String) throws(Failure) -> String? {
        guard let value = object[key], value != .null else { return nil }
        return try string(object, key, path)
    }

    static func resource(_ object: JSONObject, _ path: String) throws(Failure) -> ResourceName {
        let name = ResourceName(
            resourceId: try optionalString(object, "resourceId", path),
            resourceUri: try optionalString(object, "resourceUri", path))
        guard name.resourceId != nil || name.resourceUri != nil else {
            throw Failure(path: path, reason: "names no resource: give \"resourceId\" (SaaS) and/or \"resourceUri\" (managed application)")
        }
        return name
    }

    static func timestamp(_ object: JSONObject, _ key: String, _ path: String) throws(Failure) -> Timestamp {
        let text = try string(object, key, path)
        guard let time = Timestamp(iso8601: text) else {
            throw Failure(
                path: "\(path).\(key)", reason: "\"\(text)\" is not an ISO 8601 UTC date and time such as \"2022-01-28T15:36:21Z\"")
        }
        return time
    }

    /// A quantity given as a JSON number or a numeric string, exactly.
    static func quantity(_ value: JSONValue, _ path: String) throws(Failure) -> Quantity {
        let text: String
        switch value {
        case .number(let literal): text = literal
        case .string(let literal): text = literal
        default: throw Failure(path: path, reason: "must be a number or a numeric string, got \(value.typeName)")
        }
        if ["nan", "infinity", "-infinity", "+infinity", "inf", "-inf"].contains(text.lowercased()) {
            throw Failure(path: path, reason: "\"\(text)\" is not a finite quantity")
        }
        switch Quantity.parse(text) {
        case .success(let quantity):
            guard !quantity.isNegative else { throw Failure(path: path, reason: "must not be negative (got \(text))") }
            return quantity
        case .failure(let error):
            throw Failure(path: path, reason: "\"\(text)\" \(error)")
        }
    }

    static func purchase(_ value: JSONObject) throws(Failure) -> SubscriptionPurchased {
        guard let subscriptionValue = value["subscription"] else {
            throw Failure(path: "value.subscription", reason: "missing")
        }
        let subscription = try objectValue(subscriptionValue, "value.subscription")
        let path = "value.subscription"
        let resource = try resource(subscription, path)
        let start = try timestamp(subscription, "subscriptionStart", path)
        let intervalName = try string(subscription, "renewalInterval", path)
        guard let interval = RenewalInterval(rawValue: intervalName) else {
            let known = RenewalInterval.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")
            throw Failure(path: "\(path).renewalInterval", reason: "unknown renewal interval \"\(intervalName)\"; expected one of \(known)")
        }
        guard let planValue = subscription["plan"] else { throw Failure(path: "\(path).plan", reason: "missing") }
        let plan = try self.plan(try objectValue(planValue, "\(path).plan"), "\(path).plan", reference: true)
        return SubscriptionPurchased(resource: resource, subscriptionStart: start, renewalInterval: interval, plan: plan)
    }

    /// A plan; with `reference`, a plan that gives only its `planId` (no `billingDimensions`) names a
    /// plan of the catalog.
    static func plan(_ object: JSONObject, _ path: String, reference: Bool = false) throws(Failure) -> Plan {
        let planId = try string(object, "planId", path)
        guard let dimensionsValue = object["billingDimensions"] else {
            guard reference else {
                throw Failure(path: "\(path).billingDimensions", reason: "missing; a plan maps meter names to billing dimensions")
            }
            if let prices = object["prices"], prices != .null {
                throw Failure(
                    path: "\(path).prices",
                    reason:
                        "a plan named by its planId alone is the catalog's, with the catalog's prices; give billingDimensions too, or no prices"
                )
            }
            return Plan(planId: planId, billingDimensions: [])
        }
        let dimensions = try objectValue(dimensionsValue, "\(path).billingDimensions")
        guard !dimensions.members.isEmpty else {
            throw Failure(path: "\(path).billingDimensions", reason: "is empty; a plan needs at least one billing dimension")
        }
        var result: [(meterName: String, dimension: BillingDimension)] = []
        for member in dimensions.members {
            let memberPath = "\(path).billingDimensions.\(member.key)"
            guard !member.key.isEmpty else { throw Failure(path: memberPath, reason: "meter names must not be empty") }
            result.append((member.key, try dimension(try objectValue(member.value, memberPath), memberPath)))
        }
        var plan = Plan(planId: planId, billingDimensions: result)
        if let pricesValue = object["prices"], pricesValue != .null {
            plan.prices = try prices(try objectValue(pricesValue, "\(path).prices"), "\(path).prices", dimensions: plan.dimensions)
        }
        return plan
    }

    /// `{"currency": "USD", "perUnit": {"<dimension>": price, ...}}`: every priced dimension must be
    /// one the plan bills, so a typo cannot leave a price unused.
    static func prices(_ object: JSONObject, _ path: String, dimensions: [String]) throws(Failure) -> DisplayPrices {
        let currency = try string(object, "currency", path)
        guard currency.utf8.count == 3, currency.utf8.allSatisfy({ $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") }) else {
            throw Failure(path: "\(path).currency", reason: "\"\(currency)\" is not an ISO 4217 currency code such as \"USD\"")
        }
        guard let perUnitValue = object["perUnit"] else {
            throw Failure(path: "\(path).perUnit", reason: "missing; map marketplace dimensions to a price per unit")
        }
        let perUnit = try objectValue(perUnitValue, "\(path).perUnit")
        guard !perUnit.members.isEmpty else {
            throw Failure(path: "\(path).perUnit", reason: "is empty; map marketplace dimensions to a price per unit, or leave prices out")
        }
        var result: [DisplayPrices.Entry] = []
        for member in perUnit.members {
            let memberPath = "\(path).perUnit.\(member.key)"
            guard dimensions.contains(member.key) else {
                let known = dimensions.map { "\"\($0)\"" }.joined(separator: ", ")
                throw Failure(
                    path: memberPath,
                    reason: "\"\(member.key)\" is not a dimension of this plan; prices are per marketplace dimension: \(known)")
            }
            result.append(DisplayPrices.Entry(dimension: member.key, price: try quantity(member.value, memberPath)))
        }
        return DisplayPrices(currency: currency, perUnit: result)
    }

    static func definition(_ object: JSONObject) throws(Failure) -> PlanDefined {
        guard let planValue = object["plan"] else {
            throw Failure(path: "value.plan", reason: "missing; give the plan as in SubscriptionPurchased, with billingDimensions")
        }
        let plan = try plan(try objectValue(planValue, "value.plan"), "value.plan")
        guard plan.planId.utf8.count <= Message.maximumIdLength else {
            throw Failure(path: "value.plan.planId", reason: "a catalog plan's id must be at most \(Message.maximumIdLength) bytes")
        }
        var version: Int?
        if let value = object["version"], value != .null {
            guard let number = value.intValue, number >= 1 else {
                throw Failure(path: "value.version", reason: "must be a version number of at least 1 (ingest writes it)")
            }
            version = number
        }
        return PlanDefined(plan: plan, version: version)
    }

    static func dimension(_ object: JSONObject, _ path: String) throws(Failure) -> BillingDimension {
        let type = try string(object, "type", path)
        switch type {
        case "simple":
            let dimension = try string(object, "dimension", path)
            var included = IncludedQuantity.finite(.zero)
            if let includedValue = object["included"], includedValue != .null {
                if includedValue.stringValue == "Infinite" {
                    included = .infinite
                } else {
                    included = .finite(try quantity(includedValue, "\(path).included"))
                }
            }
            var aggregation = Aggregation.sum
            if let name = try optionalString(object, "aggregation", path) {
                guard let known = Aggregation(rawValue: name) else {
                    throw Failure(
                        path: "\(path).aggregation", reason: "unknown aggregation \"\(name)\"; expected \"sum\", \"max\" or \"last\"")
                }
                aggregation = known
            }
            return .simple(dimension: dimension, included: included, aggregation: aggregation)
        case "waterfall":
            guard let tiersValue = object["tiers"] else { throw Failure(path: "\(path).tiers", reason: "missing") }
            guard let tiers = tiersValue.arrayValue, !tiers.isEmpty else {
                throw Failure(path: "\(path).tiers", reason: "must be a non-empty array of {\"dimension\", \"threshold\"}")
            }
            var result: [WaterfallTier] = []
            for (index, tierValue) in tiers.enumerated() {
                let tierPath = "\(path).tiers[\(index)]"
                let tier = try objectValue(tierValue, tierPath)
                let dimension = try string(tier, "dimension", tierPath)
                guard let threshold = tier["threshold"] else { throw Failure(path: "\(tierPath).threshold", reason: "missing") }
                result.append(WaterfallTier(dimension: dimension, threshold: try quantity(threshold, "\(tierPath).threshold")))
            }
            return .waterfall(tiers: result)
        default:
            throw Failure(path: "\(path).type", reason: "unknown dimension type \"\(type)\"; expected \"simple\" or \"waterfall\"")
        }
    }

    static func usage(_ object: JSONObject) throws(Failure) -> UsageReported {
        let resource = try resource(object, "value")
        let time = try timestamp(object, "timestamp", "value")
        let meterName = try string(object, "meterName", "value")
        guard let quantityValue = object["quantity"] else { throw Failure(path: "value.quantity", reason: "missing") }
        let quantity = try quantity(quantityValue, "value.quantity")
        var properties: [String: String] = [:]
        if let propertiesValue = object["properties"], propertiesValue != .null {
            let map = try objectValue(propertiesValue, "value.properties")
            for member in map.members {
                guard let text = member.value.stringValue else {
                    throw Failure(
                        path: "value.properties.\(member.key)", reason: "property values must be strings, got \(member.value.typeName)")
                }
                properties[member.key] = text
            }
        }
        return UsageReported(resource: resource, timestamp: time, meterName: meterName, quantity: quantity, properties: properties)
    }

    static func submitted(_ object: JSONObject) throws(Failure) -> UsageSubmittedToAPI {
        guard let resultValue = object["result"] else { throw Failure(path: "value.result", reason: "missing") }
        let result = try objectValue(resultValue, "value.result")
        let path = "value.result"
        let resource = try resource(result, path)
        let status = try string(result, "status", path)
        var effectiveStart: Timestamp?
        if result["effectiveStartTime"] != nil { effectiveStart = try timestamp(result, "effectiveStartTime", path) }
        var quantity: Quantity?
        if let quantityValue = result["quantity"] { quantity = try self.quantity(quantityValue, "\(path).quantity") }
        return UsageSubmittedToAPI(
            resource: resource, status: status, planId: try optionalString(result, "planId", path),
            dimension: try optionalString(result, "dimension", path), effectiveStartTime: effectiveStart,
            quantity: quantity, value: object)
    }

    static func partition(_ object: JSONObject, _ path: String) throws(Failure) -> Int {
        guard let value = object["partitionId"] else { throw Failure(path: "\(path).partitionId", reason: "missing") }
        let text: String?
        switch value {
        case .string(let literal): text = literal
        case .number(let literal): text = literal
        default: text = nil
        }
        guard let text, let partition = Int(text), partition >= 0 else {
            throw Failure(path: "\(path).partitionId", reason: "must be a partition number such as \"0\"")
        }
        return partition
    }

    static func removal(_ object: JSONObject) throws(Failure) -> RemoveUnprocessedMessages {
        let partition = try partition(object, "value")
        func sequence(_ key: String) throws(Failure) -> Int64? {
            guard let value = object[key] else { return nil }
            guard let number = value.intValue, number >= 0 else {
                throw Failure(path: "value.\(key)", reason: "must be a non-negative sequence number")
            }
            return Int64(number)
        }
        if let before = try sequence("beforeIncluding") {
            return RemoveUnprocessedMessages(partition: partition, selection: .beforeIncluding(before))
        }
        if let exactly = try sequence("exactly") {
            return RemoveUnprocessedMessages(partition: partition, selection: .exactly(exactly))
        }
        if object["all"] != nil { return RemoveUnprocessedMessages(partition: partition, selection: .all) }
        throw Failure(path: "value", reason: "give one of \"beforeIncluding\": n, \"exactly\": n or \"all\": \"all\"")
    }

    static func ping(_ object: JSONObject) throws(Failure) -> Ping {
        let partition = try partition(object, "value")
        var localTime: Timestamp?
        if object["localTime"] != nil { localTime = try timestamp(object, "localTime", "value") }
        let reason = try optionalString(object, "reason", "value") ?? "ping"
        var attribution: Attribution?
        if let mode = try optionalString(object, "attribution", "value") {
            switch mode {
            case "enqueued": attribution = .enqueued
            case "event":
                guard let seconds = object["lateGraceSeconds"]?.intValue, seconds >= 0,
                    Int64(seconds) * 1_000_000 <= Attribution.maximumLateGrace
                else {
                    throw Failure(
                        path: "value.lateGraceSeconds",
                        reason: "event-time attribution needs its grace in whole seconds, 0 to \(Attribution.maximumLateGrace / 1_000_000)")
                }
                attribution = .event(lateGrace: Int64(seconds) * 1_000_000)
            default:
                throw Failure(path: "value.attribution", reason: "unknown attribution \"\(mode)\"; expected \"enqueued\" or \"event\"")
            }
        }
        // Informational only: a sender that is no string is ignored, as before it was read at all.
        let sender = object["sender"]?.stringValue
        return Ping(partition: partition, localTime: localTime, reason: reason, attribution: attribution, sender: sender)
    }

    static func planChange(_ object: JSONObject) throws(Failure) -> PlanChanged {
        let resource = try resource(object, "value")
        guard let planValue = object["plan"] else {
            throw Failure(path: "value.plan", reason: "missing; give the new plan as in SubscriptionPurchased")
        }
        return PlanChanged(resource: resource, plan: try plan(try objectValue(planValue, "value.plan"), "value.plan", reference: true))
    }

    static func void(_ object: JSONObject) throws(Failure) -> UsageVoided {
        guard let idsValue = object["ids"] else {
            throw Failure(path: "value.ids", reason: "missing; name the usage to void by the idempotency keys (ids) it was sent with")
        }
        guard let list = idsValue.arrayValue, !list.isEmpty, list.count <= UsageVoided.maximumIds else {
            throw Failure(path: "value.ids", reason: "must be an array of 1 to \(UsageVoided.maximumIds) idempotency keys")
        }
        var ids: [String] = []
        for (index, value) in list.enumerated() {
            guard let key = value.stringValue, !key.isEmpty, key.utf8.count <= Message.maximumIdLength else {
                throw Failure(
                    path: "value.ids[\(index)]",
                    reason: "must be an idempotency key: a non-empty string of at most \(Message.maximumIdLength) bytes")
            }
            guard !ids.contains(key) else { throw Failure(path: "value.ids[\(index)]", reason: "\"\(key)\" is named twice") }
            ids.append(key)
        }
        var reason: String?
        if let value = object["reason"], value != .null {
            guard let text = value.stringValue, text.utf8.count <= UsageVoided.maximumReasonLength else {
                throw Failure(path: "value.reason", reason: "must be a string of at most \(UsageVoided.maximumReasonLength) bytes")
            }
            reason = text
        }
        var voided: VoidedUsage?
        if let value = object["voided"], value != .null {
            let attached = try objectValue(value, "value.voided")
            guard ids.count == 1 else { throw Failure(path: "value.voided", reason: "a record voids one usage: give one id with it") }
            guard let sequence = attached["sequence"]?.intValue, sequence >= 0 else {
                throw Failure(path: "value.voided.sequence", reason: "must be a sequence number")
            }
            let time = try timestamp(attached, "enqueuedTime", "value.voided")
            guard let event = attached["event"] else { throw Failure(path: "value.voided.event", reason: "missing") }
            let message: Message
            do {
                message = try self.message(event)
            } catch {
                throw Failure(path: "value.voided.event" + (error.path.isEmpty ? "" : "." + error.path), reason: error.reason)
            }
            guard case .usageReported(let usage) = message.body, message.id == ids[0] else {
                throw Failure(path: "value.voided.event", reason: "must be the UsageReported sent with id \"\(ids[0])\"")
            }
            voided = VoidedUsage(sequence: UInt64(sequence), enqueuedTime: time, usage: usage)
        }
        return UsageVoided(ids: ids, reason: reason, voided: voided)
    }
}
