import FrontDoorKit
import Testing

@Suite("Rate limiter and nonce cache")
struct LimiterTests {
    @Test("a burst is allowed at once, then requests are limited with the seconds until a token is back")
    func tokenBucket() {
        let limiter = RateLimiter(rate: 0.5, burst: 3)
        for _ in 0..<3 { #expect(limiter.take("a", now: 100) == .allowed) }
        #expect(limiter.take("a", now: 100) == .limited(retryAfter: 2))
        #expect(limiter.take("a", now: 101) == .limited(retryAfter: 1))
        #expect(limiter.take("a", now: 102) == .allowed)
        #expect(limiter.take("a", now: 102) == .limited(retryAfter: 2))
        // Credentials do not share a bucket.
        #expect(limiter.take("b", now: 102) == .allowed)
        // A long pause refills to the burst, never beyond it.
        for _ in 0..<3 { #expect(limiter.take("a", now: 10_000) == .allowed) }
        #expect(limiter.take("a", now: 10_000) != .allowed)
    }

    @Test("a clock that steps back adds no tokens, and Retry-After is always at least one second")
    func clockBack() {
        let limiter = RateLimiter(rate: 1000, burst: 1)
        #expect(limiter.take("a", now: 50) == .allowed)
        #expect(limiter.take("a", now: 40) == .limited(retryAfter: 1))
        #expect(limiter.take("a", now: 50.002) == .allowed)
    }

    @Test("buckets of idle credentials are dropped, so memory follows the active credentials")
    func pruning() {
        let limiter = RateLimiter(rate: 1, burst: 2)
        // Half-used buckets still matter: none is dropped.
        for index in 0..<1100 { _ = limiter.take("c\(index)", now: 0) }
        #expect(limiter.bucketCount == 1100)
        // 100 s later they have all refilled: the next sweep keeps only the new one.
        _ = limiter.take("late", now: 100)
        #expect(limiter.bucketCount == 1)
    }

    @Test("a nonce is fresh once, replayed after, and per credential")
    func replay() {
        let cache = NonceCache(capacity: 10, retention: 600)
        #expect(cache.use(credential: "a", nonce: "n1", now: 1000) == .fresh)
        #expect(cache.use(credential: "a", nonce: "n1", now: 1000) == .replayed)
        #expect(cache.use(credential: "b", nonce: "n1", now: 1000) == .fresh)
        #expect(cache.use(credential: "a", nonce: "n2", now: 1000) == .fresh)
        #expect(cache.use(credential: "a", nonce: "n1", now: 1600) == .replayed)
        // After its retention the request would be stale anyway: the nonce is forgotten.
        #expect(cache.use(credential: "a", nonce: "n1", now: 1601) == .fresh)
        #expect(cache.count == 1)
    }

    @Test("a full cache refuses new nonces instead of forgetting live ones, and takes them again once some expire")
    func bounded() {
        let cache = NonceCache(capacity: 3, retention: 10)
        for index in 0..<3 { #expect(cache.use(credential: "a", nonce: "n\(index)", now: 100 + Int64(index)) == .fresh) }
        #expect(cache.use(credential: "a", nonce: "x", now: 105) == .full)
        #expect(cache.use(credential: "a", nonce: "n0", now: 105) == .replayed)
        // At 111 only n0 (seen at 100) has expired: one place for x, none for y, n1 still known.
        #expect(cache.use(credential: "a", nonce: "x", now: 111) == .fresh)
        #expect(cache.use(credential: "a", nonce: "y", now: 111) == .full)
        #expect(cache.use(credential: "a", nonce: "n1", now: 111) == .replayed)
        #expect(cache.count == 3)
    }

    @Test("when the clock steps back, nonces are kept from the latest time seen")
    func clockBackNonces() {
        let cache = NonceCache(capacity: 10, retention: 10)
        #expect(cache.use(credential: "a", nonce: "n1", now: 1000) == .fresh)
        #expect(cache.use(credential: "a", nonce: "n2", now: 500) == .fresh)
        #expect(cache.use(credential: "a", nonce: "n2", now: 1010) == .replayed)
        #expect(cache.use(credential: "a", nonce: "n2", now: 1011) == .fresh)
    }

    @Test("many threads using distinct nonces all get fresh, and repeats all get replayed")
    func concurrency() async {
        let cache = NonceCache(capacity: 100_000, retention: 600)
        let fresh = await withTaskGroup(of: Int.self) { group in
            for worker in 0..<8 {
                group.addTask {
                    var count = 0
                    for index in 0..<1000 where cache.use(credential: "c", nonce: "w\(worker)-\(index)", now: 1) == .fresh { count += 1 }
                    return count
                }
            }
            return await group.reduce(0, +)
        }
        #expect(fresh == 8000)
        #expect(cache.use(credential: "c", nonce: "w3-999", now: 2) == .replayed)
    }
}
