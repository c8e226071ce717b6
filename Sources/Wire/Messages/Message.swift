/// The name of a marketplace resource (a SaaS subscription or a managed application): its
/// `resourceId`, its `resourceUri`, or both. At least one is present.
public struct ResourceName: Hashable, Sendable, CustomStringConvertible {
    public var resourceId: String?
    public var resourceUri: String?

    public init(resourceId: String? = nil, resourceUri: String? = nil) {
        self.resourceId = resourceId
        self.resourceUri = resourceUri
    }

    /// The hash that places a message about this resource when no purchase routes it otherwise:
    /// `routeHash(of:)` of its `resourceId`, else of its `resourceUri`, else of nothing.
    public var routeHash: UInt64 { Self.routeHash(of: resourceId ?? resourceUri ?? "") }

    /// FNV-1a 64 of `key`'s UTF-8: stable across processes and runs (ingest's partition of a
    /// subscription is this modulo the partition count).
    public static func routeHash(of key: String) -> UInt64 {
        var key = key
        return key.withUTF8 { routeHash(utf8: UnsafeRawBufferPointer($0)) }
    }

    /// `routeHash(of:)` of a key given as its UTF-8 bytes.
    public static func routeHash(utf8 bytes: UnsafeRawBufferPointer) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        return hash
    }

    public var description: String {
        switch (resourceId, resourceUri) {
        case (let id?, let uri?): return "\(id) (\(uri))"
        case (let id?, nil): return id
        case (nil, let uri?): return uri
        case (nil, nil): return "(unnamed)"
        }
    }
}

/// How often a subscription renews (its included quantities refill).
public enum RenewalInterval: String, Sendable, Hashable, CaseIterable {
    case monthly = "Monthly"
    case annually = "Annually"
    case twoYears = "2-years"
    case threeYears = "3-years"

    /// The interval in whole months.
    public var months: Int {
        switch self {
        case .monthly: return 1
        case .annually: return 12
        case .twoYears: return 24
        case .threeYears: return 36
        }
    }
}

/// An included quantity per billing period: a finite amount or unlimited.
public enum IncludedQuantity: Hashable, Sendable {
    case finite(Quantity)
    case infinite
}

/// How a simple dimension combines the usage of one billing period (DESIGN.md §4.4).
public enum Aggregation: String, Sendable, Hashable, CaseIterable {
    case sum, max, last
}

/// One tier of a waterfall dimension: the marketplace dimension and its threshold.
public struct WaterfallTier: Hashable, Sendable {
    public var dimension: String
    public var threshold: Quantity

    public init(dimension: String, threshold: Quantity) {
        self.dimension = dimension
        self.threshold = threshold
    }
}

/// How the application's internal meter maps to marketplace dimensions.
public enum BillingDimension: Hashable, Sendable {
    case simple(dimension: String, included: IncludedQuantity, aggregation: Aggregation)
    case waterfall(tiers: [WaterfallTier])
}

/// A plan: its id and, per internal meter name, the billing dimension (in document order).
///
/// A plan with no billing dimensions is a reference to the plan catalog (`{"planId": "gold"}`, an
/// extension): ingest replaces it with the catalog's plan before it stores the message, so the log
/// only ever holds whole plans.
public struct Plan: Hashable, Sendable {
    public var planId: String
    public var billingDimensions: [(meterName: String, dimension: BillingDimension)]
    /// Prices to show customers (an extension): display only, never part of billing.
    public var prices: DisplayPrices?

    public init(planId: String, billingDimensions: [(meterName: String, dimension: BillingDimension)], prices: DisplayPrices? = nil) {
        self.planId = planId
        self.billingDimensions = billingDimensions
        self.prices = prices
    }

    /// Whether the plan only names a plan of the catalog, for ingest to fill in.
    public var isCatalogReference: Bool { billingDimensions.isEmpty }

