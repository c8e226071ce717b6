import Wire

extension PartitionState {
    /// How many steps `prefetch(_:step:)` has: a fold that knows the records it folds next calls
    /// it for the record `readAheadSteps - step` places ahead of the one it folds, for each step.
    public static let readAheadSteps = 4

    /// Asks the CPU for what folding `record` will read, one step of four, so that a fold over
    /// many subscriptions does not wait for memory at every record: a usage event reaches one
    /// subscription of hundreds of thousands, and its slot, entry and meters are in no cache.
    /// Step 0 asks for the subscription's slot; step 1 (a record later, the slot arrived) for its
    /// key and entry; step 2 (the entry arrived) for its open hours and the record's meter, found
    /// in the entry's shared list of names by the record's `meterHint` (every meter when none
    /// matches); step 3 (they arrived) for the arrays the usage adds overage to: that meter's
    /// billed totals and the last open hour's overage. Only usage events are read ahead (the bulk
    /// of any log), by the hash their record carries (`nameHash`).
    /// Changes nothing; `mutating` lets a fold holding the state in a closure reach it in place:
    /// reading it there copied all of it (and retained everything it holds) at every call.
    public mutating func prefetch(_ record: UnsafePointer<BillingRecord>, step: Int) {
        // Subscriptions that fit in the caches are not waited for: reading ahead would only cost.
        guard readsAhead else { return }
        let hash = record.pointee.nameHash
        guard hash != 0 else { return }
        prefetchSubscription(hash: hash, meter: record.pointee.meterHint, step: step)
    }

    /// Whether folds read ahead: with fewer subscriptions than `readAheadFrom`, a fold need not
    /// even call `prefetch`.
    public var readsAhead: Bool { subscriptions.count >= readAheadFrom }

    /// `prefetch`'s step `step` for the subscription whose key hashes to `hash`, for a record of
    /// the meter whose `meterHint` is `meter` (0: every meter). Inlined: called from a method of a
    /// type holding the state, a call passed a copy of the whole state. Changes nothing; `mutating`
    /// for the read model, in another module (where it is not inlined): a call to a non-mutating
    /// method there copied the state's 256 bytes first, at every step of every record (2.23% of
    /// meter-query's samples in the query case's catch-up, in `memcpy`).
    @inline(__always)
    package mutating func prefetchSubscription(hash: Int, meter hint: UInt64 = 0, step: Int) {
        guard step >= 2 else {
            subscriptions.prefetch(hash: hash, step: step) { _ in }
            return
        }
        subscriptions.prefetch(hash: hash, step: 2) { subscription in
            let meters = subscription.load(fromByteOffset: Self.metersOffset, as: UnsafeRawPointer.self)
            let meter = hint == 0 ? nil : Self.meter(hint, of: subscription)
            if step == 2 {
                prefetchArray(at: subscription + Self.openHoursOffset, bytes: 2 * MemoryLayout<OpenHour>.stride)
                guard let meter else {
                    prefetchLines(meters, bytes: 32 + 5 * MemoryLayout<Meter>.stride)
                    return
                }
                // The header (a lookup checks the count) and every line of the meter.
                prefetchLines(meters, bytes: 32)
                prefetchLines(meters + 32 + meter * MemoryLayout<Meter>.stride, bytes: MemoryLayout<Meter>.stride)
                return
            }
            let billed = 2 * MemoryLayout<DimensionQuantity>.stride
            // This step reads the meter (its billed totals' address): only within the array, should
            // the list of names ever disagree with the meters (it is a hint).
            if let meter, meter < meters.load(fromByteOffset: 16, as: Int.self) {
                prefetchArray(at: meters + 32 + meter * MemoryLayout<Meter>.stride + Self.billedOffset, bytes: billed)
            }
            withArrayElements(at: subscription + Self.openHoursOffset, upTo: .max) { hours, count in
                guard count > 0 else { return }
                prefetchArray(at: hours + (count - 1) * MemoryLayout<OpenHour>.stride + Self.overageOffset, bytes: billed)
            }
        }
    }

    /// The position of the meter whose name has `meterHint` `hint` in the subscription at
    /// `subscription`, by its list of names (shared, so in the caches); nil when none has it.
    @inline(__always)
    static func meter(_ hint: UInt64, of subscription: UnsafeRawPointer) -> Int? {
        var found: Int?
        withArrayElements(at: subscription + meterNamesOffset, upTo: 16) { names, count in
            for index in 0..<count where BillingRecord.meterHint(at: names + index * MemoryLayout<String>.stride) == hint {
                found = index
                return
            }
        }
        return found
    }

    /// The steps of reading ahead for closing the hours of subscriptions (`hashes`: their keys'
    /// hashes, in the walk's order), before visiting the one at `position`, for the ones after it:
    /// steps 0 and 1 as for records; step 2 for the open hours and the box of names and plan that
    /// the items made ready share (retained, so written); step 3 for the first open hour's overage.
    /// No meter: closing reads none.
    package func prefetchSubscriptions(hashes: [Int], before position: Int) {
        guard readsAhead else { return }
        for (element, step) in Self.stepsAhead(before: position, of: hashes.count) {
            guard step >= 2 else {
                subscriptions.prefetch(hash: hashes[element], step: step) { _ in }
                continue
            }
            subscriptions.prefetch(hash: hashes[element], step: 2) { subscription in
                if step == 2 {
                    prefetchArray(at: subscription + Self.openHoursOffset, bytes: MemoryLayout<OpenHour>.stride)
                    prefetchLines(subscription.load(fromByteOffset: Self.termsOffset, as: UnsafeRawPointer.self), bytes: 64)
                    return
                }
                withArrayElements(at: subscription + Self.openHoursOffset, upTo: 1) { hours, count in
                    guard count > 0 else { return }
                    prefetchArray(at: hours + Self.overageOffset, bytes: 2 * MemoryLayout<DimensionQuantity>.stride)
                }
            }
        }
    }

    /// The read-ahead steps due before visiting position `position` of a walk over `count`
    /// elements: `(element, step)` for step `s` of the element `readAheadSteps - s` places ahead,
    /// when there is one. A sequence for a plain `for` loop, not a closure: a closure calling a
    /// method of `self` from a mutating method copied all of `self` at every call.
    package static func stepsAhead(before position: Int, of count: Int) -> StepsAhead {
        StepsAhead(position: position, count: count)
    }

    /// `stepsAhead(before:of:)`'s steps.
    package struct StepsAhead: Sequence, IteratorProtocol {
        let position: Int
        let count: Int
        var step = 0

        package mutating func next() -> (element: Int, step: Int)? {
            while step < PartitionState.readAheadSteps {
                let current = step
                step += 1
                let element = position + PartitionState.readAheadSteps - current
                if element < count { return (element, current) }
            }
            return nil
        }
    }

    static let metersOffset = MemoryLayout<Subscription>.offset(of: \.meters)!
    static let openHoursOffset = MemoryLayout<Subscription>.offset(of: \.openHours)!
    static let termsOffset = MemoryLayout<Subscription>.offset(of: \.namesAndPlan)!
    static let meterNamesOffset = MemoryLayout<Subscription>.offset(of: \.meterNames)!
    static let billedOffset = MemoryLayout<Meter>.offset(of: \.usage)! + MemoryLayout<MeterUsage>.offset(of: \.billed)!
    static let overageOffset = MemoryLayout<OpenHour>.offset(of: \.overage)!
}
