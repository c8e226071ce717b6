import Wire

extension PartitionState {
    /// The pending items, in one table per hour of their slots. One table of them all grew by
    /// doubling while a partition without a submitter kept adding an hour's items: each growth
    /// made a table twice the size in memory the kernel had to clear, and hashed every item into
    /// it again (3.2% to 7.5% of meter-query's samples in the query case's catch-up, 3 s windows).
    /// An hour's table is made as large as the newest hour's was, so it seldom grows; it goes
    /// once its last item is settled.
    struct PendingTable: Equatable, Sendable {
        private var hours: [Timestamp: [Slot: PendingItem]] = [:]
        /// Items in all the tables.
        private(set) var count = 0
        /// The newest hour a table was made for, and the size a table of a newer hour starts with.
        private var newestHour: Timestamp?
        private var sizeHint = 0
        /// The table last reached, found again without hashing its hour (items come an hour at a
        /// time, as a rule); forgotten whenever a table is added or removed, which moves the others.
        private var last: (hour: Timestamp, index: Dictionary<Timestamp, [Slot: PendingItem]>.Index)?

        static func == (lhs: PendingTable, rhs: PendingTable) -> Bool { lhs.hours == rhs.hours }

        /// Every item with its slot, in no particular order.
        var entries: FlattenSequence<Dictionary<Timestamp, [Slot: PendingItem]>.Values> { hours.values.joined() }

        /// The item of `slot`.
        subscript(slot: Slot) -> PendingItem? {
            get { hours[slot.hour]?[slot] }
            set {
                if let newValue { updateValue(newValue, forKey: slot) } else { removeValue(forKey: slot) }
            }
        }

        func contains(_ slot: Slot) -> Bool { hours[slot.hour]?.index(forKey: slot) != nil }

        /// Sets the item of `slot`; the item it replaces, nil when the slot had none.
        @discardableResult
        mutating func updateValue(_ item: PendingItem, forKey slot: Slot) -> PendingItem? {
            let index = table(for: slot.hour)
            let replaced = hours.values[index].updateValue(item, forKey: slot)
            if replaced == nil { count += 1 }
            return replaced
        }

        /// Changes the item of `slot` in place, adding `make()`'s first when the slot has none.
        mutating func update<Result>(_ slot: Slot, orAdd make: () -> PendingItem, _ body: (inout PendingItem) -> Result) -> Result {
            let index = table(for: slot.hour)
            var added = false
            let result = Self.update(&hours.values[index], slot, make, body, added: &added)
            if added { count += 1 }
            return result
        }

        private static func update<Result>(
            _ table: inout [Slot: PendingItem], _ slot: Slot, _ make: () -> PendingItem, _ body: (inout PendingItem) -> Result,
            added: inout Bool
        ) -> Result {
            let before = table.count
            let result = body(&table[slot, default: make()])
            added = table.count > before
            return result
        }

        /// Changes the item of `slot` in place; nil (and nothing changed) when the slot has none.
        mutating func modify<Result>(_ slot: Slot, _ body: (inout PendingItem) -> Result) -> Result? {
            guard let index = hours.index(forKey: slot.hour), let position = hours.values[index].index(forKey: slot) else { return nil }
            return body(&hours.values[index].values[position])
        }

        /// Removes the item of `slot` and returns it; its hour's table goes with its last item.
        @discardableResult
        mutating func removeValue(forKey slot: Slot) -> PendingItem? {
            guard let index = hours.index(forKey: slot.hour), let item = hours.values[index].removeValue(forKey: slot) else { return nil }
            count -= 1
            if hours.values[index].isEmpty {
                hours.remove(at: index)
                last = nil
            }
            return item
        }

        /// The position of the table of `hour`, made when it has none: as large as the newest
        /// hour's, for an hour after it (the next hour's items come as many as the last's, as a
        /// rule), else empty.
        private mutating func table(for hour: Timestamp) -> Dictionary<Timestamp, [Slot: PendingItem]>.Index {
            if let last, last.hour == hour { return last.index }
            if let index = hours.index(forKey: hour) {
                last = (hour, index)
                return index
            }
            var capacity = 0
            if newestHour.map({ hour > $0 }) ?? true {
                if let newestHour, let newest = hours[newestHour]?.count, newest > 0 { sizeHint = newest }
                newestHour = hour
                capacity = sizeHint
            }
            hours[hour] = Dictionary(minimumCapacity: capacity)
            let index = hours.index(forKey: hour)!
            last = (hour, index)
            return index
        }
    }
}
