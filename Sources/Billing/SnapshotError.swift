/// Why a snapshot could not be restored: where in the document and what was wrong with it.
public struct SnapshotError: Error, Sendable, CustomStringConvertible {
    /// A sentence naming the member (such as `subscriptions[3].meters[0].consumed`) and the problem.
    public var description: String

    /// An error described by `description`.
    public init(_ description: String) { self.description = description }
}
