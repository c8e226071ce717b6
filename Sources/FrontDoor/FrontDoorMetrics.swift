import Metrics

/// The front door's figures (docs/OPERATIONS.md, metrics): what it refused and why.
struct FrontDoorMetrics: Sendable {
    let registry = MetricsRegistry()
    let refusedRequests: MetricsRegistry.Family<Counter>
    let refusedEvents: MetricsRegistry.Family<Counter>

    init() {
        refusedRequests = registry.counters(
            "metering_frontdoor_refused_requests_total",
            "Requests refused as a whole, by reason (bad_signature, unknown_credential, rate_limited, http_408, ...).", labels: ["reason"])
        refusedEvents = registry.counters(
            "metering_frontdoor_refused_events_total", "Messages of accepted requests that were refused, by error code.", labels: ["reason"]
        )
    }
}

/// The process's one set of front-door figures.
let frontDoorMetrics = FrontDoorMetrics()
