public import Wire

/// Decides the partition of a message so that all of a subscription's messages land in one
/// partition, whether the sender names it by `resourceId` or `resourceUri`.
///
/// A subscription's partition key is fixed by its purchase: its `resourceId` when the purchase
/// names one (SaaS), else its `resourceUri` (managed application). Both names map to that key,
/// so later messages naming either, or both, follow it. A name never purchased is its own key
/// (`resourceId` first). The partition is a stable hash (FNV-1a) of the key, the same in every
/// process and every run.
public struct PartitionRouter: Sendable {
    public let partitionCount: Int
    private var keysByResourceId: [String: String] = [:]
    private var keysByResourceUri: [String: String] = [:]

    public init(partitionCount: Int) { self.partitionCount = partitionCount }

    /// Learns the names of a purchase (at append and when recovering the log).
    public mutating func learnPurchase(_ resource: ResourceName) {
        let key = resource.resourceId ?? resource.resourceUri!
        if let id = resource.resourceId { keysByResourceId[id] = key }
        if let uri = resource.resourceUri { keysByResourceUri[uri] = key }
    }

    /// The partition for a message about `resource`.
    public func partition(for resource: ResourceName) -> Int {
        partition(for: resource, routeHash: resource.routeHash, pending: PartitionRouter(partitionCount: partitionCount))
    }

    /// The partition for a message about `resource` whose `routeHash` was taken before (where the
    /// message was read), with `pending`'s routes (purchases not yet durable) taking precedence
    /// over the known ones. A purchase maps a `resourceId` only to itself, so a message whose
    /// `resourceId` is known, or that names no `resourceUri`, goes where that hash says, without
    /// a lookup.
    public func partition(for resource: ResourceName?, routeHash: UInt64, pending: PartitionRouter) -> Int {
        if let resource, let uri = resource.resourceUri {
            let idKnown = resource.resourceId.map { pending.keysByResourceId[$0] != nil || keysByResourceId[$0] != nil } ?? false
            if !idKnown, let key = pending.keysByResourceUri[uri] ?? keysByResourceUri[uri] {
                return Self.partition(of: key, count: partitionCount)
            }
        }
        return Int(routeHash % UInt64(partitionCount))
    }

    /// Takes `other`'s routes, which override this router's for the same names.
    public mutating func adopt(_ other: PartitionRouter) {
        for (name, key) in other.keysByResourceId { keysByResourceId[name] = key }
        for (name, key) in other.keysByResourceUri { keysByResourceUri[name] = key }
    }

    /// The number of names known from purchases.
    public var knownNames: Int { keysByResourceId.count + keysByResourceUri.count }

    /// FNV-1a 64 of the key's UTF-8 (`ResourceName.routeHash(of:)`), modulo the partition count.
    public static func partition(of key: String, count: Int) -> Int {
        Int(ResourceName.routeHash(of: key) % UInt64(count))
    }
}
