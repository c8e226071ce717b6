public import Wire

/// One usage day of one resource and dimension, as one side of a reconciliation sees it.
public struct LedgerDay: Sendable, Equatable {
    /// Midnight UTC of the usage day.
    public var usageDate: Timestamp
    public var resource: ResourceName
    public var planId: String
    public var dimension: String
    /// What was accepted: our ledger's total, or the marketplace's `submittedQuantity`.
    public var quantity: Quantity
    /// Events behind it (our accepted items, or the marketplace's `submittedCount`).
    public var count: Int
    /// The marketplace's side only: its `processedQuantity` and `reconStatus`.
    public var processedQuantity: Quantity?
    public var reconStatus: String?

    public init(
        usageDate: Timestamp, resource: ResourceName, planId: String, dimension: String, quantity: Quantity, count: Int,
        processedQuantity: Quantity? = nil, reconStatus: String? = nil
    ) {
        self.usageDate = usageDate
        self.resource = resource
        self.planId = planId
        self.dimension = dimension
        self.quantity = quantity
        self.count = count
        self.processedQuantity = processedQuantity
        self.reconStatus = reconStatus
    }

    /// What both sides are matched on: the day, the resource (without case, as the marketplace
    /// compares them) and the dimension.
    struct Key: Hashable, Comparable {
        var day: Timestamp
        var resource: String
        var dimension: String

        static func < (lhs: Key, rhs: Key) -> Bool { (lhs.day, lhs.resource, lhs.dimension) < (rhs.day, rhs.resource, rhs.dimension) }
    }

    var key: Key {
        Key(day: usageDate, resource: (resource.resourceId ?? resource.resourceUri ?? "").lowercased(), dimension: dimension)
    }
}

/// A difference between our accepted ledger and the marketplace's usage events for one day,
/// resource and dimension.
public struct ReconciliationMismatch: Sendable, Equatable {
    public enum Kind: String, Sendable {
        /// We recorded it accepted; the marketplace has nothing for the day.
        case missingAtMarketplace
        /// The marketplace holds usage we never recorded as accepted.
        case unknownToUs
        /// Both have it, with different quantities.
        case quantity
        /// The quantities agree, but the marketplace's own processing flags it (`Rejected`, `Mismatch`).
        case marketplaceStatus
    }

    public var kind: Kind
    public var ours: LedgerDay?
    public var theirs: LedgerDay?

    /// The day, resource and dimension, from whichever side has them.
    public var day: LedgerDay { (ours ?? theirs)! }

    public var json: JSONValue {
        let day = self.day
        var members: [JSONObject.Member] = [
            .init("kind", .string(kind.rawValue)), .init("usageDate", .string(String(day.usageDate.iso8601.prefix(10)))),
        ]
        if let id = day.resource.resourceId { members.append(.init("resourceId", .string(id))) }
        if let uri = day.resource.resourceUri { members.append(.init("resourceUri", .string(uri))) }
        members += [.init("planId", .string(day.planId)), .init("dimension", .string(day.dimension))]
        members.append(.init("ours", ours.map { $0.quantity.json } ?? .null))
        members.append(.init("submitted", theirs.map { $0.quantity.json } ?? .null))
        members.append(.init("processed", theirs?.processedQuantity.map { $0.json } ?? .null))
        members.append(.init("reconStatus", theirs?.reconStatus.map { .string($0) } ?? .null))
        return .object(JSONObject(members))
    }

    /// One line for people.
    public var text: String {
        let day = self.day
        let name = day.resource.resourceId ?? day.resource.resourceUri ?? "?"
        let head = "\(day.usageDate.iso8601.prefix(10)) \(name) \(day.dimension)"
        switch kind {
        case .missingAtMarketplace: return "\(head): we recorded \(ours?.quantity.description ?? "?") accepted; the marketplace has nothing"
        case .unknownToUs: return "\(head): the marketplace holds \(theirs?.quantity.description ?? "?") we never recorded as accepted"
        case .quantity:
            return
                "\(head): we recorded \(ours?.quantity.description ?? "?") accepted; the marketplace holds \(theirs?.quantity.description ?? "?")"
        case .marketplaceStatus:
            return
                "\(head): the marketplace reports \(theirs?.reconStatus ?? "?") (submitted \(theirs?.quantity.description ?? "?"), processed \(theirs?.processedQuantity?.description ?? "?"))"
        }
    }
}

