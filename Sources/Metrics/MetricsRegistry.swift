import Synchronization

/// The metrics of one process: counters, gauges and histograms registered by name, and figures
/// computed when they are read, written out in Prometheus's text format (`exposition()`).
///
/// Pure bookkeeping: no I/O, no clock. Every metric is safe to update from any thread; an update is
/// a lock and an addition, so the hot paths that count (ingest's commit, a fold) add their counts
/// once per batch, never once per event.
public final class MetricsRegistry: Sendable {
    private let families = Mutex([Entry]())

    /// An empty registry.
    public init() {}

    /// What a family of metrics is, for its `# TYPE` line.
    public enum Kind: String, Sendable {
        case counter, gauge, histogram
    }

    /// One metric of a family read at exposition time: its label values (in the family's label
    /// order) and its value.
    public struct Sample: Sendable, Equatable {
        public var labels: [String]
        public var value: Double

        /// A sample with `labels` (one value per label name of its family) and `value`.
        public init(_ labels: [String], _ value: Double) {
            self.labels = labels
            self.value = value
        }

        /// A sample of a family without labels.
        public init(_ value: Double) { self.init([], value) }
    }

    /// A family: a name, its help, its label names, and where its samples come from.
    private struct Entry: Sendable {
        var name: String
        var help: String
        var kind: Kind
        var labelNames: [String]
        var write: @Sendable (inout [UInt8]) -> Void
    }

    private func add(_ family: Entry) {
        families.withLock { families in
            precondition(!families.contains { $0.name == family.name }, "metric \(family.name) registered twice")
            families.append(family)
        }
    }

    /// A counter without labels.
    public func counter(_ name: String, _ help: String) -> Counter {
        counters(name, help, labels: []).labels()
    }

    /// A family of counters told apart by `labels`; `labels(...)` gives each one.
    public func counters(_ name: String, _ help: String, labels: [String]) -> Family<Counter> {
        let family = Family<Counter>(labelNames: labels) { Counter() }
        add(
            Entry(name: name, help: help, kind: .counter, labelNames: labels) { out in
                for (values, counter) in family.members { TextExposition.sample(name, labels, values, counter.value, to: &out) }
            })
        return family
    }

    /// A gauge without labels.
    public func gauge(_ name: String, _ help: String) -> Gauge {
        gauges(name, help, labels: []).labels()
    }

    /// A family of gauges told apart by `labels`.
    public func gauges(_ name: String, _ help: String, labels: [String]) -> Family<Gauge> {
        let family = Family<Gauge>(labelNames: labels) { Gauge() }
        add(
            Entry(name: name, help: help, kind: .gauge, labelNames: labels) { out in
                for (values, gauge) in family.members { TextExposition.sample(name, labels, values, gauge.value, to: &out) }
            })
        return family
    }

    /// A histogram without labels, with the upper bounds `buckets` (ascending; `+Inf` is added).
    public func histogram(_ name: String, _ help: String, buckets: [Double]) -> Histogram {
        precondition(!buckets.isEmpty && zip(buckets, buckets.dropFirst()).allSatisfy { $0 < $1 }, "buckets must ascend")
        let histogram = Histogram(bounds: buckets)
        add(Entry(name: name, help: help, kind: .histogram, labelNames: []) { out in histogram.write(name, to: &out) })
        return histogram
    }

    /// Figures read when the metrics are: `samples` runs at every exposition (on the thread that
    /// serves it), so it must be quick and must not block for long.
    public func collect(_ name: String, _ help: String, kind: Kind, labels: [String] = [], _ samples: @escaping @Sendable () -> [Sample]) {
        precondition(kind != .histogram, "a collected metric is a counter or a gauge")
        add(
            Entry(name: name, help: help, kind: kind, labelNames: labels) { out in
                for sample in samples() where sample.labels.count == labels.count {
                    TextExposition.sample(name, labels, sample.labels, sample.value, to: &out)
                }
            })
    }

    /// Every family in the order registered, in the text format (version 0.0.4).
    public func exposition() -> [UInt8] {
        let all = families.withLock { $0 }
        var out: [UInt8] = []
        out.reserveCapacity(4096)
        for family in all {
            TextExposition.header(family.name, help: family.help, kind: family.kind.rawValue, to: &out)
            family.write(&out)
        }
        return out
    }

