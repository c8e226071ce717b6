import Wire

extension PartitionState {
    /// A ready item as the partition keeps it until it is settled, in 48 bytes beside its slot: the
    /// slot (subscription, dimension, hour) is its key, so neither is kept twice, and the
    /// subscription's names and plan are one copy shared by the items made ready together. Without
    /// a submitter draining them (stopped, or behind), pending items are the largest part of the
    /// billing state.
    struct PendingItem: Equatable, Sendable {
        /// The overage to report; zero once a void took all of it back.
        var quantity: Quantity
        /// What voids took back from the item after it became ready.
        var withdrawn: Quantity
        /// The log time at which the item became ready.
        var readySince: Timestamp
        /// The subscription's names and plan when the item became ready.
        let terms: Boxed<Terms>

        struct Terms: Equatable, Sendable {
            var resource: ResourceName
            var planId: String
        }

        static func == (lhs: PendingItem, rhs: PendingItem) -> Bool {
            lhs.quantity == rhs.quantity && lhs.withdrawn == rhs.withdrawn && lhs.readySince == rhs.readySince
                && (lhs.terms === rhs.terms || lhs.terms.value == rhs.terms.value)
        }

        /// The item of `slot`, in the marketplace request's shape.
        func ready(_ slot: Slot) -> ReadyItem {
            ReadyItem(
                resource: terms.value.resource, planId: terms.value.planId, dimension: slot.dimension, effectiveStartTime: slot.hour,
                quantity: quantity, readySince: readySince, withdrawn: withdrawn)
        }
    }

    /// `resource` and `planId` boxed for a pending item, sharing the box of the item made ready
    /// before when it holds the same (the items of a subscription's hour are made ready together).
    mutating func itemTerms(_ resource: ResourceName, _ planId: String) -> Boxed<PendingItem.Terms> {
        if let last = lastItemTerms, last.value.planId == planId, last.value.resource == resource { return last }
        let terms = Boxed(PendingItem.Terms(resource: resource, planId: planId))
        lastItemTerms = terms
        return terms
    }
}
