import Billing
import Crypto
import Wire

/// One partition's notifications, derived from its records alone: the billing fold (the same as
/// the aggregator's, so the same periods and consumption) plus what only notifications need: the
/// thresholds already reached in each subscription's current period, and the items waiting to be
/// reported, watched for the at-risk mark.
///
/// Pure: `apply` takes a record and the thresholds wanted, and returns the notifications the
/// record caused, each with an id made from what it is about (never from when it was computed), so
/// folding the same records again gives the same ids, and a receiver that keeps the ids it has seen
/// never acts twice. A threshold fires at most once per subscription, meter, billing period and
/// plan: the fired record is part of the state (and of its snapshot), and a new period or a new plan
/// starts with none, so a threshold reached early in a new period fires again.
struct NotificationFold: Sendable {
    private(set) var state: PartitionState
    /// Per subscription key: the marks reached in its current period under its current plan.
    private(set) var fired: [String: FiredMarks] = [:]
    /// Items ready to report, by slot, until they settle or are announced at risk.
    private(set) var watched: [Slot: Quantity] = [:]
    /// The earliest time a watched item reaches the at-risk age (nil: none watched).
    private var nextAtRisk: Timestamp?

    /// An item whose hour is this old and still not reported is announced at risk: the aggregator's
    /// status calls it at risk from the same age, 4 hours before the marketplace refuses it.
    static let atRiskMicroseconds: Int64 = 20 * Timestamp.microsecondsPerHour
    /// The marketplace refuses an item whose hour is older than this.
    static let windowMicroseconds: Int64 = 24 * Timestamp.microsecondsPerHour

    struct FiredMarks: Sendable, Equatable {
        var periodStart: Timestamp
        var planId: String
        var marks: Set<MeterMark> = []
    }

    struct MeterMark: Hashable, Sendable {
        var meterName: String
        var mark: String
    }

    struct Slot: Hashable, Sendable {
        var subscription: String
        var dimension: String
        var hour: Timestamp
    }

    var partition: Int { state.partition }
    var lastSequence: UInt64? { state.lastSequence }

    /// An empty partition `partition`.
    init(partition: Int) {
        state = PartitionState(partition: partition)
    }

