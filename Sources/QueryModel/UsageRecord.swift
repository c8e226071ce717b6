public import Wire

/// One closed hour of one meter of one subscription on one marketplace dimension: all its usage and
/// the overage among it (DESIGN.md §3.4 `usage`), for billing adapters paging through history.
public struct UsageRecord: Sendable, Equatable {
    public var partition: Int
    /// The record's place among the usage records its partition produced (for replay after a restart).
    public var ordinal: UInt64
    /// The subscription's key in its partition.
    public var subscription: String
    public var resource: ResourceName
    public var planId: String
    public var meterName: String
    public var dimension: String
    public var hour: Timestamp
    /// All usage of the hour on this dimension.
    public var quantity: Quantity
    /// The overage among it, reported to the marketplace in the slot `(resource, dimension, hour)`.
    public var billed: Quantity
    /// Overage among it that a credit absorbed instead of being reported.
    public var netted = Quantity.zero
    /// Usage of the meter (of any earlier hour) voided by voids recorded in this hour.
    public var voided = Quantity.zero
    /// The overage those voids took back: out of slots not reported yet, or as a credit.
    public var reversed = Quantity.zero

    public init(
        partition: Int, ordinal: UInt64, subscription: String, resource: ResourceName, planId: String, meterName: String,
        dimension: String, hour: Timestamp, quantity: Quantity, billed: Quantity
    ) {
        self.partition = partition
        self.ordinal = ordinal
        self.subscription = subscription
        self.resource = resource
        self.planId = planId
        self.meterName = meterName
        self.dimension = dimension
        self.hour = hour
        self.quantity = quantity
        self.billed = billed
    }

    /// The record's fields as the usage journal stores them (the journal puts its id, the
    /// partition and the ordinal first): what `appendFields` writes, read back.
    public var fields: JSONObject {
        var bytes: [UInt8] = [UInt8(ascii: "{")]
        appendFields(to: &bytes)
        bytes[1] = UInt8(ascii: " ")  // the first member's comma
        bytes.append(UInt8(ascii: "}"))
        guard let object = (try? JSONParser.parse(bytes))?.objectValue else {
            preconditionFailure("a usage record's fields are not a JSON object: \(String(decoding: bytes, as: UTF8.self))")
        }
        return object
    }

    /// The record's fields, each member after a comma, written straight into `out` as `JSONWriter`
    /// writes them: the usage journal writes a line per record, and building a JSON tree first
    /// was most of what a line cost. Only figures above zero among `netted`, `voided` and
    /// `reversed` are written (records of hours without credits or voids keep their shape), and
    /// `saturated` names the figures at the largest quantity.
    public func appendFields(to out: inout [UInt8]) { appendMembers(.full, to: &out) }

    /// The record's fields as the usage journal writes them since the compact form (each member
    /// after a comma): the same figures as `appendFields` under one-letter names, the hour in Unix
    /// seconds, and the subscription's key only when it is not the resource's own name
    /// (`resourceId`, else `resourceUri`). A catch-up journals a line for nearly every
    /// subscription-meter at each hour's close; the full form's 230-odd bytes a line were a tenth
    /// of meter-query's CPU. `expandingCompact` reads it back into the full form.
    public func appendCompactFields(to out: inout [UInt8]) { appendMembers(.compact, to: &out) }

    /// The names a form gives the record's members, in the order both write them.
    struct MemberNames {
        var subscription, resourceId, resourceUri, planId, meterName, dimension, hour: StaticString
        var quantity, billed, netted, voided, reversed, saturated: StaticString
        /// The compact form: the subscription's key only when it is not the resource's own name,
        /// the hour in Unix seconds (when a whole second).
        var isCompact: Bool

