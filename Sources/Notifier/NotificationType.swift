/// What a notification tells (docs/NOTIFICATIONS.md). The raw values are the `type` field of the
/// body a receiver gets, and the names `meterctl notifications add --events` takes.
enum NotificationType: String, CaseIterable, Sendable {
    /// A subscription was bought, or bought again with other terms.
    case subscriptionPurchased = "subscription.purchased"
    /// A subscription was deleted.
    case subscriptionDeleted = "subscription.deleted"
    /// A subscription moved to another plan without a new purchase.
    case planChanged = "subscription.planChanged"
    /// A meter's consumption in the billing period reached a threshold.
    case usageThreshold = "usage.threshold"
    /// The marketplace refused an item for good (it will not be billed).
    case marketplaceRejected = "marketplace.rejected"
    /// The marketplace holds another quantity for an item's slot.
    case marketplaceConflict = "marketplace.conflict"
    /// An item waits to be reported while its hour nears the marketplace's 24-hour limit.
    case marketplaceAtRisk = "marketplace.atRisk"
}
