import Billing
import Wire

/// One subscription's usage in the current billing period per meter and step, for the run-rate
/// page's chart. A step is a UTC day; when the period is longer than 31 days (yearly and longer
/// plans) it is a UTC calendar month, so a series never holds more than a few dozen steps.
///
/// A step's figure follows the meter's rule: the usage recorded in it for `sum` and waterfall
/// meters, the largest report for `max` gauges, the latest for `last` gauges.
///
/// Memory is what bounds this design (the read model's budget is a kilobyte per subscription
/// meter): only steps with usage are kept, and only the current step's figures as quantities (16
/// bytes each, changed by every usage). Earlier steps are packed into a few bytes per entry when
/// the step ends, as usage never goes back to them.
struct UsageSeries: Sendable, Equatable {
    /// How long a step is.
    enum Step: String, Sendable {
        case day, month
    }

    struct Meter: Sendable, Equatable {
        var name: String
        var kind: MeterRunRate.Kind
    }

    /// Marks a meter without usage in the current step (usage quantities are never negative).
    private static let none = Quantity(units: -1)

    /// The period the series belongs to: usage of another period starts a new series.
    let periodStart: Timestamp
    /// The meters with usage this period, in the order of their first usage.
    private(set) var meters: [Meter] = []
    /// The current step's figure of each of `meters`, or `none`.
    private var current: [Quantity] = []
    /// The step `current` belongs to.
    private var currentStep = 0
    /// The earlier steps' figures in step order, each entry `meter index, step, exponent,
    /// mantissa` (the figure is mantissa × 10^exponent units; the numbers as LEB128 varints).
    private var packed: [UInt8] = []

    init(periodStart: Timestamp) { self.periodStart = periodStart }

    /// The step length of `period`'s series.
    static func step(of period: BillingPeriod) -> Step {
        period.end.microseconds - period.start.microseconds <= 31 * Timestamp.microsecondsPerDay ? .day : .month
    }

    /// The number of the step of `period` that `time` falls in; times outside the period count in
    /// its first or last step (usage before a future subscription start counts in its first period).
    static func index(of time: Timestamp, in period: BillingPeriod) -> Int {
        let clamped = min(max(time, period.start), period.end.adding(microseconds: -1))
        switch step(of: period) {
        case .day:
            return Int((clamped.microseconds - period.start.microseconds) / Timestamp.microsecondsPerDay)
        case .month:
            let (startYear, startMonth, _) = period.start.date
            let (year, month, _) = clamped.date
            return (year - startYear) * 12 + (month - startMonth)
        }
    }

    /// The UTC date (`YYYY-MM-DD`) step `index` of `period` begins on.
    static func date(ofStep index: Int, in period: BillingPeriod) -> String {
        let start: Timestamp
        switch step(of: period) {
        case .day:
            start = period.start.adding(microseconds: Int64(index) * Timestamp.microsecondsPerDay)
        case .month:
            guard index > 0 else { return String(period.start.iso8601.prefix(10)) }
            let (year, month, _) = period.start.date
            let months = year * 12 + (month - 1) + index
            start = Timestamp(year: months / 12, month: months % 12 + 1, day: 1)
        }
        return String(start.iso8601.prefix(10))
    }

    /// The index of meter `name` in `meters`, if it has usage this period.
    func meterIndex(named name: String) -> Int? { meters.firstIndex { $0.name == name } }

    /// Adds meter `name`, billed by `kind`, and returns its index.
    mutating func addMeter(_ name: String, kind: MeterRunRate.Kind) -> Int {
        // One meter at a time and once per period: room for exactly one more, not double.
        meters.reserveCapacity(meters.count + 1)
        current.reserveCapacity(current.count + 1)
        meters.append(Meter(name: name, kind: kind))
        current.append(Self.none)
        return meters.count - 1
    }