        static let full = MemberNames(
            subscription: "subscription", resourceId: "resourceId", resourceUri: "resourceUri", planId: "planId",
            meterName: "meterName", dimension: "dimension", hour: "hour", quantity: "quantity", billed: "billed", netted: "netted",
            voided: "voided", reversed: "reversed", saturated: "saturated", isCompact: false)
        static let compact = MemberNames(
            subscription: "k", resourceId: "r", resourceUri: "u", planId: "p", meterName: "m", dimension: "d", hour: "h",
            quantity: "q", billed: "b", netted: "n", voided: "v", reversed: "x", saturated: "s", isCompact: true)

        var all: [StaticString] {
            [
                subscription, resourceId, resourceUri, planId, meterName, dimension, hour, quantity, billed, netted, voided, reversed,
                saturated,
            ]
        }
    }

    private func appendMembers(_ names: MemberNames, to out: inout [UInt8]) {
        func key(_ name: StaticString) {
            out.append(UInt8(ascii: ","))
            out.append(UInt8(ascii: "\""))
            out.append(contentsOf: UnsafeBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount))
            out.append(contentsOf: #"":"#.utf8)
        }
        func string(_ name: StaticString, _ value: String) {
            key(name)
            JSONWriter.writeString(value, to: &out)
        }
        func quantity(_ name: StaticString, _ value: Quantity) {
            key(name)
            value.appendDescription(to: &out)
        }
        if !names.isCompact || subscription != resource.resourceId ?? resource.resourceUri { string(names.subscription, subscription) }
        if let resourceId = resource.resourceId { string(names.resourceId, resourceId) }
        if let resourceUri = resource.resourceUri { string(names.resourceUri, resourceUri) }
        string(names.planId, planId)
        string(names.meterName, meterName)
        string(names.dimension, dimension)
        key(names.hour)
        if names.isCompact && hour.microseconds % 1_000_000 == 0 {
            JSONWriter.writeInteger(Int(hour.microseconds / 1_000_000), to: &out)
        } else {
            // Never a fraction of a second for an hour; kept exact all the same.
            out.append(UInt8(ascii: "\""))
            hour.appendISO8601(to: &out)  // digits, '-', ':', 'T', '.' and 'Z': nothing to escape
            out.append(UInt8(ascii: "\""))
        }
        quantity(names.quantity, self.quantity)
        quantity(names.billed, billed)
        if netted > .zero { quantity(names.netted, netted) }
        if voided > .zero { quantity(names.voided, voided) }
        if reversed > .zero { quantity(names.reversed, reversed) }
        // Checked before any array is made: nearly every line has no saturated figure.
        guard self.quantity.isSaturated || billed.isSaturated || voided.isSaturated else { return }
        let saturated = [("quantity", self.quantity), ("billed", billed), ("voided", voided)].filter { $0.1.isSaturated }
        key(names.saturated)
        JSONWriter.write(.array(saturated.map { .string($0.0) }), to: &out)
    }
}

extension UsageRecord {
    /// The short names of the compact form, each with its full name, in the order both forms write them.
    static let compactNames: [(short: String, full: String)] = zip(MemberNames.compact.all, MemberNames.full.all).map {
        ($0.description, $1.description)
    }

    /// A usage journal line in the compact form (`{"id":…,"closed":…,` then `appendCompactFields`'
    /// members) as the full form's line of the same record: `{"id","partition","ordinal","closed",`
    /// then `appendFields`' members, in that order. Nil when `line` is not in the compact form
    /// (the full form is returned as it is by the caller), or a member is missing or malformed.
    public static func expandingCompact(_ line: JSONObject, partition: Int) -> JSONObject? {
        guard let id = line["id"], let closed = line["closed"], let hour = line["h"].flatMap(Self.hour),
            let name = (line["r"] ?? line["u"])?.stringValue
        else { return nil }
        var members: [JSONObject.Member] = [
            .init("id", id), .init("partition", .number(String(partition))), .init("ordinal", id), .init("closed", closed),
            .init("subscription", line["k"] ?? .string(name)),
        ]
        members.reserveCapacity(4 + line.members.count)
        for (short, full) in compactNames.dropFirst() {
            guard let value = line[short] else { continue }
            members.append(.init(full, short == "h" ? .string(hour.iso8601) : value))
        }
        return JSONObject(members)
    }

