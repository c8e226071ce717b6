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
    ],
    targets: [
        // libsystemd (Debian libsystemd-dev): socket activation and sd_notify.
        .systemLibrary(name: "CSystemd", pkgConfig: "libsystemd", providers: [.apt(["libsystemd-dev"])]),
        // epoll, eventfd and SO_PEERCRED, which Glibc's Swift module does not export.
        .target(name: "CWireShims"),
        // The CPU's CRC32C instruction, which Swift cannot name directly.
        .target(name: "CSystemIO"),
        .target(name: "Wire", dependencies: ["CSystemd", "CWireShims"]),
        .target(name: "Billing", dependencies: ["Wire"]),
        // A small HTTP/1.1 server (one epoll thread waits for requests, workers answer them;
        // bounded heads, bodies and deadlines), for the emulator, the page and the front door.
        .target(name: "HTTP", dependencies: ["Wire", "CWireShims"]),
        .target(name: "EventStore", dependencies: ["Wire", "CSystemIO"]),
        // A NATS client written for this project: the core protocol, reconnection, JetStream's API.
        .target(name: "NATS", dependencies: ["Wire"]),
        // The event store on a JetStream stream, for deployments beyond one host.
        .target(name: "JetStreamStore", dependencies: ["Wire", "EventStore", "NATS"]),
        .executableTarget(name: "Ingest", dependencies: ["Wire", "EventStore", "JetStreamStore", "NATS"]),
        // What every process that folds the log shares: following ingest, snapshots.
        .target(name: "Projection", dependencies: ["Wire", "Billing", "EventStore"]),
        // The query service's read models, pure: the billing fold plus slot statuses, hourly usage, breakdowns.
        .target(name: "QueryModel", dependencies: ["Wire", "Billing"]),
        .executableTarget(name: "Aggregator", dependencies: ["Wire", "Billing", "Projection"]),
        .executableTarget(name: "Query", dependencies: ["Wire", "Billing", "Projection", "QueryModel", "QueryWeb", "HTTP"]),
        .executableTarget(name: "Submitter", dependencies: ["Wire"]),
        .executableTarget(name: "MeterCtl", dependencies: ["Wire", "EventStore", "FrontDoorKit", "JetStreamStore", "NATS"]),
        .executableTarget(name: "Benchmarks", dependencies: ["Wire", "EventStore", "Billing", "NATS"]),
        .executableTarget(name: "Emulator", dependencies: ["Wire", "HTTP"]),
        // The customer-facing run-rate page and /api/runrate, for meter-query.
        .target(name: "QueryWeb", dependencies: ["Wire", "HTTP"]),
        // Managed applications calling home: credentials, request signatures, rate limits (shared
        // by meter-frontdoor and meterctl credentials), and the HTTP front door itself.
        .target(name: "FrontDoorKit", dependencies: ["Wire"]),
        .executableTarget(name: "FrontDoor", dependencies: ["Wire", "HTTP", "FrontDoorKit"]),
        // Telemetry connectors: log files and commands turned into hourly usage events.
        .executableTarget(name: "Connector", dependencies: ["Wire", "EventStore"]),
        // The repository's own sample messages in the reference's format (Tests/Fixtures/mba), and
        // where to find them: shared by the tests and read by scripts/walkthrough and scripts/fuzz.
        .target(name: "TestFixtures", dependencies: ["Wire"], path: "Tests/Fixtures", exclude: ["mba", "format1-log"]),
        .testTarget(name: "WireTests", dependencies: ["Wire", "TestFixtures"]),
        // The hostile-client soak (scripts/soak): the real stack under attack, a well-behaved
        // client checked. A test tool, so no product: the images do not ship it.
        .executableTarget(name: "meter-soak", dependencies: ["Wire"], path: "Sources/Soak"),
        // Messages written in code, shared by the billing and read-model tests.
        .target(name: "BillingTestSupport", dependencies: ["Wire", "Billing"], path: "Tests/BillingTestSupport"),
        .testTarget(name: "BillingTests", dependencies: ["Billing", "BillingTestSupport", "TestFixtures"]),
        .testTarget(name: "QueryModelTests", dependencies: ["QueryModel", "Billing", "BillingTestSupport"]),
        .testTarget(name: "EventStoreTests", dependencies: ["EventStore", "Wire"]),
        .testTarget(name: "NATSTests", dependencies: ["NATS", "JetStreamStore", "EventStore", "Wire", "StackTestSupport"]),
        // Starting real executables for integration tests: shared by the test targets below.
        .target(name: "StackTestSupport", dependencies: ["Wire"], path: "Tests/StackTestSupport"),
        .testTarget(name: "IngestTests", dependencies: ["Wire", "StackTestSupport", "TestFixtures"]),
        .testTarget(name: "AggregatorTests", dependencies: ["Wire", "StackTestSupport"]),
        .testTarget(name: "QueryTests", dependencies: ["Wire", "StackTestSupport"]),
        .testTarget(name: "SubmitterTests", dependencies: ["Wire", "StackTestSupport"]),
        .testTarget(name: "EmulatorTests", dependencies: ["Wire", "StackTestSupport"]),
        .testTarget(name: "BenchmarkTests", dependencies: ["Wire", "StackTestSupport"]),
        .testTarget(name: "QueryWebTests", dependencies: ["QueryWeb", "HTTP", "Wire", "StackTestSupport"]),
        .testTarget(name: "MeterCtlTests", dependencies: ["MeterCtl", "Wire", "StackTestSupport"]),
        .testTarget(name: "FrontDoorTests", dependencies: ["Wire", "HTTP", "FrontDoorKit", "StackTestSupport", "TestFixtures"]),
        .testTarget(name: "ConnectorTests", dependencies: ["Connector", "Wire", "StackTestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)

for target in package.targets where target.type != .system && !["CWireShims", "CSystemIO"].contains(target.name) {
    target.swiftSettings = (target.swiftSettings ?? []) + strictSettings
}
