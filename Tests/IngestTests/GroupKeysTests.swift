import EventStore
import Testing
import Wire

@testable import Ingest

@Suite("A commit group's new keys")
struct GroupKeysTests {
    static func position(_ sequence: Int) -> IdempotencyIndex.Position {
        IdempotencyIndex.Position(partition: sequence % 3, sequence: UInt64(sequence), enqueuedTime: Timestamp(seconds: 5))
    }

    @Test("keys are found by digest and kept once each in the order first placed, through growth and colliding low bits")
    func findsAndOrders() {
        var keys = GroupKeys(capacity: 3)
        var digests: [PayloadDigest] = []
        for index in 0..<5_000 {
            // Every fourth key shares its low bits with another: the high bits tell them apart.
            let digest =
                index % 4 == 0 ? PayloadDigest(high: UInt64(index), low: UInt64(index - index % 8)) : PayloadDigest.hash("key-\(index)")
            digests.append(digest)
            #expect(keys[digest] == nil)
            keys.set(digest, Self.position(index))
        }
        for (index, digest) in digests.enumerated() { #expect(keys[digest] == Self.position(index)) }
        #expect(keys.entries.map(\.digest) == digests)
        // Placed again: the latest position, still once and in its first place.
        keys.set(digests[10], Self.position(99_999))
        #expect(keys[digests[10]] == Self.position(99_999))
        #expect(keys.entries.count == 5_000 && keys.entries[10].position == Self.position(99_999))
        #expect(keys[PayloadDigest(high: 1, low: 2)] == nil)
        #expect(GroupKeys().entries.isEmpty && !keys.entries.isEmpty)
    }
}