    /// The hour of a compact line: Unix seconds, or (not a whole second) the full form's text.
    static func hour(_ value: JSONValue) -> Timestamp? {
        switch value {
        case .number(let text):
            guard let seconds = Int64(text), seconds.magnitude < 1 << 40 else { return nil }
            return Timestamp(microseconds: seconds * 1_000_000)
        case .string(let text): return Timestamp(iso8601: text)
        default: return nil
        }
    }
}

/// One marketplace outcome the submitter appended to the log: the marketplace ledger (`submissions`).
public struct SubmissionRecord: Sendable, Equatable {
    public var partition: Int
    public var ordinal: UInt64
    /// The outcome record's place in the log, and when ingest recorded it.
    public var sequence: UInt64
    public var recordedAt: Timestamp
    public var resource: ResourceName
    public var planId: String?
    public var dimension: String?
    public var hour: Timestamp?
    public var quantity: Quantity?
    /// The marketplace's status (`Accepted`, `Duplicate`, `Expired`, `ResourceNotFound`, ...).
    public var status: String
    /// What the outcome did to the pending item: `Accepted`, `Conflict`, `Expired`, a rejecting
    /// status, or nil when it matched no pending item (a resend, or a status that is retried).
    public var settled: String?
    /// For a `Refund` line: the start of the billing period whose credit was left unused.
    public var periodStart: Timestamp?
    /// For a conflict: the quantity the marketplace holds for the slot.
    public var acceptedQuantity: Quantity?
    /// The marketplace's explanation, when it gave one.
    public var reason: String?

    /// The record's fields as the submissions journal stores them (the journal puts its id, the
    /// partition and the ordinal first).
    public var fields: JSONObject {
        var members: [JSONObject.Member] = [
            .init("sequence", .number(String(sequence))), .init("recordedAt", .string(recordedAt.iso8601)),
        ]
        members += resource.members
        if let planId { members.append(.init("planId", .string(planId))) }
        if let dimension { members.append(.init("dimension", .string(dimension))) }
        if let hour { members.append(.init("effectiveStartTime", .string(hour.iso8601))) }
        if let quantity { members.append(.init("quantity", quantity.json)) }
        members.append(.init("status", .string(status)))
        members.append(.init("settled", settled.map { .string($0) } ?? .null))
        if let acceptedQuantity { members.append(.init("acceptedQuantity", acceptedQuantity.json)) }
        if let reason { members.append(.init("reason", .string(reason))) }
        if let periodStart { members.append(.init("periodStart", .string(periodStart.iso8601))) }
        return JSONObject(members)
    }

    /// A line no outcome made (`Credited`, `Refund`): recorded by the record at `sequence`.
    init(
        partition: Int, ordinal: UInt64, sequence: UInt64, recordedAt: Timestamp, resource: ResourceName, planId: String,
        dimension: String, quantity: Quantity, status: String, periodStart: Timestamp?
    ) {
        self.partition = partition
        self.ordinal = ordinal
        self.sequence = sequence
        self.recordedAt = recordedAt
        self.resource = resource
        self.planId = planId
        self.dimension = dimension
        self.quantity = quantity
        self.status = status
        self.settled = status
        self.periodStart = periodStart
    }

    init(
        partition: Int, ordinal: UInt64, sequence: UInt64, recordedAt: Timestamp, outcome: UsageSubmittedToAPI, settled: String?,
        quantity: Quantity?, acceptedQuantity: Quantity?, reason: String?
    ) {
        self.partition = partition
        self.ordinal = ordinal
        self.sequence = sequence
        self.recordedAt = recordedAt
        self.resource = outcome.resource
        self.planId = outcome.planId
        self.dimension = outcome.dimension
        self.hour = outcome.effectiveStartTime?.hourStart
        self.quantity = quantity ?? outcome.quantity
        self.status = outcome.status
        self.settled = settled
        self.acceptedQuantity = acceptedQuantity
        self.reason = reason
    }
}
