/// An immutable value kept on the heap, for a member that is rarely present or rarely changed, or
/// the same in many owners: each owner then holds one pointer instead of the whole value inline,
/// which matters in structures held hundreds of thousands of times (a meter, a subscription, a
/// pending item, an entry of open usage). Writes replace the box, so owners keep value semantics.
public final class Boxed<Value: Equatable & Sendable>: Sendable, Equatable {
    @usableFromInline package let value: Value

    @inlinable package init(_ value: Value) { self.value = value }

    /// `value` in the box of one of `others` that holds the same, or in a new box: owners with
    /// equal values then share one.
    @inlinable package static func sharing(_ value: Value, with others: some Sequence<Boxed>) -> Boxed {
        others.first { $0.value == value } ?? Boxed(value)
    }

    /// Equal values, whether or not in the same box.
    public static func == (lhs: Boxed, rhs: Boxed) -> Bool {
        lhs === rhs || lhs.value == rhs.value
    }
}
