import Wire

/// The records of a partition that could not be billed, kept in bounded space whatever their number:
/// an exact count per subscription and reason (`groups`), and the most recent records in full
/// (`examples`). A sender that floods a partition with usage for unknown subscriptions grows a count,
/// not the state, its snapshots or the aggregator's answers.
///
/// Bounds: at most `maximumGroups` groups per partition, plus one per reason for the records of
/// further subscriptions and of names longer than `maximumNameBytes` (its subscription is nil), at most `maximumExamples` examples (the oldest leaves first), and each example's event and
/// reason cut to a few kilobytes.
///
/// `RemoveUnprocessedMessages` works on this representation:
/// - `all` empties it.
/// - `exactly n` removes record n when its example is still held (its group is known from it); a
///   record that is only counted any more cannot be told apart, and stays counted.
/// - `beforeIncluding n` removes the examples at or before n and every group whose records all lie
///   at or before n. A group with records on both sides of n is reduced exactly when every counted
///   record after n is still held as an example (always so when n is no older than the oldest
///   example); otherwise it stays whole, since how many of its records were at or before n is no
///   longer known. Counts never go below what is really outstanding.
public struct UnprocessableLedger: Sendable, Equatable {
    /// Why a record could not be billed: with the subscription, what records are counted by.
    public enum Reason: String, Sendable, CaseIterable {
        /// Usage for a subscription the partition does not have.
        case unknownSubscription
        /// Usage for a deleted subscription.
        case deletedSubscription
        /// Usage of a meter name the subscription's plan does not have.
        case unknownMeter
        /// Usage that would take a meter's or an hour's total past the largest quantity.
        case overflow
        /// A deletion of a subscription the partition does not have.
        case unknownDeletion
        /// A purchase for a live subscription with another start or renewal interval.
        case conflictingPurchase
        /// A void the accounting cannot apply (the usage was not counted, its period is over, a
        /// gauge report): the reason says which, and what to do instead.
        case unvoidable
    }

    /// The records of one subscription name and reason.
    public struct Group: Sendable, Equatable {
        /// The name the records gave (`resourceId`, else `resourceUri`); nil for the records of
        /// subscriptions beyond `maximumGroups` or with names longer than `maximumNameBytes`.
        public var subscription: String?
        public var reason: Reason
        /// How many records are counted, exactly.
        public var count: Int
        /// Every counted record lies between these sequences (bounds; removals may leave them loose).
        public var firstSequence: UInt64
        public var lastSequence: UInt64
        /// The latest counted record's reason, in words.
        public var latestReason: String
    }

    struct Key: Hashable, Sendable {
        var subscription: String?
        var reason: Reason
    }

    /// Groups kept per partition.
    public static let maximumGroups = 1000
    /// Recent records kept in full per partition.
    public static let maximumExamples = 100
    /// Longer subscription names are counted in their reason's group of unlisted subscriptions.
    public static let maximumNameBytes = 200
    /// An example's event is kept whole up to this size in JSON; a larger one is cut down to its
    /// type, id and names, meter and quantity.
    public static let maximumEventBytes = 4096
    /// Reasons are cut to this many bytes.
    public static let maximumReasonBytes = 1024

    /// The number of records counted, exactly.
    public internal(set) var count = 0
    /// The most recent records, oldest first, at most `maximumExamples`.
    public internal(set) var examples: [UnprocessableRecord] = []
    var groupsByKey: [Key: Group] = [:]
    /// Every counted record at or after this sequence is held in `examples`.
    var completeFrom: UInt64 = 0

    /// An empty ledger.
    public init() {}

    /// Whether no record is counted.
    public var isEmpty: Bool { count == 0 }

    /// The groups in the order they were first counted.
    public var groups: [Group] { groupsByKey.values.sorted { $0.firstSequence < $1.firstSequence } }

    /// Counts `record`, and keeps it as the newest example.
    mutating func add(_ record: UnprocessableRecord) {
        let listed = record.subscription.map { $0.utf8.count <= Self.maximumNameBytes } ?? false
        var key = Key(subscription: listed ? record.subscription : nil, reason: record.kind)
        if groupsByKey[key] == nil && groupsByKey.count >= Self.maximumGroups { key.subscription = nil }
        var group =
            groupsByKey[key]
            ?? Group(
                subscription: key.subscription, reason: key.reason, count: 0, firstSequence: record.sequence,
                lastSequence: record.sequence, latestReason: "")
        group.count += 1
        group.lastSequence = record.sequence
        group.latestReason = record.reason
        groupsByKey[key] = group
        count += 1
        var kept = record
        kept.subscription = key.subscription
        examples.append(kept)
        if examples.count > Self.maximumExamples {
            completeFrom = examples.removeFirst().sequence + 1
        }
    }

    /// Applies `RemoveUnprocessedMessages`' selection (see the type's comment).
    mutating func remove(_ selection: RemoveUnprocessedMessages.Selection) {
        switch selection {
        case .all:
            self = UnprocessableLedger()
        case .exactly(let sequence):
            guard let only = UInt64(exactly: sequence), let index = examples.firstIndex(where: { $0.sequence == only }) else { return }
            uncount(examples.remove(at: index))
        case .beforeIncluding(let sequence):
            guard let last = UInt64(exactly: sequence) else { return }
            // Records not held as examples all lie before `completeFrom`.
            let exact = completeFrom == 0 || completeFrom - 1 <= last
            if exact {
                // Every record after `last` is an example: each group keeps exactly those.
                var after: [Key: Int] = [:]
                for example in examples where example.sequence > last {
                    after[Key(subscription: example.subscription, reason: example.kind), default: 0] += 1
                }
                for (key, group) in groupsByKey {
                    let left = after[key] ?? 0
                    count -= group.count - left
                    if left == 0 { groupsByKey[key] = nil } else { groupsByKey[key]?.count = left }
                }
            } else {
                for (key, group) in groupsByKey where group.lastSequence <= last {
                    count -= group.count
                    groupsByKey[key] = nil
                }
            }
            examples.removeAll { $0.sequence <= last }
        }
    }

    private mutating func uncount(_ record: UnprocessableRecord) {
        let key = Key(subscription: record.subscription, reason: record.kind)
        guard var group = groupsByKey[key] else { return }
        count -= 1
        group.count -= 1
        groupsByKey[key] = group.count > 0 ? group : nil
    }
}