    /// Every marketplace dimension the plan bills, in document order (a waterfall's tiers in order).
    public var dimensions: [String] {
        billingDimensions.flatMap { entry -> [String] in
            switch entry.dimension {
            case .simple(let dimension, _, _): return [dimension]
            case .waterfall(let tiers): return tiers.map(\.dimension)
            }
        }
    }

    public static func == (lhs: Plan, rhs: Plan) -> Bool {
        lhs.planId == rhs.planId && lhs.billingDimensions.elementsEqual(rhs.billingDimensions, by: { $0 == $1 })
            && lhs.prices == rhs.prices
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(planId)
        for (meter, dimension) in billingDimensions {
            hasher.combine(meter)
            hasher.combine(dimension)
        }
        hasher.combine(prices)
    }
}

/// A plan's display prices (an extension): a currency and a price per unit of some of its
/// marketplace dimensions. The run-rate page shows money with them; billing never reads them, and
/// nothing of them is sent to the marketplace (which bills by its own price list).
public struct DisplayPrices: Hashable, Sendable {
    /// One marketplace dimension's price per unit.
    public struct Entry: Hashable, Sendable {
        public var dimension: String
        public var price: Quantity

        public init(dimension: String, price: Quantity) {
            self.dimension = dimension
            self.price = price
        }
    }

    /// An ISO 4217 code: three capital letters, such as `USD`.
    public var currency: String
    /// Per marketplace dimension, the price of one unit (in document order).
    public var perUnit: [Entry]

    public init(currency: String, perUnit: [Entry]) {
        self.currency = currency
        self.perUnit = perUnit
    }

    /// The price of one unit of `dimension`, if it has one.
    public func price(of dimension: String) -> Quantity? { perUnit.first { $0.dimension == dimension }?.price }

    /// `{"currency": "USD", "perUnit": 0.02}`: one dimension's price as the run-rate answer carries it.
    public func json(of dimension: String) -> JSONValue? {
        price(of: dimension).map { .object(JSONObject([.init("currency", .string(currency)), .init("perUnit", $0.json)])) }
    }
}

public struct SubscriptionPurchased: Hashable, Sendable {
    public var resource: ResourceName
    public var subscriptionStart: Timestamp
    public var renewalInterval: RenewalInterval
    public var plan: Plan

    public init(resource: ResourceName, subscriptionStart: Timestamp, renewalInterval: RenewalInterval, plan: Plan) {
        self.resource = resource
        self.subscriptionStart = subscriptionStart
        self.renewalInterval = renewalInterval
        self.plan = plan
    }
}

public struct UsageReported: Hashable, Sendable {
    public var resource: ResourceName
    /// The sender's clock: recorded, never used for billing.
    public var timestamp: Timestamp
    public var meterName: String
    public var quantity: Quantity
    public var properties: [String: String]

    public init(resource: ResourceName, timestamp: Timestamp, meterName: String, quantity: Quantity, properties: [String: String] = [:]) {
        self.resource = resource
        self.timestamp = timestamp
        self.meterName = meterName
        self.quantity = quantity
        self.properties = properties
    }
}

/// The outcome of one usage item at the marketplace, as the submitter records it.
public struct UsageSubmittedToAPI: Hashable, Sendable {
    public var resource: ResourceName
    public var status: String
    public var planId: String?
    public var dimension: String?
    public var effectiveStartTime: Timestamp?
    public var quantity: Quantity?
    /// The whole `value` object as sent, for the aggregator (accepted message, error details).
    public var value: JSONObject

    /// The outcome `result` (the marketplace's answer for one item, completed with what was sent)
    /// with the HTTP headers of its request; the typed members are read from `result`.
    public init(result: JSONObject, httpHeaders: JSONObject) throws(MessageError) {
        let value = JSONObject([.init("httpHeaders", .object(httpHeaders)), .init("result", .object(result))])
        guard
            case .usageSubmittedToAPI(let outcome) = try Message.decodeThrowing(["type": "UsageSubmittedToAPI", "value": .object(value)])
                .body
        else { preconditionFailure("the decoder returned another message type") }
        self = outcome
    }

