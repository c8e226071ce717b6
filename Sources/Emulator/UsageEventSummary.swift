import HTTP
import Wire

/// One row of `GET /api/usageEvents`: the accepted usage of one resource, plan and dimension on
/// one UTC day, with the marketplace's processing of it (`reconStatus`, `processedQuantity`).
///
/// The emulator processes a day once its clock has passed the day's end: earlier days are
/// `Accepted` with everything processed, the current day is `Submitted` with nothing processed
/// yet, as the real service's analytics pipeline reports usage a day or more late. A planted
/// `Adjustment` (`POST /emulator/reconciliation`) overrides what a row says, so tests can make the
/// marketplace disagree with the ledger the submitter kept.
struct UsageEventSummary: Sendable, Equatable {
    var usageDate: Timestamp
    var resourceId: String?
    var resourceUri: String?
    var planId: String
    var dimension: String
    var submittedQuantity: Quantity
    var processedQuantity: Quantity
    var submittedCount: Int
    var reconStatus: String

    /// What identifies a row: the day, the resource (compared without case, as the slots are),
    /// and the dimension.
    struct Key: Hashable, Sendable {
        var day: Timestamp
        var resource: String
        var dimension: String
    }

    /// The reconciliation statuses the API documents.
    static let statuses = ["Submitted", "Accepted", "Rejected", "Mismatch", "TestHeaders", "DryRun"]

    /// A planted difference: the fields it replaces in the row of `key` (a row with nothing
    /// accepted is made up when `submittedQuantity` is given).
    struct Adjustment: Sendable, Equatable {
        var key: Key
        var resourceId: String?
        var resourceUri: String?
        var planId: String?
        var submittedQuantity: Quantity?
        var processedQuantity: Quantity?
        var reconStatus: String?

        /// Reads `{"resourceId"|"resourceUri", "dimension", "usageDate", "planId"?, "submittedQuantity"?,
        /// "processedQuantity"?, "reconStatus"?}`; the error says what is wrong.
        init(json: JSONValue) throws(HTTPError) {
            guard let object = json.objectValue else { throw HTTPError(400, "The body must be a JSON object.") }
            let known: Set<String> = [
                "resourceId", "resourceUri", "dimension", "usageDate", "planId", "submittedQuantity", "processedQuantity", "reconStatus",
            ]
            if let unknown = object.keys.first(where: { !known.contains($0) }) {
                throw HTTPError(400, "Unknown member \(unknown); expected \(known.sorted().joined(separator: ", ")).")
            }
            resourceId = object["resourceId"]?.stringValue
            resourceUri = object["resourceUri"]?.stringValue
            guard let name = resourceId ?? resourceUri, !name.isEmpty else {
                throw HTTPError(400, "Either resourceId or resourceUri is required.")
            }
            guard let dimension = object["dimension"]?.stringValue, !dimension.isEmpty else {
                throw HTTPError(400, "The dimension is required.")
            }
            guard let text = object["usageDate"]?.stringValue, let day = UsageEventSummary.day(text) else {
                throw HTTPError(400, "The usageDate must be a date such as 2024-03-01.")
            }
            key = Key(day: day, resource: name.lowercased(), dimension: dimension)
            planId = object["planId"]?.stringValue
            func quantity(_ member: String) throws(HTTPError) -> Quantity? {
                guard let value = object[member] else { return nil }
                guard case .number(let literal) = value, case .success(let quantity) = Quantity.parse(literal), !quantity.isNegative else {
                    throw HTTPError(400, "The \(member) must be a number ≥ 0.")
                }
                return quantity
            }
            submittedQuantity = try quantity("submittedQuantity")
            processedQuantity = try quantity("processedQuantity")
            if let status = object["reconStatus"] {
                guard let text = status.stringValue, UsageEventSummary.statuses.contains(text) else {
                    throw HTTPError(400, "The reconStatus must be one of \(UsageEventSummary.statuses.joined(separator: ", ")).")
                }
                reconStatus = text
            }
            guard submittedQuantity != nil || processedQuantity != nil || reconStatus != nil else {
                throw HTTPError(400, "Give at least one of submittedQuantity, processedQuantity and reconStatus to change.")
            }
        }

        var json: JSONValue {
            var members: [JSONObject.Member] = []
            if let resourceId { members.append(.init("resourceId", .string(resourceId))) }
            if let resourceUri { members.append(.init("resourceUri", .string(resourceUri))) }
            members += [.init("dimension", .string(key.dimension)), .init("usageDate", .string(String(key.day.iso8601.prefix(10))))]
            if let planId { members.append(.init("planId", .string(planId))) }
            if let submittedQuantity { members.append(.init("submittedQuantity", submittedQuantity.json)) }
            if let processedQuantity { members.append(.init("processedQuantity", processedQuantity.json)) }
            if let reconStatus { members.append(.init("reconStatus", .string(reconStatus))) }
            return .object(JSONObject(members))
        }
    }