    /// Metrics of one kind told apart by label values, created on first use.
    public final class Family<Metric: Sendable>: Sendable {
        let labelNames: [String]
        private let make: @Sendable () -> Metric
        private let state = Mutex(Members())

        private struct Members {
            var byValues: [[String]: Metric] = [:]
            /// The label values in the order first used.
            var order: [[String]] = []
        }

        init(labelNames: [String], make: @escaping @Sendable () -> Metric) {
            self.labelNames = labelNames
            self.make = make
        }

        /// The metric with these label values (one per label name, in order), created at zero.
        public func labels(_ values: String...) -> Metric { labels(values) }

        /// The metric with these label values (one per label name, in order), created at zero.
        public func labels(_ values: [String]) -> Metric {
            precondition(values.count == labelNames.count, "\(labelNames.count) label values expected")
            return state.withLock { state in
                if let metric = state.byValues[values] { return metric }
                let metric = make()
                state.byValues[values] = metric
                state.order.append(values)
                return metric
            }
        }

        /// Every metric so far, in the order first used.
        var members: [([String], Metric)] { state.withLock { state in state.order.map { ($0, state.byValues[$0]!) } } }
    }
}

/// A value that only goes up (events, bytes), from zero when the process starts.
public final class Counter: Sendable {
    private let current = Mutex(0.0)

    init() {}

    /// Adds `amount` (never negative: a counter that went down would read as a restart).
    public func add(_ amount: Double = 1) {
        precondition(amount >= 0, "a counter only goes up")
        current.withLock { $0 += amount }
    }

    /// Adds a whole number.
    public func add(_ amount: Int) { add(Double(amount)) }

    /// The count so far.
    public var value: Double { current.withLock { $0 } }
}

/// A value that goes up and down (connections, items waiting).
public final class Gauge: Sendable {
    private let current = Mutex(0.0)

    init() {}

    /// Sets the value.
    public func set(_ value: Double) { current.withLock { $0 = value } }

    /// Sets the value to a whole number.
    public func set(_ value: Int) { set(Double(value)) }

    /// Adds `amount` (negative to take away).
    public func add(_ amount: Double) { current.withLock { $0 += amount } }

    /// The value now.
    public var value: Double { current.withLock { $0 } }
}

/// Observations counted in buckets by upper bound, with their sum and count (latencies, sizes).
public final class Histogram: Sendable {
    /// The upper bounds, ascending, without `+Inf`.
    public let bounds: [Double]
    private let state: Mutex<Observations>

    private struct Observations {
        /// Per bound, the observations above the previous bound.
        var counts: [UInt64]
        var sum = 0.0
        var count: UInt64 = 0
    }

    init(bounds: [Double]) {
        self.bounds = bounds
        state = Mutex(Observations(counts: [UInt64](repeating: 0, count: bounds.count)))
    }

    /// Counts one observation of `value`.
    public func observe(_ value: Double) {
        let bucket = bounds.firstIndex { value <= $0 }
        state.withLock { state in
            if let bucket { state.counts[bucket] += 1 }
            state.sum += value
            state.count += 1
        }
    }

    /// The cumulative count per bound (the last for `+Inf`), the sum and the count.
    public var snapshot: (cumulative: [UInt64], sum: Double, count: UInt64) {
        let (counts, sum, count) = state.withLock { ($0.counts, $0.sum, $0.count) }
        var running: UInt64 = 0
        var cumulative = counts.map { bucket -> UInt64 in
            running += bucket
            return running
        }
        cumulative.append(count)
        return (cumulative, sum, count)
    }

    func write(_ name: String, to out: inout [UInt8]) {
        let (cumulative, sum, count) = snapshot
        for (index, bound) in bounds.enumerated() {
            TextExposition.sample(name + "_bucket", ["le"], [TextExposition.number(bound)], Double(cumulative[index]), to: &out)
        }
        TextExposition.sample(name + "_bucket", ["le"], ["+Inf"], Double(count), to: &out)
        TextExposition.sample(name + "_sum", [], [], sum, to: &out)
        TextExposition.sample(name + "_count", [], [], Double(count), to: &out)
    }
}
