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
        /// The names and plan the entries of the last closed hour shared, for the next hour's
        /// entries to share again: made anew for every subscription with usage, each hour, the box
        /// was an allocation and a free of memory in no cache (2.65% of meter-query's samples
        /// in the query case's catch-up). Not part of what the entry keeps: left out of `==`
        /// (a snapshot does not hold it).
        var lastTerms: Boxed<OpenTerms>?

        static func == (lhs: SubscriptionView, rhs: SubscriptionView) -> Bool {
            lhs.ledger == rhs.ledger && lhs.market == rhs.market && lhs.breakdown == rhs.breakdown && lhs.series == rhs.series
                && lhs.prices == rhs.prices && lhs.open == rhs.open
        }

        /// Whether nothing is kept: the entry can go.
        var isEmpty: Bool {
            ledger.isEmpty && market == nil && breakdown == nil && series == nil && prices == nil && open.isEmpty
        }

        /// Adds `change` to the open usage of `(meterName, dimension, hour)`; a new entry takes the
        /// subscription's names and plan from `terms()` (asked only then), sharing another entry's
        /// copy of them when it holds the same. True when the subscription had no open usage before.
        mutating func addUsage(
            meterName: String, dimension: String, hour: Timestamp, terms: () -> (resource: ResourceName, planId: String),
            _ change: UsageChange
        ) -> Bool {
            for index in open.indices
            where open[index].hour == hour && open[index].meterName == meterName && open[index].dimension == dimension {
                open[index].add(change)
                return false
            }
            let (resource, planId) = terms()
            let wanted = OpenTerms(resource: resource, planId: planId)
            let shared: Boxed<OpenTerms>
            if open.isEmpty, let lastTerms, lastTerms.value == wanted {
                shared = lastTerms
            } else {
                shared = .sharing(wanted, with: open.lazy.map(\.terms))
            }
            var usage = OpenUsage(meterName: meterName, dimension: dimension, hour: hour, terms: shared)
            usage.add(change)
            append(usage)
            return open.count == 1
        }

        /// Appends `usage`, growing the table by about an entry at a time past its first four: a
        /// subscription has a few entries an hour, and doubling left room for three more when the
        /// fifth came. The first entry makes room for four: grown one at a time from none, the
        /// table was made again for nearly every entry.
        mutating func append(_ usage: OpenUsage) {
            if open.count == open.capacity { open.reserveCapacity(open.isEmpty ? 4 : open.count + 1 + open.count / 8) }
            open.append(usage)
        }

        /// What `takeClosed` left of a subscription's entry.
        enum Remaining {
            /// Usage of an hour not ended stays open.
            case open
            /// Nothing is open, and the entry keeps something else.
            case closed
            /// Nothing is kept at all: the entry can go.
            case empty
        }

        /// Moves the open usage of the hours that ended by `now` to `closed`, in no particular order
        /// (moved, not copied: each copy retained the names and the terms box, released again when
        /// the table was emptied). Says what is left, answered in place: asking the table's entry
        /// for `isEmpty` afterwards copied the whole entry.
        mutating func takeClosed(key: String, before now: Timestamp, into closed: inout [KeyedUsage]) -> Remaining {
            var kept: [OpenUsage] = []
            while let usage = open.popLast() {
                if usage.hour.adding(microseconds: Timestamp.microsecondsPerHour) <= now {
                    lastTerms = usage.terms
                    closed.append(KeyedUsage(key: key, usage: usage))
                } else {
                    kept.append(usage)
                }
            }
            // Emptied, the table keeps its room for the next hour's usage, in the entry (read ahead
            // with it): given back and made again every hour, it was an allocation and a free of
            // memory in no cache for every subscription with usage, each hour (in the query
            // case's catch-up, making them 2.17% of meter-query's samples, and the hour close
            // 12.09% with the frees, 9.63% without: docs/BENCHMARKS.md).
            if !kept.isEmpty { open = kept }
            return !open.isEmpty ? .open : isEmpty ? .empty : .closed
        }
    }

    /// An entry of open usage with the key of its subscription (for ordering them across subscriptions).
    struct KeyedUsage {
        var key: String
        var usage: OpenUsage
    }

    /// The usage of one meter and dimension in one hour not closed yet, in 80 bytes: the names
    /// and plan are shared by the subscription's entries while they are the same, and the totals
    /// only credits and voids change are kept out of line (a busy hour has one entry per
    /// subscription-meter, the read model's largest part then).
    struct OpenUsage: Equatable, Sendable {
        // In this order: a quantity is aligned to 16 bytes, so the hour between the names and the
        // quantities would leave 8 bytes of padding (96 bytes an entry instead of 80).
        var meterName: String
        var dimension: String
        var quantity: Quantity
        var billed: Quantity
        var hour: Timestamp
        /// The subscription's names and plan when the entry opened, and its rarely changed totals.
        private(set) var terms: Boxed<OpenTerms>

        /// An entry with nothing counted yet.
        init(meterName: String, dimension: String, hour: Timestamp, terms: Boxed<OpenTerms>) {
            self.meterName = meterName
            self.dimension = dimension
            self.hour = hour
            self.quantity = .zero
            self.billed = .zero
            self.terms = terms
        }

        /// An entry with `total`, sharing one of `others` when equal to its terms (entries read
        /// back from a snapshot share as they did when folded).
        init(
            meterName: String, dimension: String, hour: Timestamp, total: UsageTotal, sharingWith others: some Sequence<Boxed<OpenTerms>>
        ) {
            let terms = OpenTerms(
                resource: total.resource, planId: total.planId, netted: total.netted, voided: total.voided, reversed: total.reversed)
            self.init(meterName: meterName, dimension: dimension, hour: hour, terms: .sharing(terms, with: others))
            quantity = total.quantity
            billed = total.billed
        }

        var total: UsageTotal {
            let terms = terms.value
            var total = UsageTotal(resource: terms.resource, planId: terms.planId, quantity: quantity, billed: billed)
            total.netted = terms.netted
            total.voided = terms.voided
            total.reversed = terms.reversed
            return total
        }

        /// Adds `change` (the totals saturate: they are shown, never billed).
        mutating func add(_ change: UsageChange) {
            quantity = quantity.figureAdding(change.quantity)
            billed = billed.figureAdding(change.billed)
            guard change.netted != .zero || change.voided != .zero || change.reversed != .zero else { return }
            var changed = terms.value
            changed.netted = changed.netted.figureAdding(change.netted)
            changed.voided = changed.voided.figureAdding(change.voided)
            changed.reversed = changed.reversed.figureAdding(change.reversed)
            terms = Boxed(changed)
        }
    }

    /// What one usage event, credit or void adds to an entry of open usage.
    struct UsageChange: Sendable {
        var quantity = Quantity.zero
        var billed = Quantity.zero
        var netted = Quantity.zero
        var voided = Quantity.zero
        var reversed = Quantity.zero
    }

    /// An open usage entry's subscription names and plan (as they were when it opened) and its
    /// totals of credits and voids, boxed (`Boxed`) so that one box serves every entry of a
    /// subscription with the same ones.
    struct OpenTerms: Equatable, Sendable {
        var resource: ResourceName
        var planId: String
        var netted = Quantity.zero
        var voided = Quantity.zero
        var reversed = Quantity.zero
    }
}
