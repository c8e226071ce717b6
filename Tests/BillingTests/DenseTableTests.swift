import Testing

@testable import Billing

@Suite("The dense table")
struct DenseTableTests {
    /// A small generator, so that a failing run can be repeated from its seed.
    struct Generator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return state ^ (state >> 29)
        }
    }

    /// Checks that `table` holds exactly `model`, that every position is reachable and that the
    /// slots agree with the positions.
    func expect(_ table: DenseTable<String, Int>, equals model: [String: Int]) {
        #expect(table.count == model.count)
        for (key, value) in model {
            guard let position = table.index(forKey: key) else {
                Issue.record("\(key) not found")
                return
            }
            #expect(table.keys[position] == key)
            #expect(table.values[position] == value)
            #expect(table[key] == value)
        }
        #expect(Dictionary(uniqueKeysWithValues: table.map { ($0.key, $0.value) }) == model)
        #expect(table.slots.filter { $0 != 0 }.count == table.count)
        #expect(table.slots.isEmpty || table.count * 2 <= table.slots.count)
    }

    @Test("random inserts, changes and removals leave it holding what a dictionary holds", arguments: 0..<8)
    func randomOperations(seed: Int) {
        var random = Generator(state: UInt64(seed) + 1)
        var table = DenseTable<String, Int>()
        var model: [String: Int] = [:]
        // Few distinct keys, so removals and re-inserts meet long probe runs.
        let keys = (0..<300).map { "sub-\($0)" }
        for step in 0..<6_000 {
            let key = keys[Int(random.next() % UInt64(keys.count))]
            switch random.next() % 5 {
            case 0, 1:
                table[key] = step
                model[key] = step
            case 2:
                table[key] = nil
                model[key] = nil
            case 3:
                if let position = table.index(forKey: key) {
                    let removed = table.remove(at: position)
                    #expect(removed.key == key)
                    #expect(removed.value == model.removeValue(forKey: key))
                } else {
                    #expect(model[key] == nil)
                }
            default:
                if let position = table.index(forKey: key) { table.values[position] += 1 }
                if model[key] != nil { model[key]! += 1 }
            }
            if step % 500 == 0 { expect(table, equals: model) }
        }
        expect(table, equals: model)
        while let key = model.keys.first {
            table[key] = nil
            model[key] = nil
        }
        expect(table, equals: model)
        #expect(table.index(forKey: "sub-1") == nil)
    }

    @Test("removing an entry moves the last one into its place and both are still found")
    func removalMovesTheLast() {
        var table = DenseTable<String, Int>()
        for index in 0..<5 { table["k\(index)"] = index }
        let removed = table.remove(at: 1)
        #expect(removed == ("k1", 1))
        #expect(table.keys == ["k0", "k4", "k2", "k3"])
        #expect(table.index(forKey: "k4") == 1)
        #expect(table.index(forKey: "k1") == nil)
        let last = table.remove(at: 3)
        #expect(last == ("k3", 3))
        #expect(table.keys == ["k0", "k4", "k2"])
    }

    @Test("tables with the same entries in another order are equal; another value is not")
    func equalityIgnoresOrder() {
        var one = DenseTable<String, Int>()
        var two = DenseTable<String, Int>()
        for index in 0..<50 { one["k\(index)"] = index }
        for index in (0..<50).reversed() { two["k\(index)"] = index }
        #expect(one == two)
        two["k7"] = 8
        #expect(one != two)
        two["k7"] = 7
        two["k50"] = 50
        #expect(one != two)
    }

    @Test("the position read ahead is the one a lookup finds, and no position for a key not there")
    func prefetchEntryGuessesThePosition() {
        var table = DenseTable<String, Int>()
        table.reserveCapacity(1_000)
        for index in 0..<1_000 { table["q-\(index)"] = index }
        for index in 0..<1_000 {
            let hash = DenseTable<String, Int>.hash("q-\(index)")
            table.prefetchSlot(hash: hash)
            #expect(table.prefetchEntry(hash: hash) == table.index(forKey: "q-\(index)", hash: hash))
        }
        #expect(DenseTable<String, Int>().prefetchEntry(hash: 42) == nil)
        var seen = 0
        table.withValue(at: 999) { seen = $0.pointee }
        #expect(seen == table.values[999])
        table.withValue(at: 1_000) { _ in Issue.record("out of range") }
    }
}
