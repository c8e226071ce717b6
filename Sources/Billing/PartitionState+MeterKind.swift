import Wire

extension PartitionState {
    /// How meter `meterName` of the subscription with key `key` bills (summed, a gauge, tiers), or
    /// nil when there is no such meter. Unlike `runRate`, it computes no figures and allocates
    /// nothing, so a read model may ask it while folding. `hint`: a hash the key probably has (a
    /// record's `nameHash`), tried first.
    public func meterKind(ofKey key: String, meterName: String, hint: Int? = nil) -> MeterRunRate.Kind? {
        guard let index = subscriptions.index(forKey: key, hint: hint) else { return nil }
        let meters = subscriptions.values[index].meters
        guard let meter = meters.first(where: { $0.name == meterName }) else { return nil }
        switch meter.rule {
        case .sum: return .sum
        case .gauge(_, _, let aggregation): return aggregation == .max ? .max : .last
        case .waterfall: return .waterfall
        }
    }
}
