import Metrics

/// The notifier's figures (docs/OPERATIONS.md, metrics): notifications made, deliveries by
/// outcome; backlog, dead letters and fold lag are read when scraped.
struct NotifierMetrics: Sendable {
    let registry = MetricsRegistry()
    let notifications: MetricsRegistry.Family<Counter>
    let deliveries: MetricsRegistry.Family<Counter>

    init() {
        notifications = registry.counters(
            "metering_notifier_notifications_total", "Notifications made from the log since start, by type.", labels: ["type"])
        deliveries = registry.counters(
            "metering_notifier_deliveries_total",
            "Delivery attempts since start, by subscriber and outcome (delivered, failed, dead_lettered).",
            labels: ["subscriber", "outcome"])
    }
}
