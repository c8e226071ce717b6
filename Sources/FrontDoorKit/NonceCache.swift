import Crypto
import Synchronization
import Wire

/// The nonces of the signed requests seen within the clock-skew window, so each is accepted once.
///
/// A request is only accepted while its timestamp is within the skew of the server's clock. Its
/// timestamp is at most `skew` ahead of the time it was first seen, so `retention = 2 × skew`
/// after that moment the request is refused as stale anyway and its nonce can be forgotten.
/// Every entry is kept for the same `retention` from a clock that never goes back here, so they
/// expire in insertion order and a queue sweeps them exactly.
///
/// The cache is bounded: when it is full of live nonces it refuses new ones (the caller answers
/// 503) instead of forgetting any, since forgetting a live nonce would let its request be replayed.
///
/// Entries are a 128-bit digest of (credential, nonce), so a long nonce costs no more memory.
public final class NonceCache: Sendable {
    public let capacity: Int
    /// Seconds a nonce is remembered from when it was first seen.
    public let retention: Int64
    private let state = Mutex(State())

    private struct Key: Hashable {
        var high: UInt64
        var low: UInt64
    }

    private struct State {
        var live: Set<Key> = []
        /// Insertion order with the time each entry may be forgotten; `head` is the oldest.
        var queue: [(key: Key, until: Int64)] = []
        var head = 0
        /// The latest time seen, so a clock that steps back keeps the queue in order.
        var latest = Int64.min
    }

    /// What happened to a nonce.
    public enum Outcome: Equatable, Sendable {
        /// First use: remembered until its window ends.
        case fresh
        /// Seen before within its window: a replay.
        case replayed
        /// The cache is full of live nonces.
        case full
    }

    public init(capacity: Int, retention: Int64) {
        precondition(capacity >= 1 && retention >= 0, "a nonce cache holds at least one nonce for a while")
        self.capacity = capacity
        self.retention = retention
    }

    /// Records `nonce` of `credential` at `now` (Unix seconds), after forgetting what has expired.
    public func use(credential: String, nonce: String, now: Int64) -> Outcome {
        let digest = SHA256.hash(Array("\(credential)\n\(nonce)".utf8))
        var high: UInt64 = 0
        var low: UInt64 = 0
        for index in 0..<8 {
            high = high << 8 | UInt64(digest[index])
            low = low << 8 | UInt64(digest[index + 8])
        }
        let key = Key(high: high, low: low)
        return state.withLock { state in
            state.latest = max(state.latest, now)
            expire(&state, now: state.latest)
            if state.live.contains(key) { return .replayed }
            guard state.live.count < capacity else { return .full }
            state.live.insert(key)
            state.queue.append((key, state.latest + retention))
            return .fresh
        }
    }

    /// How many nonces are remembered.
    public var count: Int { state.withLock { $0.live.count } }

    /// Forgets the entries whose window has ended (all of them: the queue is in expiry order).
    private func expire(_ state: inout State, now: Int64) {
        while state.head < state.queue.count, state.queue[state.head].until < now {
            state.live.remove(state.queue[state.head].key)
            state.head += 1
        }
        if state.head > 4096 && state.head * 2 > state.queue.count {
            state.queue.removeFirst(state.head)
            state.head = 0
        }
    }
}
