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
        .executable(name: "meterctl", targets: ["MeterCtl"]),
        .executable(name: "meter-bench", targets: ["Benchmarks"]),
        .executable(name: "meter-marketplace-emulator", targets: ["Emulator"]),
        .executable(name: "meter-connector", targets: ["Connector"]),
    ],
    targets: [
        // libsystemd (Debian libsystemd-dev): socket activation and sd_notify.
        .systemLibrary(name: "CSystemd", pkgConfig: "libsystemd", providers: [.apt(["libsystemd-dev"])]),
        // epoll, eventfd and SO_PEERCRED, which Glibc's Swift module does not export.
        .target(name: "CWireShims"),
        .target(name: "Wire", dependencies: ["CSystemd", "CWireShims"]),
        .target(name: "Billing", dependencies: ["Wire"]),
        // A small HTTP/1.1 server (thread per connection, bounded heads and bodies), for the
        // marketplace emulator and the read-only endpoints.
        .target(name: "HTTP", dependencies: ["Wire"]),
        .target(name: "EventStore", dependencies: ["Wire"]),
        .executableTarget(name: "Ingest", dependencies: ["Wire", "EventStore"]),
        .executableTarget(name: "Aggregator", dependencies: ["Wire", "Billing", "EventStore"]),
        .executableTarget(name: "Submitter", dependencies: ["Wire"]),
        .executableTarget(name: "MeterCtl", dependencies: ["Wire"]),
        .executableTarget(name: "Benchmarks", dependencies: ["Wire", "EventStore", "Billing"]),
        .executableTarget(name: "Emulator", dependencies: ["Wire", "HTTP"]),
        // Telemetry connectors: log files and commands turned into hourly usage events.
        .executableTarget(name: "Connector", dependencies: ["Wire", "EventStore"]),
        .testTarget(name: "WireTests", dependencies: ["Wire"]),
        .testTarget(name: "BillingTests", dependencies: ["Billing"]),
        .testTarget(name: "EventStoreTests", dependencies: ["EventStore", "Wire"]),
        // Starting real executables for integration tests: shared by the test targets below.
        .target(name: "StackTestSupport", dependencies: ["Wire"], path: "Tests/StackTestSupport"),
        .testTarget(name: "IngestTests", dependencies: ["Wire", "StackTestSupport"]),
        .testTarget(name: "AggregatorTests", dependencies: ["Wire", "StackTestSupport"]),
        .testTarget(name: "SubmitterTests", dependencies: ["Wire", "StackTestSupport"]),
        .testTarget(name: "EmulatorTests", dependencies: ["Wire", "StackTestSupport"]),
        .testTarget(name: "ConnectorTests", dependencies: ["Connector", "Wire", "StackTestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)

for target in package.targets where target.type != .system && target.name != "CWireShims" {
    target.swiftSettings = (target.swiftSettings ?? []) + strictSettings
}
