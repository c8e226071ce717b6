import Wire

extension PartitionState {
    /// How many steps `prefetch(_:step:)` has: a fold that knows the records it folds next calls
    /// it for the record `readAheadSteps - step` places ahead of the one it folds, for each step.
    public static let readAheadSteps = 3

    /// Asks the CPU for what folding `record` will read, one step of three, so that a fold over
    /// many subscriptions does not wait for memory at every record: a usage event reaches one
    /// subscription of hundreds of thousands, and its slot, entry and meters are in no cache.
    /// Step 0 asks for the subscription's slot; step 1 (a record later, the slot arrived) for its
    /// key and entry; step 2 (the entry arrived) for its meters and open hours. Only usage events
    /// are read ahead (the bulk of any log). Changes nothing but `readAhead`, which keeps the
    /// hash of the subscription's name so it is computed once per record; `mutating` also lets a
    /// fold holding the state in a closure reach it in place: reading it there copied all of it
    /// (and retained everything it holds) at every call.
    public mutating func prefetch(_ record: UnsafePointer<BillingRecord>, step: Int) {
        // Subscriptions that fit in the caches are not waited for: reading ahead would only cost.
        guard readsAhead else { return }
        let sequence = record.pointee.sequence
        let hash: Int
        if step == 0 {
            guard case .usageReported(let usage) = record.pointee.message.body, let name = usage.resource.resourceId else { return }
            hash = DenseTable<String, Subscription>.hash(name)
            readAhead.remember(hash, sequence: sequence)
        } else {
            guard let remembered = readAhead.hash(sequence: sequence) else { return }
            hash = remembered
        }
        prefetchSubscription(hash: hash, step: step)
    }

    /// Whether folds read ahead: with fewer subscriptions than `readAhead.minimumSubscriptions`,
    /// a fold need not even call `prefetch`.
    public var readsAhead: Bool { subscriptions.count >= readAhead.minimumSubscriptions }

    /// `prefetch`'s step `step` for the subscription whose key hashes to `hash`.
    package func prefetchSubscription(hash: Int, step: Int) {
        subscriptions.prefetch(hash: hash, step: step) { subscription in
            prefetchArray(at: subscription + Self.metersOffset, bytes: 5 * MemoryLayout<Meter>.stride)
            prefetchArray(at: subscription + Self.openHoursOffset, bytes: 2 * MemoryLayout<OpenHour>.stride)
        }
    }

    /// The steps of reading ahead for a walk over subscriptions (`hashes`: their keys' hashes, in
    /// the walk's order), before visiting the one at `position`: the same steps as for records,
    /// for the three after it.
    package func prefetchSubscriptions(hashes: [Int], before position: Int) {
        guard readsAhead else { return }
        for step in 0..<Self.readAheadSteps where position + Self.readAheadSteps - step < hashes.count {
            prefetchSubscription(hash: hashes[position + Self.readAheadSteps - step], step: step)
        }
    }

    static let metersOffset = MemoryLayout<Subscription>.offset(of: \.meters)!
    static let openHoursOffset = MemoryLayout<Subscription>.offset(of: \.openHours)!
}

/// The hashes of the subscription names of the last few records read ahead, by sequence number:
/// the later steps and the fold itself find them here instead of hashing the name again (hashing
/// was a tenth of a catch-up's time when every step did it).
public struct ReadAheadHashes: Sendable {
    static let size = 8
    /// How many subscriptions a partition holds before its folds read ahead: about 1 KiB each with
    /// their meters, 4,096 of them are 4 MiB, past what the caches of a small machine keep for one
    /// partition of several. With 250 (the catch-up benchmark's log) reading ahead only cost:
    /// 1,856,315-1,947,105 records/s against 1,892,448-2,355,641 without (docs/BENCHMARKS.md).
    /// Tests lower it.
    public var minimumSubscriptions = 4_096
    /// Slot `i` starts with `i + 1`, a sequence number that never maps to slot `i`: no record
    /// finds a hash it was not given.
    private var sequences = (0..<UInt64(size)).map { $0 + 1 }
    private var hashes = [Int](repeating: 0, count: size)

    public init() {}

    mutating func remember(_ hash: Int, sequence: UInt64) {
        let slot = Int(truncatingIfNeeded: sequence) & (Self.size - 1)
        sequences[slot] = sequence
        hashes[slot] = hash
    }

    /// The hash remembered for the record `sequence`, if it is still kept.
    public func hash(sequence: UInt64) -> Int? {
        let slot = Int(truncatingIfNeeded: sequence) & (Self.size - 1)
        return sequences[slot] == sequence ? hashes[slot] : nil
    }
}