    /// Records usage `quantity` of meter `index` in step `step` (never an earlier step than the
    /// last one recorded: log time does not go back; an earlier one counts in the current step).
    /// Records `quantity` for meter `name` at `step` when the series is of the period starting at
    /// `periodStart` and already has the meter; false (nothing changed) otherwise. Called through a
    /// dictionary's values in place, so the series is neither copied nor taken out.
    mutating func recordIfKnown(_ quantity: Quantity, meterName name: String, periodStart start: Timestamp, step: Int) -> Bool {
        guard periodStart == start, let index = meterIndex(named: name) else { return false }
        record(quantity, meter: index, step: step)
        return true
    }

    mutating func record(_ quantity: Quantity, meter index: Int, step: Int) {
        if step > currentStep {
            packCurrentStep()
            currentStep = step
        }
        let figure = current[index]
        guard figure != Self.none else {
            current[index] = quantity
            return
        }
        switch meters[index].kind {
        case .sum, .waterfall: current[index] = figure.figureAdding(quantity)
        case .max: current[index] = max(figure, quantity)
        case .last: current[index] = quantity
        }
    }

    /// Meter `index`'s figures, one per step with usage, in step order.
    func points(meter index: Int) -> [(step: Int, quantity: Quantity)] {
        var points: [(step: Int, quantity: Quantity)] = []
        var offset = 0
        while offset < packed.count {
            let entry = unpack(at: &offset)
            if entry.meter == index { points.append((entry.step, entry.quantity)) }
        }
        if current[index] != Self.none { points.append((currentStep, current[index])) }
        return points
    }

    /// Heap bytes the series' arrays hold (without the allocator's rounding, and without the
    /// view's dictionary entry for it), for measuring the read model's memory.
    var heapBytes: Int {
        let header = 32
        return header + meters.capacity * MemoryLayout<Meter>.stride + header + current.capacity * MemoryLayout<Quantity>.stride
            + (packed.capacity > 0 ? header + packed.capacity : 0)
    }

    // MARK: - Packing

    private mutating func packCurrentStep() {
        var entries: [UInt8] = []
        for index in current.indices where current[index] != Self.none {
            Self.appendVarint(UInt128(index), to: &entries)
            Self.appendVarint(UInt128(currentStep), to: &entries)
            var mantissa = UInt128(current[index].units)
            var exponent: UInt8 = 0
            // Usage is mostly whole or has a few decimals: drop the zeros of the 18-digit scale
            // in big strides first, as 128-bit divisions are not free.
            for (power, digits) in [(UInt128(1_000_000_000), UInt8(9)), (1000, 3), (10, 1)] {
                while mantissa != 0, mantissa % power == 0 {
                    mantissa /= power
                    exponent += digits
                }
            }
            entries.append(exponent)
            Self.appendVarint(mantissa, to: &entries)
            current[index] = Self.none
        }
        // Exactly what is needed: growing by doubling would waste up to half of it, for good.
        packed.reserveCapacity(packed.count + entries.count)
        packed += entries
    }

    private func unpack(at offset: inout Int) -> (meter: Int, step: Int, quantity: Quantity) {
        let meter = Int(Self.varint(packed, at: &offset))
        let step = Int(Self.varint(packed, at: &offset))
        let exponent = packed[offset]
        offset += 1
        var units = Self.varint(packed, at: &offset)
        for _ in 0..<exponent { units *= 10 }
        return (meter, step, Quantity(units: Int128(units)))
    }

    private static func appendVarint(_ value: UInt128, to bytes: inout [UInt8]) {
        var rest = value
        while rest >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: rest) | 0x80)
            rest >>= 7
        }
        bytes.append(UInt8(rest))
    }

    private static func varint(_ bytes: [UInt8], at offset: inout Int) -> UInt128 {
        var value: UInt128 = 0
        var shift: UInt128 = 0
        while true {
            let byte = bytes[offset]
            offset += 1
            value |= UInt128(byte & 0x7F) << shift
            if byte < 0x80 { return value }
            shift += 7
        }
    }
}