    init(
        resource: ResourceName, status: String, planId: String?, dimension: String?, effectiveStartTime: Timestamp?, quantity: Quantity?,
        value: JSONObject
    ) {
        self.resource = resource
        self.status = status
        self.planId = planId
        self.dimension = dimension
        self.effectiveStartTime = effectiveStartTime
        self.quantity = quantity
        self.value = value
    }
}

/// Removal of unprocessable records of one partition (the reference's three forms).
public struct RemoveUnprocessedMessages: Hashable, Sendable {
    public enum Selection: Hashable, Sendable {
        case beforeIncluding(Int64)
        case exactly(Int64)
        case all
    }
    public var partition: Int
    public var selection: Selection

    public init(partition: Int, selection: Selection) {
        self.partition = partition
        self.selection = selection
    }
}

/// A new plan for a live subscription (an extension of the reference format), effective at its
/// enqueued time (docs/BILLING.md, "Plan changes").
public struct PlanChanged: Hashable, Sendable {
    public var resource: ResourceName
    public var plan: Plan

    public init(resource: ResourceName, plan: Plan) {
        self.resource = resource
        self.plan = plan
    }
}

/// A plan of the plan catalog (an extension of the reference format; docs/BILLING.md, "The plan
/// catalog"): purchases and plan changes may then name it by its `planId` alone.
///
/// Ingest numbers the versions of each plan id: the first definition is version 1, a different
/// plan under the same id the next version (later purchases get it; earlier ones keep theirs), the
/// same plan again changes nothing. It writes the number into the record (`version`).
public struct PlanDefined: Hashable, Sendable {
    /// The most plans the catalog holds.
    public static let maximumPlans = 10_000

    /// The plan, whole (with its display prices, if any).
    public var plan: Plan
    /// The version ingest gave it; nil in a client's message.
    public var version: Int?

    public init(plan: Plan, version: Int? = nil) {
        self.plan = plan
        self.version = version
    }
}

/// Earlier usage reports to take out of the accounting, named by their idempotency keys (an
/// extension of the reference format; docs/BILLING.md, "Corrections").
///
/// A client names one or more keys; ingest checks them and writes one record per key into the
/// partition of the usage it voids, with that usage attached (`voided`), so the fold knows what
/// it takes back without remembering every usage report.
public struct UsageVoided: Hashable, Sendable {
    /// The most keys one message may name.
    public static let maximumIds = 100
    /// The longest reason kept, in bytes.
    public static let maximumReasonLength = 1000

    /// The idempotency keys of the usage reports to void (exactly one in a record of the log).
    public var ids: [String]
    /// Why, for the audit trail.
    public var reason: String?
    /// The usage the record voids, as ingest found it in the log; nil in a client's message.
    public var voided: VoidedUsage?

    public init(ids: [String], reason: String? = nil, voided: VoidedUsage? = nil) {
        self.ids = ids
        self.reason = reason
        self.voided = voided
    }
}

/// A usage report as a `UsageVoided` record carries it: where it is in the log, and the message.
public struct VoidedUsage: Hashable, Sendable {
    /// Its sequence number in its partition (the void's partition).
    public var sequence: UInt64
    /// When ingest recorded it.
    public var enqueuedTime: Timestamp
    public var usage: UsageReported

    public init(sequence: UInt64, enqueuedTime: Timestamp, usage: UsageReported) {
        self.sequence = sequence
        self.enqueuedTime = enqueuedTime
        self.usage = usage
    }
}

/// A clock tick: moves a partition's time forward without traffic.
public struct Ping: Hashable, Sendable {
    public var partition: Int
    public var localTime: Timestamp?
    public var reason: String
    /// The attribution ingest runs with (its ticks carry it); nil: unchanged.
    public var attribution: Attribution?
    /// Who wrote it (`meter-ingest` for ingest's ticks), for people reading the log.
    public var sender: String?

