import Foundation
import StackTestSupport
import Testing
import Transport
import Wire

/// meter-ingest reading its keys back from a JetStream stream at start.
@Suite("Recovery from a JetStream stream", .serialized)
struct JetStreamRecoveryTests {
    @Test("an ingest reading the stream's keys one by one says in its recovered line how often the table grew, and how long it took")
    func recoveryGrowthsAreLogged() throws {
        let cluster = try NATSCluster(nodes: 1)
        let environment = [
            "METERING_STORE": "jetstream", "METERING_NATS_URL": cluster.url(0), "METERING_NATS_REPLICAS": "1",
            "METERING_LOG_LEVEL": "info",
        ]
        let first = try IngestProcess(home: StackHome(), environment: environment)
        // 2,000 keys: a default table (1,024 slots, 716 keys) grows twice, to 4,096 slots, while they are read.
        for start in stride(from: 0, to: 2_000, by: 1_000) {
            let events = (start..<start + 1_000).map { usage("js-1", "1", id: "js-key-\($0)") }
            #expect(try first.client().call(appendRequest(events))["ok"] == true)
        }
        first.kill(SIGTERM)
        #expect(!first.readErrors().contains("while recovering"), "an empty stream needs no growth")

        let second = try IngestProcess(home: StackHome(), environment: environment)
        #expect(try second.client().call("status")["idempotencyKeys"]?.intValue == 2_000)
        second.kill(SIGTERM)
        let log = second.readErrors()
        let recovered = try #require(log.split(separator: "\n").first { $0.contains("recovered ") }, "\(log)")
        #expect(recovered.contains("2000 idempotency keys"), "\(recovered)")
        #expect(recovered.contains("; the table grew 2 times while recovering ("), "\(recovered)")
        #expect(recovered.contains(" ms; METERING_INGEST_EXPECTED_KEYS makes it large enough at start)"), "\(recovered)")
    }
}
