import Wire

/// One usage event of the metering API, checked for shape: the resource, plan, dimension, hour
/// and exact quantity it reports.
struct UsageItem: Sendable {
    /// The request's own members that the API echoes, as sent: `quantity` keeps its literal text
    /// and `effectiveStartTime` its spelling.
    var echo: [JSONObject.Member]
    var resourceId: String?
    var resourceUri: String?
    var planId: String
    var dimension: String
    var quantity: Quantity
    /// The quantity's JSON literal as sent (`9.0000`).
    var quantityLiteral: String
    var effectiveStartTime: Timestamp
    /// The effective start time as sent (`2021-12-13T20:00:00`, without a zone).
    var effectiveStartTimeText: String

    /// What first-write-wins is keyed on: one accepted event per resource, dimension and hour.
    struct Slot: Hashable, Sendable {
        var resource: String
        var dimension: String
        var hour: Timestamp
    }

    var slot: Slot {
        // Resource ids are GUIDs and URIs are ARM ids: both compare case-insensitively.
        let resource = resourceId.map { "id:" + $0.lowercased() } ?? "uri:" + (resourceUri ?? "").lowercased()
        return Slot(resource: resource, dimension: dimension, hour: effectiveStartTime)
    }

    /// The request members the API echoes in its results (other members are ignored).
    static let echoedKeys: Set<String> = ["resourceId", "resourceUri", "effectiveStartTime", "planId", "dimension", "quantity"]

    /// The members of `value` the API echoes, in the request's order (none when it is not an object).
    static func echo(of value: JSONValue) -> [JSONObject.Member] {
        value.objectValue?.members.filter { echoedKeys.contains($0.key) } ?? []
    }

    /// Checks one request item: everything that does not depend on the clock or the ledger.
    static func check(_ value: JSONValue) throws(UsageRejection) -> UsageItem {
        guard let object = value.objectValue else {
            throw UsageRejection(.badArgument, target: "usageEventRequest", "A usage event must be a JSON object.")
        }
        func text(_ key: String) throws(UsageRejection) -> String? {
            switch object[key] {
            case nil, .null?: return nil
            case .string(let text)? where !text.isEmpty: return text
            default: throw UsageRejection(.badArgument, target: key, "The \(key) must be a non-empty string.")
            }
        }
        let resourceId = try text("resourceId")
        let resourceUri = try text("resourceUri")
        guard resourceId != nil || resourceUri != nil else {
            throw UsageRejection(.badArgument, target: "resourceId", "Either resourceId or resourceUri is required.")
        }
        guard let planId = try text("planId") else { throw UsageRejection(.badArgument, target: "planId", "The planId is required.") }
        guard let dimension = try text("dimension") else {
            throw UsageRejection(.badArgument, target: "dimension", "The dimension is required.")
        }
        guard case .number(let literal)? = object["quantity"] else {
            throw UsageRejection(.invalidQuantity, target: "quantity", "The quantity is required and must be a JSON number.")
        }
        let quantity: Quantity
        switch Quantity.parse(literal) {
        case .success(let value): quantity = value
        case .failure(let reason): throw UsageRejection(.invalidQuantity, target: "quantity", "The quantity \(literal) \(reason).")
        }
        guard quantity > .zero else { throw UsageRejection(.invalidQuantity, target: "quantity", "The quantity must be greater than 0.") }
        guard let startText = try text("effectiveStartTime"), let start = Timestamp(iso8601: startText) else {
            throw UsageRejection(
                .badArgument, target: "effectiveStartTime",
                "The effectiveStartTime must be an ISO 8601 UTC time such as 2024-01-31T10:00:00Z.")
        }
        guard start.hourStart == start else {
            throw UsageRejection(
                .badArgument, target: "effectiveStartTime",
                "The effectiveStartTime must be the start of an hour (minutes and seconds zero); \(startText) is not.")
        }
        return UsageItem(
            echo: echo(of: value), resourceId: resourceId, resourceUri: resourceUri, planId: planId, dimension: dimension,
            quantity: quantity, quantityLiteral: literal, effectiveStartTime: start, effectiveStartTimeText: startText)
    }
}

/// The per-item statuses the metering API answers.
enum UsageStatus: String, CaseIterable, Sendable {
    case accepted = "Accepted"
    case duplicate = "Duplicate"
    case expired = "Expired"
    case resourceNotFound = "ResourceNotFound"
    case invalidDimension = "InvalidDimension"
    case invalidQuantity = "InvalidQuantity"
    case badArgument = "BadArgument"
}

/// Why an item is not accepted (other than as a Duplicate): its status and the offending field.
struct UsageRejection: Error, Sendable {
    var status: UsageStatus
    var target: String
    var message: String

    init(_ status: UsageStatus, target: String, _ message: String) {
        self.status = status
        self.target = target
        self.message = message
    }

    /// The `error` object of the captures (`MarketplaceGenericError.json`): the offending field
    /// and the reason are in `details`.
    var error: JSONValue {
        [
            "code": "BadArgument", "target": "usageEventRequest", "message": "One or more errors have occurred.",
            "details": [["code": "BadArgument", "target": .string(target), "message": .string(message)]],
        ]
    }
}
