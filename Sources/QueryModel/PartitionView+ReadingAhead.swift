public import Billing
import Wire

extension PartitionView {
    /// `PartitionState.prefetch` for the billing state, and the same steps for the subscription's
    /// entry of the read model (its slot; its key and entry; its open usage, breakdown and
    /// series), which folding a usage event reads next. A hint: changes nothing. For a fold to
    /// call when `state.readsAhead` (asked once per batch: asked here, it was a call into the
    /// billing module at every step).
    public mutating func prefetch(_ record: UnsafePointer<BillingRecord>, step: Int) {
        let hash = record.pointee.nameHash
        guard hash != 0 else { return }
        state.prefetchSubscription(hash: hash, meter: record.pointee.meterHint, step: step)
        prefetchView(hash: hash, step: step)
    }

    /// `prefetch`'s step `step` for the read model's entry of the subscription whose key hashes to
    /// `hash`. Inlined: a call from a mutating method passed a copy of the whole view.
    @inline(__always)
    func prefetchView(hash: Int, step: Int) {
        // The view's entry holds nothing further to ask for: its last step is the state's third.
        guard step < 3 else { return }
        subscriptionViews.prefetch(hash: hash, step: step) { view in
            prefetchArray(at: view + Self.openOffset, bytes: 4 * MemoryLayout<OpenUsage>.stride)
            prefetchArray(at: view + Self.groupsOffset, bytes: 8 * MemoryLayout<BreakdownGroup>.stride)
            prefetchArray(at: view + Self.quantitiesOffset, bytes: 8 * MemoryLayout<Quantity>.stride)
            prefetchArray(at: view + Self.seriesMetersOffset, bytes: 5 * MemoryLayout<UsageSeries.Meter>.stride)
        }
    }

    // Where the arrays are within an entry. An absent breakdown or series leaves bytes there
    // that are no address: asking for them is harmless (a prefetch never faults).
    static let openOffset = MemoryLayout<SubscriptionView>.offset(of: \.open)!
    static let groupsOffset =
        MemoryLayout<SubscriptionView>.offset(of: \.breakdown)! + MemoryLayout<Breakdown>.offset(of: \.groups)!
    static let quantitiesOffset =
        MemoryLayout<SubscriptionView>.offset(of: \.breakdown)! + MemoryLayout<Breakdown>.offset(of: \.quantities)!
    static let seriesMetersOffset =
        MemoryLayout<SubscriptionView>.offset(of: \.series)! + MemoryLayout<UsageSeries>.offset(of: \.meters)!
}
