import Testing
import Wire

@testable import Billing

@Suite("Pending items in one table per hour")
struct PendingTableTests {
    typealias Slot = PartitionState.Slot
    static let terms = Boxed(Subscription.NamesAndPlan(resource: ResourceName(resourceId: "s"), planId: "p"))
    static let ten = Timestamp(microseconds: 1_704_880_800_000_000)

    static func hour(_ index: Int) -> Timestamp { ten.adding(microseconds: Int64(index) * Timestamp.microsecondsPerHour) }

    static func item(_ quantity: Int) -> PartitionState.PendingItem {
        PartitionState.PendingItem(quantity: Quantity(quantity), withdrawn: .zero, readySince: ten, terms: terms)
    }

    @Test("items of several hours are found, changed, counted and removed by slot; an hour's table goes with its last item")
    func itemsBySlot() {
        var table = PartitionState.PendingTable()
        let slots = (0..<3).flatMap { hour in ["a", "b"].map { Slot(subscription: $0, dimension: "d", hour: Self.hour(hour)) } }
        for (index, slot) in slots.enumerated() { #expect(table.updateValue(Self.item(index + 1), forKey: slot) == nil) }
        #expect(table.count == 6)
        #expect(table[slots[3]]?.quantity == Quantity(4))
        #expect(table.updateValue(Self.item(40), forKey: slots[3])?.quantity == Quantity(4), "a replaced item is returned")
        #expect(table.count == 6)
        // Changed in place; a slot without an item is not made.
        #expect(table.modify(slots[0]) { $0.quantity = Quantity(10) } != nil)
        #expect(table[slots[0]]?.quantity == Quantity(10))
        let missing = Slot(subscription: "c", dimension: "d", hour: Self.hour(0))
        #expect(table.modify(missing) { $0.quantity = Quantity(1) } == nil)
        #expect(!table.contains(missing) && table.count == 6)
        // Added when missing, merged when present.
        var made = 0
        func make() -> PartitionState.PendingItem {
            made += 1
            return Self.item(0)
        }
        table.update(missing, orAdd: make) { $0.quantity = $0.quantity + Quantity(5) }
        table.update(missing, orAdd: make) { $0.quantity = $0.quantity + Quantity(5) }
        #expect(made == 1 && table[missing]?.quantity == Quantity(10) && table.count == 7)
        // Removing every item of hour 1 removes its table: the entries no longer hold that hour.
        #expect(table.removeValue(forKey: slots[2])?.quantity == Quantity(3))
        #expect(table.removeValue(forKey: slots[2]) == nil)
        table[slots[3]] = nil
        #expect(table.count == 5)
        #expect(Set(table.entries.map(\.key.hour)) == [Self.hour(0), Self.hour(2)])
        #expect(table.entries.map(\.value.quantity).reduce(.zero, +) == Quantity(10 + 2 + 5 + 6 + 10))
    }

    @Test("two tables holding the same items are equal, whatever was added and removed on the way")
    func equalityIgnoresHistory() {
        var left = PartitionState.PendingTable()
        var right = PartitionState.PendingTable()
        let slots = (0..<40).map { Slot(subscription: "s\($0 % 7)", dimension: "d\($0 % 3)", hour: Self.hour($0 % 5)) }
        for (index, slot) in slots.enumerated() { left[slot] = Self.item(index) }
        for (index, slot) in slots.enumerated().reversed() { right[slot] = Self.item(index) }
        // Items of another hour, added and settled again: their table comes and goes.
        for index in 0..<10 { right[Slot(subscription: "x", dimension: "d", hour: Self.hour(9 + index))] = Self.item(1) }
        for index in 0..<10 { right[Slot(subscription: "x", dimension: "d", hour: Self.hour(9 + index))] = nil }
        #expect(left == right)
        right[slots[0]] = Self.item(99)
        #expect(left != right)
    }
}
