import JetStreamStore
import Testing

@Suite("Group fold")
struct GroupFoldTests {
    private func chunk(_ sequence: UInt64, _ group: String, _ index: Int, _ count: Int) -> GroupFold.Chunk {
        GroupFold.Chunk(streamSequence: sequence, group: group, index: index, count: count, payload: [UInt8(sequence)])
    }

    @Test("a one-message group completes at once")
    func single() {
        var fold = GroupFold()
        #expect(fold.take(chunk(2, "a.1", 0, 1))?.map(\.streamSequence) == [2])
        #expect(!fold.isWaiting)
    }

    @Test("consecutive chunks complete their group once the last arrives")
    func chunks() {
        var fold = GroupFold()
        #expect(fold.take(chunk(2, "a.1", 0, 3)) == nil)
        #expect(fold.take(chunk(3, "a.1", 1, 3)) == nil)
        #expect(fold.take(chunk(4, "a.1", 2, 3))?.map(\.streamSequence) == [2, 3, 4])
    }

    @Test("a group interrupted by another writer's message is dropped, and the other counts")
    func interrupted() {
        var fold = GroupFold()
        #expect(fold.take(chunk(2, "a.1", 0, 2)) == nil)
        #expect(fold.take(chunk(3, "b.1", 0, 1))?.map(\.streamSequence) == [3])
        // The rest of the dropped group can never revive it.
        #expect(fold.take(chunk(4, "a.1", 1, 2)) == nil)
        #expect(fold.abandoned == 1)
        #expect(fold.take(chunk(5, "a.2", 0, 1))?.map(\.streamSequence) == [5])
    }

    @Test("chunk positions are read strictly")
    func positions() {
        #expect(GroupFold.position("0/1")! == (0, 1))
        #expect(GroupFold.position("2/3")! == (2, 3))
        for bad in ["1/1", "-1/2", "0/0", "a/b", "1", "0/1/2", ""] { #expect(GroupFold.position(bad) == nil, "\(bad)") }
    }
}
