public import Billing
public import Metrics
public import Wire

/// The figures of a process that folds the log (the aggregator, the query service), per partition:
/// how far behind ingest it is, and what of the billing state an operator watches: items waiting
/// to be reported, the oldest of them against the marketplace's 24-hour window, those at risk,
/// unprocessable records, rejections and conflicts. Read when scraped.
public enum FoldMetrics {
    /// Items whose hour is this old and still pending are at risk (the marketplace refuses 24 h).
    public static let atRiskMicroseconds: Int64 = 20 * Timestamp.microsecondsPerHour

    /// What one partition's state says, computed under its owner's lock.
    public struct Figures: Sendable {
        public var pending = 0
        public var atRisk = 0
        public var oldestPendingHour: Timestamp?
        public var time: Timestamp?
        public var unprocessable = 0
        public var rejected = 0
        public var conflicts = 0

        /// The figures of `state`.
        public init(_ state: PartitionState) {
            pending = state.pendingCount
            time = state.time
            unprocessable = state.unprocessable.count
            rejected = state.rejected.count
            conflicts = state.conflicts.count
            guard pending > 0 else { return }
            let pendingItems = state.pending
            oldestPendingHour = pendingItems.first?.effectiveStartTime
            if let now = state.time {
                atRisk = pendingItems.count { now.microseconds - $0.effectiveStartTime.microseconds >= FoldMetrics.atRiskMicroseconds }
            }
        }
    }

    /// One partition: its number, the next sequence folded, ingest's next sequence as last seen,
    /// and its figures.
    public struct Partition: Sendable {
        public var partition: Int
        public var position: @Sendable () -> UInt64
        public var ingestNext: @Sendable () -> UInt64?
        public var figures: @Sendable () -> Figures

        public init(
            partition: Int, position: @escaping @Sendable () -> UInt64, ingestNext: @escaping @Sendable () -> UInt64?,
            figures: @escaping @Sendable () -> Figures
        ) {
            self.partition = partition
            self.position = position
            self.ingestNext = ingestNext
            self.figures = figures
        }
    }

    /// Registers the figures of `partitions` as `metering_<component>_...{partition="p"}`.
    public static func register(_ registry: MetricsRegistry, component: String, partitions: [Partition]) {
        let prefix = "metering_" + component
        func each(_ name: String, _ help: String, _ value: @escaping @Sendable (Partition, Figures) -> Double?) {
            registry.collect(prefix + name, help, kind: .gauge, labels: ["partition"]) {
                partitions.compactMap { partition in
                    value(partition, partition.figures()).map { MetricsRegistry.Sample([String(partition.partition)], $0) }
                }
            }
        }
        each("_lag_records", "Records ingest has in the partition that are not folded yet.") { partition, _ in
            let position = partition.position()
            let head = partition.ingestNext() ?? position
            return Double(head > position ? head - position : 0)
        }
        each("_log_time_seconds", "The partition's log clock (enqueued time of its last record), in Unix seconds.") {
            $1.time.map { Double($0.microseconds) / 1e6 }
        }
        each("_pending_items", "Items ready to report to the marketplace and not settled yet.") { Double($1.pending) }
        each("_at_risk_items", "Pending items whose hour is 20 hours old or more by the log clock (refused after 24).") {
            Double($1.atRisk)
        }
        each("_oldest_pending_age_seconds", "Age of the oldest pending item's hour by the log clock (0 when none); refused at 86400.") {
            guard let hour = $1.oldestPendingHour, let now = $1.time else { return 0 }
            return Double(max(0, now.microseconds - hour.microseconds)) / 1e6
        }
        each(
            "_oldest_pending_hour_seconds", "The oldest pending item's hour in Unix seconds (absent when none), for age by the real clock."
        ) {
            $1.oldestPendingHour.map { Double($0.microseconds) / 1e6 }
        }
        each("_unprocessable_records", "Records that could not be billed (unknown subscription or meter), kept until removed.") {
            Double($1.unprocessable)
        }
        each("_rejected_items", "Items the marketplace refused for good.") { Double($1.rejected) }
        each("_conflict_items", "Items whose slot the marketplace holds with another quantity.") { Double($1.conflicts) }
    }
}
