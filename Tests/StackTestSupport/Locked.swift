import Synchronization

/// A value that test threads share behind a `Mutex`, in a class so that escaping closures (a
/// `Thread`'s body) can hold it: a stop flag, counts, what a writer saw acknowledged.
public final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>

    /// Holds `value`.
    public init(_ value: Value) { mutex = Mutex(value) }

    /// Runs `body` with the value, under the lock.
    public func withLock<Result: Sendable>(_ body: (inout Value) -> Result) -> Result { mutex.withLock { body(&$0) } }

    /// The value now.
    public var value: Value { withLock { $0 } }
}
