import Metrics
import Wire

/// Ingest's figures (docs/OPERATIONS.md, metrics). Counted once per commit group or append
/// request, never once per event, so the counting costs the commit path nothing measurable.
struct IngestMetrics: Sendable {
    let registry = MetricsRegistry()
    let records: Counter
    let bytes: Counter
    let groupRecords: Histogram
    let syncSeconds: Histogram
    let refusals: MetricsRegistry.Family<Counter>
    let duplicates: Counter
    /// Seconds spent in each step of an append, summed: `stepSeconds[step.rawValue]`.
    let stepSeconds: [Counter]
    let idempotencyKeys: Gauge
    let idempotencyTableBytes: Gauge
    let tableGrowths: Counter
    let tableGrowthSeconds: Counter

    init() {
        records = registry.counter("metering_ingest_appended_records_total", "Records made durable in the log (ticks included).")
        bytes = registry.counter("metering_ingest_appended_bytes_total", "Bytes of the messages made durable in the log.")
        groupRecords = registry.histogram(
            "metering_ingest_commit_group_records", "Records per commit group (one fdatasync each).",
            buckets: [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 100_000])
        syncSeconds = registry.histogram(
            "metering_ingest_commit_sync_seconds", "Time to write and fdatasync one commit group: the durable part of an append.",
            buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5])
        refusals = registry.counters(
            "metering_ingest_refused_events_total",
            "Events refused, by reason: the error code (invalid_event, forbidden, conflict, unavailable, ...).", labels: ["reason"])
        duplicates = registry.counter("metering_ingest_duplicate_events_total", "Events answered duplicate (their id was seen before).")
        let steps = registry.counters(
            "metering_ingest_append_step_seconds_total",
            "Seconds spent in each step of appending, summed: read (a request's events read and checked, by a worker), decide, store (encoded, written, synced), answer (replies made and sent), index (keys remembered).",
            labels: ["step"])
        // Looked up once: a commit group adds to four of them.
        stepSeconds = AppendStep.allCases.map { steps.labels($0.name) }
        idempotencyKeys = registry.gauge("metering_ingest_idempotency_keys", "Idempotency ids remembered (those of the retention window).")
        idempotencyTableBytes = registry.gauge(
            "metering_ingest_idempotency_table_bytes", "Bytes of the idempotency table (it doubles when 70% full).")
        tableGrowths = registry.counter(
            "metering_ingest_idempotency_table_growths_total",
            "Times the idempotency table grew while appending (METERING_INGEST_EXPECTED_KEYS makes it large enough at start).")
        tableGrowthSeconds = registry.counter(
            "metering_ingest_idempotency_table_growth_seconds_total", "Seconds appends waited while the idempotency table grew.")
    }
}

/// The steps of an append, in order, as `metering_ingest_append_step_seconds_total` and ingest's
/// status (`commit.stepMicroseconds`) sum their time: where an append's time goes.
enum AppendStep: Int, CaseIterable {
    /// The request's events read and checked (on a worker; a large request on two threads).
    case read
    /// Each event decided (a duplicate, a conflict, or placed in its partition).
    case decide
    /// The group's records encoded, written and synced (one fdatasync).
    case store
    /// Waiting for the replies made during the sync, and sending them.
    case answer
    /// The group's keys remembered by the idempotency index (the client has its answer by then).
    case index

    var name: String { String(describing: self) }
}

extension IngestMetrics {
    /// Adds `elapsed` seconds to `step`'s sum.
    func addStep(_ step: AppendStep, _ elapsed: Double) { stepSeconds[step.rawValue].add(elapsed) }

    /// Each step's sum since start, `{"read": µs, "decide": µs, ...}` in whole microseconds (status).
    var stepMicroseconds: JSONValue {
        .object(JSONObject(AppendStep.allCases.map { .init($0.name, .number(String(Int(stepSeconds[$0.rawValue].value * 1e6)))) }))
    }
}

/// The process's one set of ingest figures.
let ingestMetrics = IngestMetrics()
