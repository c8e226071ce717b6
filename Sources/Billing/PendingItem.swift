import Wire

extension PartitionState {
    /// A ready item as the partition keeps it until it is settled, in 48 bytes beside its slot: the
    /// slot (subscription, dimension, hour) is its key, so neither is kept twice, and the
    /// subscription's names and plan are its subscription's box, shared. Without a submitter
    /// draining them (stopped, or behind), pending items are the largest part of the billing state.
    struct PendingItem: Equatable, Sendable {
        /// The overage to report; zero once a void took all of it back.
        var quantity: Quantity
        /// What voids took back from the item after it became ready.
        var withdrawn: Quantity
        /// The log time at which the item became ready.
        var readySince: Timestamp
        /// The subscription's names and plan when the item became ready.
        let terms: Boxed<Subscription.NamesAndPlan>

        /// The item of `slot`, in the marketplace request's shape.
        func ready(_ slot: Slot) -> ReadyItem {
            ReadyItem(
                resource: terms.value.resource, planId: terms.value.planId, dimension: slot.dimension, effectiveStartTime: slot.hour,
                quantity: quantity, readySince: readySince, withdrawn: withdrawn)
        }
    }
}
