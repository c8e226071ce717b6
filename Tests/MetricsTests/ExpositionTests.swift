import Daemon
import Metrics
import Testing
import Wire

@Suite("Metrics text exposition")
struct ExpositionTests {
    static func text(_ registry: MetricsRegistry) -> String { String(decoding: registry.exposition(), as: UTF8.self) }

    @Test("a counter and a gauge are written with their help, type and value")
    func counterAndGauge() {
        let registry = MetricsRegistry()
        let appends = registry.counter("metering_test_appends_total", "Events appended.")
        let open = registry.gauge("metering_test_connections", "Connections open.")
        appends.add(3)
        appends.add(2)
        open.set(7)
        open.add(-2)
        #expect(
            Self.text(registry) == """
                # HELP metering_test_appends_total Events appended.
                # TYPE metering_test_appends_total counter
                metering_test_appends_total 5
                # HELP metering_test_connections Connections open.
                # TYPE metering_test_connections gauge
                metering_test_connections 5

                """)
    }

    @Test("labelled metrics keep the order they were first used in and escape their values")
    func labels() {
        let registry = MetricsRegistry()
        let refusals = registry.counters("metering_test_refusals_total", "Refusals by reason.", labels: ["reason"])
        refusals.labels("invalid_event").add()
        refusals.labels("a \"quoted\" \\ reason\nwith a line").add(2)
        refusals.labels("invalid_event").add()
        #expect(
            Self.text(registry) == """
                # HELP metering_test_refusals_total Refusals by reason.
                # TYPE metering_test_refusals_total counter
                metering_test_refusals_total{reason="invalid_event"} 2
                metering_test_refusals_total{reason="a \\"quoted\\" \\\\ reason\\nwith a line"} 2

                """)
    }

    @Test("a histogram writes cumulative buckets, +Inf, sum and count")
    func histogram() {
        let registry = MetricsRegistry()
        let latency = registry.histogram("metering_test_sync_seconds", "Sync latency.", buckets: [0.001, 0.01, 0.1])
        for value in [0.0005, 0.001, 0.005, 0.5] { latency.observe(value) }
        #expect(
            Self.text(registry) == """
                # HELP metering_test_sync_seconds Sync latency.
                # TYPE metering_test_sync_seconds histogram
                metering_test_sync_seconds_bucket{le="0.001"} 2
                metering_test_sync_seconds_bucket{le="0.01"} 3
                metering_test_sync_seconds_bucket{le="0.1"} 3
                metering_test_sync_seconds_bucket{le="+Inf"} 4
                metering_test_sync_seconds_sum 0.5065
                metering_test_sync_seconds_count 4

                """)
    }

    @Test("collected figures are read at every exposition, and help text escapes backslashes and line feeds")
    func collected() {
        let registry = MetricsRegistry()
        let box = Box()
        registry.collect("metering_test_lag_records", "Lag \\ behind\ningest.", kind: .gauge, labels: ["partition"]) {
            [MetricsRegistry.Sample(["0"], box.value), MetricsRegistry.Sample(["1"], 0)]
        }
        box.value = 12
        let first = Self.text(registry)
        box.value = 3
        let second = Self.text(registry)
        #expect(first.contains("# HELP metering_test_lag_records Lag \\\\ behind\\ningest.\n"))
        #expect(first.contains("metering_test_lag_records{partition=\"0\"} 12\n"))
        #expect(second.contains("metering_test_lag_records{partition=\"0\"} 3\n"))
        #expect(second.contains("metering_test_lag_records{partition=\"1\"} 0\n"))
    }

    @Test("numbers: whole values without a fraction, infinities and NaN as the format spells them")
    func numbers() {
        #expect(TextExposition.number(42) == "42")
        #expect(TextExposition.number(-3) == "-3")
        #expect(TextExposition.number(0.25) == "0.25")
        #expect(TextExposition.number(.infinity) == "+Inf")
        #expect(TextExposition.number(-.infinity) == "-Inf")
        #expect(TextExposition.number(.nan) == "NaN")
        #expect(TextExposition.number(1.7e20) == "1.7e+20")
    }

    @Test("the address setting takes loopback and Unix sockets and refuses anything else, naming the variable")
    func address() throws {
        #expect(try MetricsAddress.parse("127.0.0.1:9464").place == .tcp(host: "127.0.0.1", port: 9464))
        #expect(try MetricsAddress.parse("localhost:0").place == .tcp(host: "127.0.0.1", port: 0))
        #expect(try MetricsAddress.parse("unix:/run/metering/m.sock").place == .unix(path: "/run/metering/m.sock"))
        for bad in ["0.0.0.0:9464", "10.0.0.1:80", "127.0.0.1", "127.0.0.1:70000", "unix:relative", ":9464", "example.com:80"] {
            #expect(throws: SettingsError.self) { try MetricsAddress.parse(bad) }
            do {
                _ = try MetricsAddress.parse(bad)
            } catch {
                #expect(error.message.contains("METERING_METRICS_ADDR"))
            }
        }
    }
}

final class Box: @unchecked Sendable {
    var value = 0.0
}
