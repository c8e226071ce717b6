import Billing
import Wire

extension PartitionView {
    /// What the read model keeps of one subscription besides its billing state, in one entry of
    /// one table: catching up is bound by memory latency (every usage event reaches a random
    /// subscription, whose figures are cold), and one lookup that reaches all of them costs one
    /// trip to memory where a table per figure cost one each.
    struct SubscriptionView: Equatable, Sendable {
        /// Settled marketplace slots, for a while. Pending slots are not kept here: the billing
        /// state holds every pending item, and a second copy of each would cost the read model more
        /// than anything else it keeps while many items wait for the submitter.
        var ledger: [Slot: SlotStatus] = [:]
        /// The current period's items by marketplace status and dimension, kept as running totals
        /// so a run-rate never scans the period's slots.
        var market: MarketTotals?
        /// The period's usage per meter, property key and value.
        var breakdown: Breakdown?
        /// The period's usage per meter and day (or month), for charts.
        var series: UsageSeries?
        /// The display prices of the plan in force (docs/BILLING.md, "The plan catalog"), when it has prices.
        var prices: DisplayPrices?
        /// Usage of the hours not closed yet, per meter, dimension and hour (a few entries: the
        /// subscription's dimensions in the open hours).
        var open: [OpenUsage] = []

        /// Whether nothing is kept: the entry can go.
        var isEmpty: Bool {
            ledger.isEmpty && market == nil && breakdown == nil && series == nil && prices == nil && open.isEmpty
        }

        /// Changes the open usage of `(meterName, dimension, hour)`, starting from `newTotal()` when
        /// new. True when the subscription had no open usage before.
        mutating func addUsage(
            meterName: String, dimension: String, hour: Timestamp, newTotal: () -> UsageTotal, _ change: (inout UsageTotal) -> Void
        ) -> Bool {
            for index in open.indices
            where open[index].hour == hour && open[index].meterName == meterName && open[index].dimension == dimension {
                change(&open[index].total)
                return false
            }
            var total = newTotal()
            change(&total)
            open.append(OpenUsage(meterName: meterName, dimension: dimension, hour: hour, total: total))
            return open.count == 1
        }

        /// Moves the open usage of the hours that ended by `now` to `closed`; true when some stays open.
        mutating func takeClosed(key: String, before now: Timestamp, into closed: inout [(key: String, usage: OpenUsage)]) -> Bool {
            var kept = 0
            for index in open.indices {
                if open[index].hour.adding(microseconds: Timestamp.microsecondsPerHour) <= now {
                    closed.append((key, open[index]))
                } else {
                    open.swapAt(kept, index)
                    kept += 1
                }
            }
            if kept == 0 {
                // Given back while nothing is open; it grows again with the next hour's usage.
                open = []
            } else {
                open.removeLast(open.count - kept)
            }
            return kept > 0
        }
    }

    /// The usage of one meter and dimension in one hour not closed yet.
    struct OpenUsage: Equatable, Sendable {
        var meterName: String
        var dimension: String
        var hour: Timestamp
        var total: UsageTotal
    }
}