/// The outcome of one reconciliation pass over the usage days `[from, to)`.
public struct ReconciliationReport: Sendable, Equatable {
    public var from: Timestamp
    public var to: Timestamp
    /// Days, resources and dimensions looked at (either side has them).
    public var checked: Int
    /// Of them, those where both sides agree.
    public var matched: Int
    /// Of the matched, those the marketplace has not processed yet (`Submitted`).
    public var pending: Int
    public var mismatches: [ReconciliationMismatch]
    /// When the pass ran (wall clock) and the log time our ledger was complete to.
    public var ranAt: Timestamp
    public var asOf: Timestamp?

    /// The marketplace statuses that are a problem even when the quantities agree.
    public static let troubledStatuses: Set<String> = ["Rejected", "Mismatch"]

    /// Compares `ours` with `theirs` (the marketplace's rows of the same days).
    public static func compare(
        ours: [LedgerDay], theirs: [LedgerDay], from: Timestamp, to: Timestamp, ranAt: Timestamp, asOf: Timestamp?
    ) -> ReconciliationReport {
        var mine: [LedgerDay.Key: LedgerDay] = [:]
        for day in ours where day.usageDate >= from && day.usageDate < to {
            if var known = mine[day.key] {
                known.quantity = known.quantity.saturatingAdding(day.quantity)
                known.count += day.count
                mine[day.key] = known
            } else {
                mine[day.key] = day
            }
        }
        var market: [LedgerDay.Key: LedgerDay] = [:]
        for day in theirs where day.usageDate >= from && day.usageDate < to {
            if var known = market[day.key] {
                // The marketplace answers per plan: one resource on two plans the same day adds up.
                known.quantity = known.quantity.saturatingAdding(day.quantity)
                known.count += day.count
                known.processedQuantity = (known.processedQuantity ?? .zero).saturatingAdding(day.processedQuantity ?? .zero)
                if let status = day.reconStatus, troubledStatuses.contains(status) || known.reconStatus == nil {
                    known.reconStatus = status
                }
                market[day.key] = known
            } else {
                market[day.key] = day
            }
        }
        var report = ReconciliationReport(from: from, to: to, checked: 0, matched: 0, pending: 0, mismatches: [], ranAt: ranAt, asOf: asOf)
        for key in Set(mine.keys).union(market.keys).sorted() {
            report.checked += 1
            let ours = mine[key]
            let theirs = market[key]
            switch (ours, theirs) {
            case (let ours?, nil):
                if ours.quantity > .zero {
                    report.mismatches.append(ReconciliationMismatch(kind: .missingAtMarketplace, ours: ours, theirs: nil))
                } else {
                    report.matched += 1
                }
            case (nil, let theirs?):
                report.mismatches.append(ReconciliationMismatch(kind: .unknownToUs, ours: nil, theirs: theirs))
            case (let ours?, let theirs?):
                if ours.quantity != theirs.quantity {
                    report.mismatches.append(ReconciliationMismatch(kind: .quantity, ours: ours, theirs: theirs))
                } else if let status = theirs.reconStatus, troubledStatuses.contains(status) {
                    report.mismatches.append(ReconciliationMismatch(kind: .marketplaceStatus, ours: ours, theirs: theirs))
                } else {
                    report.matched += 1
                    if theirs.reconStatus == "Submitted" { report.pending += 1 }
                }
            case (nil, nil):
                break
            }
        }
        return report
    }

    /// The report as the submitter's status and `meterctl reconcile --json` show it, with at
    /// most `limit` mismatches listed (`mismatches` counts them all).
    public func json(limit: Int = Int.max) -> JSONValue {
        [
            "ranAt": .string(ranAt.iso8601), "from": .string(String(from.iso8601.prefix(10))),
            "to": .string(String(to.adding(microseconds: -Timestamp.microsecondsPerDay).iso8601.prefix(10))),
            "asOf": asOf.map { .string($0.iso8601) } ?? .null, "checked": .number(String(checked)), "matched": .number(String(matched)),
            "pending": .number(String(pending)), "mismatches": .number(String(mismatches.count)),
            "items": .array(mismatches.prefix(limit).map(\.json)),
        ]
    }
}