    /// Midnight UTC of `text`, a date (`2024-03-01`) or a time on that day, with or without seconds
    /// and zone (`2020-12-03T15:00`, as the API's documentation writes it).
    static func day(_ text: String) -> Timestamp? {
        let candidates = text.utf8.count == 10 ? [text + "T00:00:00Z"] : [text, text + "Z", text + ":00Z"]
        return candidates.lazy.compactMap { Timestamp(iso8601: $0) }.first.map(dayStart)
    }

    static func dayStart(_ time: Timestamp) -> Timestamp {
        let day = Timestamp.microsecondsPerDay
        let micros = time.microseconds
        return Timestamp(microseconds: (micros >= 0 ? micros / day : (micros - day + 1) / day) * day)
    }

    /// The rows for `entries` (accepted events), as processed at `now`, with `adjustments` planted.
    static func summarize(_ entries: [Marketplace.LedgerEntry], adjustments: [Key: Adjustment], now: Timestamp) -> [UsageEventSummary] {
        var rows: [Key: UsageEventSummary] = [:]
        var order: [Key] = []
        let today = dayStart(now)
        for entry in entries {
            let item = entry.item
            let key = Key(
                day: dayStart(item.effectiveStartTime), resource: (item.resourceId ?? item.resourceUri ?? "").lowercased(),
                dimension: item.dimension)
            if var row = rows[key] {
                row.submittedQuantity = row.submittedQuantity.saturatingAdding(item.quantity)
                row.submittedCount += 1
                rows[key] = row
            } else {
                order.append(key)
                rows[key] = UsageEventSummary(
                    usageDate: key.day, resourceId: item.resourceId, resourceUri: item.resourceUri, planId: item.planId,
                    dimension: item.dimension, submittedQuantity: item.quantity, processedQuantity: .zero, submittedCount: 1,
                    reconStatus: "Submitted")
            }
        }
        for key in order where key.day < today {
            guard var row = rows[key] else { continue }
            row.processedQuantity = row.submittedQuantity
            row.reconStatus = "Accepted"
            rows[key] = row
        }
        for (key, adjustment) in adjustments {
            if rows[key] == nil {
                guard let submitted = adjustment.submittedQuantity else { continue }
                order.append(key)
                rows[key] = UsageEventSummary(
                    usageDate: key.day, resourceId: adjustment.resourceId, resourceUri: adjustment.resourceUri,
                    planId: adjustment.planId ?? "", dimension: key.dimension, submittedQuantity: submitted,
                    processedQuantity: key.day < today ? submitted : .zero, submittedCount: 1,
                    reconStatus: key.day < today ? "Accepted" : "Submitted")
            }
            guard var row = rows[key] else { continue }
            if let planId = adjustment.planId { row.planId = planId }
            if let submitted = adjustment.submittedQuantity { row.submittedQuantity = submitted }
            if let processed = adjustment.processedQuantity { row.processedQuantity = processed }
            if let status = adjustment.reconStatus { row.reconStatus = status }
            rows[key] = row
        }
        return order.compactMap { rows[$0] }.sorted {
            ($0.usageDate, $0.resourceId ?? $0.resourceUri ?? "", $0.dimension) < (
                $1.usageDate, $1.resourceId ?? $1.resourceUri ?? "", $1.dimension
            )
        }
    }

    /// The API's row: `usageDate`, `usageResourceId`, `dimension`, `planId`, `planName`,
    /// `offerId`, `offerName`, `offerType`, `azureSubscriptionId`, `reconStatus`,
    /// `submittedQuantity`, `processedQuantity`, `submittedCount`.
    func json(offerId: String, azureSubscriptionId: String) -> JSONValue {
        .object(
            JSONObject([
                .init("usageDate", .string(usageDate.iso8601)), .init("usageResourceId", .string(resourceId ?? resourceUri ?? "")),
                .init("dimension", .string(dimension)), .init("planId", .string(planId)), .init("planName", .string(planId)),
                .init("offerId", .string(offerId)), .init("offerName", .string(offerId)),
                .init("offerType", .string(resourceId == nil ? "AzureApplication" : "SaaS")),
                .init("azureSubscriptionId", .string(self.azureSubscriptionId(default: azureSubscriptionId))),
                .init("reconStatus", .string(reconStatus)), .init("submittedQuantity", submittedQuantity.json),
                .init("processedQuantity", processedQuantity.json), .init("submittedCount", .number(String(submittedCount))),
            ]))
    }

    /// A managed application's Azure subscription is in its resource URI
    /// (`/subscriptions/<id>/resourceGroups/...`); a SaaS resource gets the configured one.
    func azureSubscriptionId(default value: String) -> String {
        guard let uri = resourceUri else { return value }
        let parts = uri.split(separator: "/")
        guard parts.count >= 2, parts[0].lowercased() == "subscriptions" else { return value }
        return String(parts[1])
    }
}