    public init(partition: Int, localTime: Timestamp?, reason: String, attribution: Attribution? = nil, sender: String? = nil) {
        self.partition = partition
        self.localTime = localTime
        self.reason = reason
        self.attribution = attribution
        self.sender = sender
    }
}

/// The type of a message, as its envelope's `type`.
public enum MessageType: String, Sendable, Hashable, CaseIterable {
    case subscriptionPurchased = "SubscriptionPurchased"
    case usageReported = "UsageReported"
    case subscriptionDeleted = "SubscriptionDeleted"
    case usageSubmittedToAPI = "UsageSubmittedToAPI"
    case removeUnprocessedMessages = "RemoveUnprocessedMessages"
    case ping = "Ping"
    case planChanged = "PlanChanged"
    case usageVoided = "UsageVoided"
    case planDefined = "PlanDefined"

    /// Client messages may be appended on the client socket; the others only on the admin socket.
    public var isClientMessage: Bool {
        switch self {
        case .subscriptionPurchased, .usageReported, .subscriptionDeleted, .planChanged, .usageVoided, .planDefined: return true
        case .usageSubmittedToAPI, .removeUnprocessedMessages, .ping: return false
        }
    }
}

/// A message of the event log: the envelope `{"type": T, "value": {...}, "id"?: key}`.
public struct Message: Hashable, Sendable {
    /// The rarer messages larger than a usage report are boxed (`indirect`): a message is as
    /// large as its largest case, and the folds move millions of usage reports.
    public enum Body: Hashable, Sendable {
        indirect case subscriptionPurchased(SubscriptionPurchased)
        case usageReported(UsageReported)
        case subscriptionDeleted(ResourceName)
        indirect case usageSubmittedToAPI(UsageSubmittedToAPI)
        case removeUnprocessedMessages(RemoveUnprocessedMessages)
        case ping(Ping)
        case planChanged(PlanChanged)
        indirect case usageVoided(UsageVoided)
        case planDefined(PlanDefined)
    }

    /// The idempotency key (an extension of the reference format), if the sender gave one.
    public var id: String?
    public var body: Body

    public init(id: String? = nil, body: Body) {
        self.id = id
        self.body = body
    }

    public var type: MessageType {
        switch body {
        case .subscriptionPurchased: return .subscriptionPurchased
        case .usageReported: return .usageReported
        case .subscriptionDeleted: return .subscriptionDeleted
        case .usageSubmittedToAPI: return .usageSubmittedToAPI
        case .removeUnprocessedMessages: return .removeUnprocessedMessages
        case .ping: return .ping
        case .planChanged: return .planChanged
        case .usageVoided: return .usageVoided
        case .planDefined: return .planDefined
        }
    }

    /// The resource the message is about, which decides its partition; nil for partition-addressed
    /// messages (`Ping`, `RemoveUnprocessedMessages`), for a client's `UsageVoided` (ingest
    /// places it with the usage it voids; in the log it names that usage's resource) and for
    /// `PlanDefined` (ingest keeps the catalog in partition 0).
    public var resource: ResourceName? {
        switch body {
        case .subscriptionPurchased(let purchase): return purchase.resource
        case .usageReported(let usage): return usage.resource
        case .subscriptionDeleted(let resource): return resource
        case .usageSubmittedToAPI(let outcome): return outcome.resource
        case .planChanged(let change): return change.resource
        case .usageVoided(let void): return void.voided?.usage.resource
        case .removeUnprocessedMessages, .ping, .planDefined: return nil
        }
    }

    /// The partition named by a partition-addressed message.
    public var addressedPartition: Int? {
        switch body {
        case .removeUnprocessedMessages(let removal): return removal.partition
        case .ping(let ping): return ping.partition
        default: return nil
        }
    }
}
