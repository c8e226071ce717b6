/// An immutable value kept on the heap, for a member that is rarely present or rarely changed: its
/// owner then holds one pointer instead of the whole value inline, which matters in structures held
/// hundreds of thousands of times (a meter, a subscription). Writes replace the box, so owners keep
/// value semantics.
final class Boxed<Value: Equatable & Sendable>: Sendable {
    let value: Value

    init(_ value: Value) { self.value = value }
}
