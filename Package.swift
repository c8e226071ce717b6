// swift-tools-version:6.0
import PackageDescription

/// Strict settings applied to every Swift target (the swift-log habit: one loop, no exceptions).
let strictSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "metering",
    products: [
        .library(name: "Wire", targets: ["Wire"]),
        .library(name: "Billing", targets: ["Billing"]),
        .executable(name: "meter-ingest", targets: ["Ingest"]),
        .executable(name: "meter-aggregator", targets: ["Aggregator"]),
        .executable(name: "meter-submitter", targets: ["Submitter"]),
        .executable(name: "meter-query", targets: ["Query"]),
        .executable(name: "meterctl", targets: ["MeterCtl"]),
        .executable(name: "meter-bench", targets: ["Benchmarks"]),
        .executable(name: "meter-marketplace-emulator", targets: ["Emulator"]),
        .executable(name: "meter-frontdoor", targets: ["FrontDoor"]),
        .executable(name: "meter-connector", targets: ["Connector"]),
        .executable(name: "meter-notifier", targets: ["Notifier"]),
    ],
    targets: [
        // libsystemd (Debian libsystemd-dev): socket activation and sd_notify.
        .systemLibrary(name: "CSystemd", pkgConfig: "libsystemd", providers: [.apt(["libsystemd-dev"])]),
        // epoll, eventfd and SO_PEERCRED, which Glibc's Swift module does not export.
        .target(name: "CWireShims"),
        // The CPU's CRC32C instruction, which Swift cannot name directly.
        .target(name: "CSystemIO"),
        // A hint to the CPU's caches (prefetch), which Swift cannot name directly: no I/O.
        .target(name: "CPrefetch"),
        // The wire protocol itself, pure (no Glibc, Dispatch or file I/O): frames, JSON, messages,
        // quantities, times, canonical forms and digests. Billing and the read models build on it alone.
        .target(name: "Wire"),
        // Thin, typed system calls: file descriptors, one EINTR rule, writes that finish, fdatasync,
        // atomic file replacement, an exclusive lock, CRC-32C with the CPU's instruction.
        .target(name: "SystemIO", dependencies: ["CSystemIO"]),
        // What every daemon shares: settings, the one log writer, systemd, start-up and shutdown.
        .target(name: "Daemon", dependencies: ["Wire", "SystemIO", "CSystemd", "CWireShims"]),
        // Length-prefixed JSON over Unix sockets: the epoll server and the blocking client.
        .target(name: "Transport", dependencies: ["Wire", "SystemIO", "Daemon", "CWireShims"]),
        // SHA-256, HMAC and the run-rate page's signed access tokens.
        .target(name: "Crypto", dependencies: ["Wire", "SystemIO", "Daemon"]),
        .target(name: "Billing", dependencies: ["Wire", "CPrefetch"]),
        // A small HTTP/1.1 server (one epoll thread waits for requests, workers answer them;
        // bounded heads, bodies and deadlines), for the emulator, the page and the front door.
        .target(name: "HTTP", dependencies: ["Wire", "SystemIO", "Daemon", "Transport", "CWireShims"]),
        // Prometheus metrics: counters, gauges, histograms and their text format (pure), and the
        // opt-in loopback endpoint every daemon serves them on (METERING_METRICS_ADDR).
        .target(name: "Metrics", dependencies: ["Wire", "Daemon", "HTTP"]),
        .target(name: "EventStore", dependencies: ["Wire", "SystemIO", "Daemon", "CSystemIO", "CPrefetch"]),
        // A NATS client written for this project: the core protocol, reconnection, JetStream's API.
        .target(name: "NATS", dependencies: ["Wire", "Daemon"]),
        // The event store on a JetStream stream, for deployments beyond one host.
        .target(name: "JetStreamStore", dependencies: ["Wire", "Daemon", "EventStore", "NATS"]),
        .executableTarget(
            name: "Ingest", dependencies: ["Wire", "SystemIO", "Daemon", "Transport", "EventStore", "JetStreamStore", "NATS", "Metrics"]),
        // What every process that folds the log shares: following ingest, snapshots.
        .target(name: "Projection", dependencies: ["Wire", "SystemIO", "Daemon", "Transport", "EventStore", "Billing", "Metrics"]),
        // The query service's read models, pure: the billing fold plus slot statuses, hourly usage, breakdowns.
        .target(name: "QueryModel", dependencies: ["Wire", "Billing"]),
        .executableTarget(name: "Aggregator", dependencies: ["Wire", "Daemon", "Transport", "Billing", "Projection", "Metrics"]),
        .executableTarget(
            name: "Query",
            dependencies: [
                "Wire", "SystemIO", "Daemon", "Transport", "Crypto", "Billing", "Projection", "QueryModel", "QueryWeb", "HTTP", "Metrics",
                "AdapterKit",
            ]),
        .executableTarget(
            name: "Submitter", dependencies: ["Wire", "SystemIO", "Daemon", "Transport", "HTTP", "Metrics", "Reconciliation"]),
        .executableTarget(
            name: "MeterCtl",
            dependencies: [
                "Wire", "SystemIO", "Daemon", "Transport", "Crypto", "EventStore", "JetStreamStore", "NATS", "FrontDoorKit", "AdapterKit",
                "Reconciliation", "HTTP",
            ]),
        .executableTarget(
            name: "Benchmarks",
            dependencies: ["Wire", "SystemIO", "Daemon", "Transport", "EventStore", "Billing", "Projection", "QueryModel", "NATS"]),
        .executableTarget(name: "Emulator", dependencies: ["Wire", "SystemIO", "Daemon", "Transport", "HTTP"]),
        // The customer-facing run-rate page and /api/runrate, and the usage API for billing
        // adapters (/v1/...), for meter-query.
        .target(name: "QueryWeb", dependencies: ["Wire", "Daemon", "Crypto", "HTTP", "AdapterKit"]),
        // Billing adapters' read-only credentials (shared by meter-query and meterctl adapters).
        .target(name: "AdapterKit", dependencies: ["Wire", "SystemIO", "Daemon", "Crypto"]),
        // Comparing our accepted ledger with the marketplace's usage events (the submitter's
        // periodic pass and meterctl reconcile), and the marketplace API access they share.
        .target(name: "Reconciliation", dependencies: ["Wire", "SystemIO", "Daemon", "Transport", "HTTP"]),
        // Managed applications calling home: credentials, request signatures, rate limits (shared
        // by meter-frontdoor and meterctl credentials), and the HTTP front door itself.
        .target(name: "FrontDoorKit", dependencies: ["Wire", "SystemIO", "Daemon", "Crypto"]),
        .executableTarget(name: "FrontDoor", dependencies: ["Wire", "SystemIO", "Daemon", "Transport", "HTTP", "FrontDoorKit", "Metrics"]),
        // Notifications (webhooks) folded from the log: subscriptions, usage thresholds, marketplace
        // outcomes that need a person; signed, retried, in order, with dead letters.
        .executableTarget(
            name: "Notifier",
            dependencies: ["Wire", "SystemIO", "Daemon", "Transport", "Crypto", "EventStore", "Billing", "Projection", "HTTP", "Metrics"]),
        // Telemetry connectors: log files and commands turned into hourly usage events.
        .executableTarget(name: "Connector", dependencies: ["Wire", "SystemIO", "Daemon", "Transport", "Crypto", "Metrics"]),
        // The repository's own sample messages in the reference's format (Tests/Fixtures/mba), and
        // where to find them: shared by the tests and read by scripts/walkthrough and scripts/fuzz.
        .target(name: "TestFixtures", dependencies: ["Wire"], path: "Tests/Fixtures", exclude: ["mba", "format1-log"]),
        .testTarget(name: "WireTests", dependencies: ["Wire", "SystemIO", "Daemon", "Transport", "Crypto", "TestFixtures"]),
        // The hostile-client soak (scripts/soak): the real stack under attack, a well-behaved
        // client checked. A test tool, so no product: the images do not ship it.
        .executableTarget(name: "meter-soak", dependencies: ["Wire", "SystemIO", "Daemon", "Transport"], path: "Sources/Soak"),
        // Messages written in code, shared by the billing and read-model tests.
        .target(name: "BillingTestSupport", dependencies: ["Wire", "Billing"], path: "Tests/BillingTestSupport"),
        .testTarget(name: "BillingTests", dependencies: ["Billing", "BillingTestSupport", "TestFixtures"]),
        .testTarget(name: "QueryModelTests", dependencies: ["QueryModel", "Billing", "BillingTestSupport"]),
        .testTarget(name: "EventStoreTests", dependencies: ["EventStore", "Wire", "SystemIO"]),
        .testTarget(name: "NATSTests", dependencies: ["NATS", "JetStreamStore", "EventStore", "Wire", "Transport", "StackTestSupport"]),
        // Starting real executables for integration tests: shared by the test targets below.
        .target(
            name: "StackTestSupport", dependencies: ["Wire", "SystemIO", "Daemon", "Transport", "HTTP"], path: "Tests/StackTestSupport"),
        .testTarget(
            name: "IngestTests",
            dependencies: [
                "Ingest", "EventStore", "Wire", "SystemIO", "Daemon", "Transport", "Metrics", "StackTestSupport", "TestFixtures",
            ]),
        .testTarget(
            name: "AggregatorTests",
            dependencies: [
                "Aggregator", "Billing", "BillingTestSupport", "Wire", "SystemIO", "Daemon", "Transport", "Projection", "StackTestSupport",
            ]),
        .testTarget(
            name: "QueryTests",
            dependencies: [
                "Query", "Projection", "QueryModel", "Wire", "SystemIO", "Daemon", "Transport", "HTTP", "StackTestSupport",
            ]),
        .testTarget(name: "SubmitterTests", dependencies: ["Wire", "SystemIO", "Daemon", "Transport", "StackTestSupport"]),
        .testTarget(name: "EmulatorTests", dependencies: ["Wire", "SystemIO", "Daemon", "Transport", "HTTP", "StackTestSupport"]),
        .testTarget(name: "BenchmarkTests", dependencies: ["Wire", "SystemIO", "Daemon", "Transport", "StackTestSupport"]),
        .testTarget(
            name: "QueryWebTests",
            dependencies: ["QueryWeb", "HTTP", "Wire", "SystemIO", "Daemon", "Transport", "Crypto", "AdapterKit", "StackTestSupport"]),
        .testTarget(name: "MeterCtlTests", dependencies: ["MeterCtl", "Wire", "SystemIO", "Daemon", "Transport", "StackTestSupport"]),
        .testTarget(
            name: "FrontDoorTests",
            dependencies: ["Wire", "SystemIO", "Daemon", "Transport", "Crypto", "HTTP", "FrontDoorKit", "StackTestSupport", "TestFixtures"]),
        .testTarget(name: "ConnectorTests", dependencies: ["Connector", "Wire", "SystemIO", "Daemon", "Transport", "StackTestSupport"]),
        .testTarget(
            name: "NotifierTests",
            dependencies: [
                "Notifier", "Wire", "SystemIO", "Daemon", "Transport", "Crypto", "Billing", "BillingTestSupport", "HTTP",
                "StackTestSupport",
            ]),
        .testTarget(
            name: "MetricsTests", dependencies: ["Metrics", "HTTP", "Wire", "SystemIO", "Daemon", "Transport", "StackTestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)

for target in package.targets where target.type != .system && !["CWireShims", "CSystemIO", "CPrefetch"].contains(target.name) {
    target.swiftSettings = (target.swiftSettings ?? []) + strictSettings
}
