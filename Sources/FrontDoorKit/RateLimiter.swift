import Synchronization

/// A token bucket per credential: `burst` requests at once, refilled at `rate` a second.
///
/// Only authenticated credentials get a bucket, so memory is bounded by the credential file;
/// buckets that have refilled completely carry no information and are dropped as they are met.
public final class RateLimiter: Sendable {
    /// Requests a second, sustained.
    public let rate: Double
    /// Requests allowed at once after an idle period.
    public let burst: Double
    private let buckets = Mutex([String: Bucket]())

    private struct Bucket {
        var tokens: Double
        var updated: Double
    }

    /// What a request may do.
    public enum Decision: Equatable, Sendable {
        case allowed
        /// Refused; a token will be there in `retryAfter` whole seconds (at least 1).
        case limited(retryAfter: Int)
    }

    public init(rate: Double, burst: Int) {
        precondition(rate > 0 && burst >= 1, "a rate limit needs a positive rate and a burst of at least 1")
        self.rate = rate
        self.burst = Double(burst)
    }

    /// Takes one token of `key`'s bucket at `now` (seconds on a monotonic clock).
    public func take(_ key: String, now: Double) -> Decision {
        buckets.withLock { buckets in
            var bucket = buckets[key] ?? Bucket(tokens: burst, updated: now)
            // A clock that stepped back adds nothing (and takes nothing away).
            bucket.tokens = min(burst, bucket.tokens + max(0, now - bucket.updated) * rate)
            bucket.updated = max(bucket.updated, now)
            guard bucket.tokens >= 1 else {
                buckets[key] = bucket
                return .limited(retryAfter: max(1, Int(((1 - bucket.tokens) / rate).rounded(.up))))
            }
            bucket.tokens -= 1
            buckets[key] = bucket
            if buckets.count > 1024 { prune(&buckets, now: now) }
            return .allowed
        }
    }

    /// Drops the buckets that would be full by now.
    private func prune(_ buckets: inout [String: Bucket], now: Double) {
        buckets = buckets.filter { $0.value.tokens + (now - $0.value.updated) * rate < burst }
    }

    /// How many buckets are held (for tests of the pruning).
    public var bucketCount: Int { buckets.withLock { $0.count } }
}
