import Daemon
import EventStore
import Foundation
import StackTestSupport
import Testing
import Transport
import Wire

@testable import Ingest

/// `METERING_INGEST_EXPECTED_KEYS`: the idempotency table made for that many keys at start.
@Suite("meter-ingest's idempotency table sized ahead")
struct ExpectedKeysTests {
    @Test("with METERING_INGEST_EXPECTED_KEYS the table is made for that many keys at start, and status says how large it is")
    func tableMadeAhead() throws {
        let home = StackHome()
        let ingest = try IngestProcess(home: home, environment: ["METERING_INGEST_EXPECTED_KEYS": "100000"])
        // 100,000 keys at most 70% full: 262,144 slots of 40 bytes.
        let status = try ingest.client().call("status")
        #expect(status["idempotencyTableBytes"]?.intValue == 262_144 * 40, "\(status)")
        let path = home.path + "/data/log/" + EventLog.idempotencyTableName
        let fileBytes = try #require(try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int)
        #expect(fileBytes >= 262_144 * 40)
        ingest.kill(SIGTERM)
        #expect(ingest.readErrors().contains("in a table of 10 MiB"))

        // Started again without the setting, it takes the table over at the size it has.
        let again = try IngestProcess(home: home)
        #expect(try again.client().call("status")["idempotencyTableBytes"]?.intValue == 262_144 * 40)
    }

    @Test("without the setting the table starts small")
    func smallByDefault() throws {
        let ingest = try IngestProcess(home: StackHome())
        #expect(try ingest.client().call("status")["idempotencyTableBytes"]?.intValue == 1_024 * 40)
    }

    @Test("an expected count whose table would take more than half of the memory stops start-up, naming the setting and the sizes")
    func tooLargeForTheMemory() throws {
        #expect(throws: Never.self) { try IngestConfiguration.checkTableFits(expectedKeys: 10_000_000, memory: 2 << 30) }
        // 10 million keys: 16,777,216 slots, 640 MiB; a machine of 1 GiB may give the table 512.
        let error = #expect(throws: SettingsError.self) {
            try IngestConfiguration.checkTableFits(expectedKeys: 10_000_000, memory: 1 << 30)
        }
        #expect(
            error?.message
                == "METERING_INGEST_EXPECTED_KEYS=10000000 needs an idempotency table of 640 MiB (40 bytes a slot, 16777216 slots); this machine has 1024 MiB of memory, and the table may take at most half of it"
        )
        // Beyond what any machine may give it (and outside the setting's range), from the process.
        let outcome = try TestCommand.run(
            Binaries.path("meter-ingest"), [],
            environment: ["METERING_HOME": StackHome().path, "METERING_INGEST_EXPECTED_KEYS": "2000000000"], timeout: 20)
        #expect(outcome.status == 64 && !outcome.timedOut, "\(outcome.errors)")
        #expect(outcome.errors.contains("METERING_INGEST_EXPECTED_KEYS"), "\(outcome.errors)")
    }
}
