public import Wire

extension Quantity {
    /// The sum, or nil when it would leave `Quantity`'s range: the fold must never trap on a hostile
    /// but valid quantity (each one may be as large as about 1.7·10²⁰ on its own).
    public func adding(_ other: Quantity) -> Quantity? {
        let (sum, overflow) = units.addingReportingOverflow(other.units)
        return overflow ? nil : Quantity(units: sum)
    }

    /// The sum, or the largest quantity when it would overflow: for cumulative tier bounds, where a
    /// bound beyond the range is simply never reached.
    public func saturatingAdding(_ other: Quantity) -> Quantity {
        adding(other) ?? Quantity(units: .max)
    }
}