    /// Folds `record`; returns the notifications it caused, in order.
    mutating func apply(_ record: BillingRecord, rules: ThresholdRules) -> [JSONObject] {
        if let last = state.lastSequence, record.sequence <= last { return [] }
        // The plan a live subscription is on before the record, for the plan change it may cause
        // (a PlanChanged message, or a purchase with another plan on the same schedule).
        var before: (key: String, planId: String, resource: ResourceName)?
        if record.message.type != .usageReported,
            let resource = record.message.resource, let key = state.key(named: resource),
            let terms = state.terms(ofKey: key), !terms.deleted
        {
            before = (key, terms.planId, terms.resource)
        }
        // As the read model does (`PartitionView.apply`): the effect list is taken out of the state
        // and given back emptied, so its storage serves the next record (a new list for each cost
        // an allocation).
        if state.effects == nil { state.effects = [] }
        state.apply(record)
        var effects = state.effects.take() ?? []
        defer {
            effects.removeAll(keepingCapacity: true)
            state.effects = effects
        }
        var out: [JSONObject] = []
        for effect in effects {
            switch effect {
            case .purchased(let key):
                fired[key] = nil
                if let terms = state.terms(ofKey: key) {
                    out.append(
                        notification(
                            .subscriptionPurchased, key: "purchased/\(partition)/\(record.sequence)/\(key)", record: record,
                            resource: terms.resource, planId: terms.planId, [.init("period", Self.periodJSON(terms.period))]))
                }
            case .deleted(let key):
                fired[key] = nil
                // A subscription with nothing outstanding is forgotten in the same step: its names
                // and plan are the ones it had before the record.
                let terms = state.terms(ofKey: key).map { ($0.resource, $0.planId) } ?? before.map { ($0.resource, $0.planId) }
                out.append(
                    notification(
                        .subscriptionDeleted, key: "deleted/\(partition)/\(record.sequence)/\(key)", record: record,
                        resource: terms?.0 ?? ResourceName(resourceId: key), planId: terms?.1, []))
            case .removed(let key):
                fired[key] = nil
            case .usage(let key, let meterName, _, _, _, _, _):
                if !rules.isEmpty { out += thresholds(key: key, meterName: meterName, record: record, rules: rules) }
            case .ready(let key, let dimension, let hour, let quantity):
                let slot = Slot(subscription: key, dimension: dimension, hour: hour)
                watched[slot] = (watched[slot] ?? .zero).saturatingAdding(quantity)
                let due = hour.adding(microseconds: Self.atRiskMicroseconds)
                nextAtRisk = min(nextAtRisk ?? due, due)
            case .settled(let key, let dimension, let hour, let quantity, let status, let acceptedQuantity):
                watched[Slot(subscription: key, dimension: dimension, hour: hour)] = nil
                if let settled = settlement(
                    key: key, dimension: dimension, hour: hour, quantity: quantity, status: status, acceptedQuantity: acceptedQuantity,
                    record: record)
                {
                    out.append(settled)
                }
            case .planChanged(let key, _):
                guard let terms = state.terms(ofKey: key) else { break }
                fired[key] = nil
                let previous = before.flatMap { $0.key == key ? $0.planId : nil }
                out.append(
                    notification(
                        .planChanged, key: "planChanged/\(partition)/\(record.sequence)/\(key)", record: record, resource: terms.resource,
                        planId: terms.planId,
                        [.init("previousPlanId", previous.map(JSONValue.string) ?? .null), .init("period", Self.periodJSON(terms.period))]))
            default:
                break
            }
        }
        if let due = nextAtRisk, let now = state.time, now >= due { out += atRisk(now: now, record: record) }
        return out
    }

    // MARK: - Thresholds

    private mutating func thresholds(key: String, meterName: String, record: BillingRecord, rules: ThresholdRules) -> [JSONObject] {
        guard let terms = state.terms(ofKey: key) else { return [] }
        let names = [terms.resource.resourceId, terms.resource.resourceUri].compactMap { $0 }
        let marks = rules.marks(names: names, planId: terms.planId, meterName: meterName)
        guard !marks.isEmpty, let rate = state.runRate(ResourceName(resourceId: key)),
            let meter = rate.meters.first(where: { $0.meterName == meterName })
        else { return [] }
        var reached = fired[key] ?? FiredMarks(periodStart: terms.period.start, planId: terms.planId)
        if reached.periodStart != terms.period.start || reached.planId != terms.planId {
            // A new billing period (or plan): every threshold is armed again.
            reached = FiredMarks(periodStart: terms.period.start, planId: terms.planId)
        }
        var out: [JSONObject] = []
        for mark in marks {
            let fired = MeterMark(meterName: meterName, mark: mark.description)
            guard !reached.marks.contains(fired), let level = mark.level(included: meter.included), meter.consumed >= level else {
                continue
            }
            reached.marks.insert(fired)
            var members: [JSONObject.Member] = [
                .init("meterName", .string(meterName)), .init("dimension", .string(meter.dimension)), .init("threshold", mark.json),
                .init("level", level.json), .init("consumed", meter.consumed.json),
            ]
            switch meter.included {
            case .finite(let included): members.append(.init("included", included.json))
            case .infinite: members.append(.init("included", "Infinite"))
            }
            members.append(.init("period", Self.periodJSON(terms.period)))
            out.append(
                notification(
                    .usageThreshold,
                    key: "threshold/\(key)/\(meterName)/\(terms.period.start.iso8601)/\(terms.planId)/\(mark.description)",
                    record: record, resource: terms.resource, planId: terms.planId, members))
        }
        if !reached.marks.isEmpty { fired[key] = reached }
        return out
    }

    // MARK: - Marketplace outcomes

