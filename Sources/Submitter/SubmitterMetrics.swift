import Metrics

/// The submitter's figures (docs/OPERATIONS.md, metrics).
struct SubmitterMetrics: Sendable {
    let registry = MetricsRegistry()
    let outcomes: MetricsRegistry.Family<Counter>
    let retries: Counter
    let tokenRefreshes: Counter
    let lastSuccess: Gauge
    let atRisk: Gauge

    init() {
        outcomes = registry.counters(
            "metering_submitter_outcomes_total", "Items answered by the marketplace, by status (Accepted, Duplicate, Expired, ...).",
            labels: ["status"])
        retries = registry.counter("metering_submitter_retries_total", "Passes that failed and will be retried with backoff.")
        tokenRefreshes = registry.counter("metering_submitter_token_refreshes_total", "Bearer tokens fetched from the token endpoint.")
        lastSuccess = registry.gauge(
            "metering_submitter_last_success_timestamp_seconds",
            "When a pass last ended without failure (everything pending reported, or nothing to report), in Unix seconds.")
        atRisk = registry.gauge("metering_submitter_at_risk_items", "Items older than 20 hours seen pending in the last passes.")
    }
}

/// The process's one set of submitter figures.
let submitterMetrics = SubmitterMetrics()