    private func settlement(
        key: String, dimension: String, hour: Timestamp, quantity: Quantity, status: String, acceptedQuantity: Quantity?,
        record: BillingRecord
    ) -> JSONObject? {
        guard status != "Accepted" && status != "Expired" else { return nil }
        let terms = state.terms(ofKey: key)
        let resource = terms?.resource ?? ResourceName(resourceId: key)
        var members: [JSONObject.Member] = [
            .init("dimension", .string(dimension)), .init("hour", .string(hour.iso8601)), .init("quantity", quantity.json),
        ]
        if status == "Conflict" {
            members.append(.init("acceptedQuantity", acceptedQuantity.map(\.json) ?? .null))
            return notification(
                .marketplaceConflict, key: "conflict/\(key)/\(dimension)/\(hour.iso8601)", record: record, resource: resource,
                planId: terms?.planId, members)
        }
        members.append(.init("status", .string(status)))
        if let rejected = state.rejected.last, rejected.item.dimension == dimension, rejected.item.effectiveStartTime == hour {
            members.append(.init("reason", .string(rejected.reason)))
        }
        return notification(
            .marketplaceRejected, key: "rejected/\(key)/\(dimension)/\(hour.iso8601)", record: record, resource: resource,
            planId: terms?.planId, members)
    }

    /// Announces the watched items that reached the at-risk age by `now`, once each.
    private mutating func atRisk(now: Timestamp, record: BillingRecord) -> [JSONObject] {
        var due: [(Slot, Quantity)] = []
        var next: Timestamp?
        for (slot, quantity) in watched {
            let mark = slot.hour.adding(microseconds: Self.atRiskMicroseconds)
            if mark <= now {
                due.append((slot, quantity))
            } else {
                next = min(next ?? mark, mark)
            }
        }
        nextAtRisk = next
        due.sort { ($0.0.hour, $0.0.subscription, $0.0.dimension) < ($1.0.hour, $1.0.subscription, $1.0.dimension) }
        return due.map { slot, quantity in
            watched[slot] = nil
            let terms = state.terms(ofKey: slot.subscription)
            return notification(
                .marketplaceAtRisk, key: "atRisk/\(slot.subscription)/\(slot.dimension)/\(slot.hour.iso8601)", record: record,
                resource: terms?.resource ?? ResourceName(resourceId: slot.subscription), planId: terms?.planId,
                [
                    .init("dimension", .string(slot.dimension)), .init("hour", .string(slot.hour.iso8601)),
                    .init("quantity", quantity.json),
                    .init("ageHours", .number(String((now.microseconds - slot.hour.microseconds) / Timestamp.microsecondsPerHour))),
                    .init("refusedFrom", .string(slot.hour.adding(microseconds: Self.windowMicroseconds).iso8601)),
                ])
        }
    }

    // MARK: - Bodies

    /// A notification's body: `id`, `type`, `time` (the log time of the record that caused it),
    /// the subscription's names and plan, what is particular to the type, and where in the log.
    private func notification(
        _ type: NotificationType, key: String, record: BillingRecord, resource: ResourceName, planId: String?,
        _ members: [JSONObject.Member]
    ) -> JSONObject {
        var subscription: [JSONObject.Member] = []
        if let id = resource.resourceId { subscription.append(.init("resourceId", .string(id))) }
        if let uri = resource.resourceUri { subscription.append(.init("resourceUri", .string(uri))) }
        var all: [JSONObject.Member] = [
            .init("id", .string(Self.id(key))), .init("type", .string(type.rawValue)),
            .init("time", .string((state.time ?? record.enqueuedTime).iso8601)),
            .init("subscription", .object(JSONObject(subscription))),
        ]
        if let planId { all.append(.init("planId", .string(planId))) }
        all += members
        all.append(
            .init(
                "log",
                .object(
                    JSONObject([.init("partition", .number(String(partition))), .init("sequence", .number(String(record.sequence)))]))))
        return JSONObject(all)
    }

    /// `ntf_` and 32 hexadecimal digits of the SHA-256 of what the notification is about.
    static func id(_ key: String) -> String { "ntf_" + ByteText.hex(SHA256.hash(Array(key.utf8)).prefix(16)) }

    static func periodJSON(_ period: BillingPeriod) -> JSONValue {
        .object(JSONObject([.init("start", .string(period.start.iso8601)), .init("end", .string(period.end.iso8601))]))
    }

    // MARK: - Snapshots

    static let snapshotFormat = "metering-notifier-partition/1"

    /// The state and what notifications remember, as JSON.
    func snapshot() -> JSONValue {
        let firedJSON: [JSONValue] = fired.keys.sorted().map { key in
            let entry = fired[key]!
            let marks: [JSONValue] = entry.marks.sorted { ($0.meterName, $0.mark) < ($1.meterName, $1.mark) }.map {
                .object(JSONObject([.init("meterName", .string($0.meterName)), .init("mark", .string($0.mark))]))
            }
            return .object(
                JSONObject([
                    .init("subscription", .string(key)), .init("periodStart", .string(entry.periodStart.iso8601)),
                    .init("planId", .string(entry.planId)), .init("marks", .array(marks)),
                ]))
        }
        let watchedJSON: [JSONValue] = watched.sorted {
            ($0.key.hour, $0.key.subscription, $0.key.dimension) < ($1.key.hour, $1.key.subscription, $1.key.dimension)
        }
        .map { slot, quantity in
            .object(
                JSONObject([
                    .init("subscription", .string(slot.subscription)), .init("dimension", .string(slot.dimension)),
                    .init("hour", .string(slot.hour.iso8601)), .init("quantity", quantity.json),
                ]))
        }
        return .object(
            JSONObject([
                .init("format", .string(Self.snapshotFormat)), .init("billing", state.snapshot()), .init("fired", .array(firedJSON)),
                .init("watched", .array(watchedJSON)),
            ]))
    }

    /// Why a snapshot cannot be used.
    struct SnapshotFailure: Error, CustomStringConvertible {
        var description: String
    }

    /// The fold a snapshot holds.
    init(snapshot json: JSONValue) throws(SnapshotFailure) {
        guard json["format"]?.stringValue == Self.snapshotFormat, let billing = json["billing"] else {
            throw SnapshotFailure(description: "not a notifier snapshot of format \(Self.snapshotFormat)")
        }
        do {
            state = try PartitionState(snapshot: billing)
        } catch {
            throw SnapshotFailure(description: "\(error)")
        }
        for entry in json["fired"]?.arrayValue ?? [] {
            guard let key = entry["subscription"]?.stringValue,
                let start = entry["periodStart"]?.stringValue.flatMap({ Timestamp(iso8601: $0) }),
                let planId = entry["planId"]?.stringValue
            else { throw SnapshotFailure(description: "a fired-threshold entry is malformed") }
            var marks = FiredMarks(periodStart: start, planId: planId)
            for mark in entry["marks"]?.arrayValue ?? [] {
                guard let meterName = mark["meterName"]?.stringValue, let text = mark["mark"]?.stringValue else {
                    throw SnapshotFailure(description: "a fired mark is malformed")
                }
                marks.marks.insert(MeterMark(meterName: meterName, mark: text))
            }
            fired[key] = marks
        }
        for entry in json["watched"]?.arrayValue ?? [] {
            guard let key = entry["subscription"]?.stringValue, let dimension = entry["dimension"]?.stringValue,
                let hour = entry["hour"]?.stringValue.flatMap({ Timestamp(iso8601: $0) }), case .number(let text)? = entry["quantity"],
                let quantity = Quantity(exactly: text)
            else { throw SnapshotFailure(description: "a watched item is malformed") }
            watched[Slot(subscription: key, dimension: dimension, hour: hour)] = quantity
            let due = hour.adding(microseconds: Self.atRiskMicroseconds)
            nextAtRisk = min(nextAtRisk ?? due, due)
        }
    }
}
