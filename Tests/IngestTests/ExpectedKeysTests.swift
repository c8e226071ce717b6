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

    @Test("the table's keys, size and growths while appending are in ingest's metrics")
    func metrics() throws {
        let home = StackHome()
        let ingest = try IngestProcess(home: home, environment: ["METERING_METRICS_ADDR": "127.0.0.1:0"])
        // 1,024 slots hold 716 keys, 2,048 hold 1,433: two growths for 2,000 keys.
        for first in stride(from: 0, to: 2_000, by: 500) {
            let events = (first..<first + 500).map { usage("r-1", "1", id: "key-\($0)") }
            #expect(try ingest.client().call(appendRequest(events))["ok"] == true)
        }
        var address = metricsAddress(home, "meter-ingest")
        for _ in 0..<200 where address == nil {
            usleep(50_000)
            address = metricsAddress(home, "meter-ingest")
        }
        // A group is answered before its keys are remembered (and counted): a scrape right after
        // the last answer may come before its keys; they are there moments later.
        let port = metricsPort(try #require(address))
        var text = try TestHTTPClient(port: port).request("GET", "/metrics").text
        for _ in 0..<100 where !text.split(separator: "\n").contains("metering_ingest_idempotency_keys 2000") {
            usleep(20_000)
            text = try TestHTTPClient(port: port).request("GET", "/metrics").text
        }
        for line in [
            "metering_ingest_idempotency_keys 2000", "metering_ingest_idempotency_table_bytes 163840",
            "metering_ingest_idempotency_table_growths_total 2",
        ] {
            #expect(text.split(separator: "\n").contains(Substring(line)), "\(line) in \(text)")
        }
        #expect(text.contains("metering_ingest_idempotency_table_growth_seconds_total "))
    }

    @Test("the memory a table may take half of is the lowest limit of the process's cgroups, unified or v1, or the machine's")
    func memoryLimitOfTheCgroups() {
        let physical = 24 << 30
        func limit(_ cgroups: String, _ files: [String: String]) -> (bytes: Int, cgroup: String?) {
            IngestConfiguration.memoryLimit(ownCgroups: cgroups, physical: physical, read: { files[$0] })
        }
        // A container (its own cgroup namespace, unified hierarchy).
        #expect(limit("0::/\n", ["/sys/fs/cgroup/memory.max": "1073741824\n"]) == (1 << 30, "/"))
        #expect(limit("0::/\n", ["/sys/fs/cgroup/memory.max": "max\n"]) == (physical, nil))
        // A systemd unit in a slice with a limit: the slice's applies.
        let unit = "0::/system.slice/meter-ingest.service\n"
        let files = [
            "/sys/fs/cgroup/system.slice/meter-ingest.service/memory.max": "max\n",
            "/sys/fs/cgroup/system.slice/memory.max": "536870912\n",
        ]
        #expect(limit(unit, files) == (512 << 20, "/system.slice/meter-ingest.service"))
        // cgroup v1's memory controller beside an empty unified line; v1's "no limit" is a huge number.
        let hybrid = "4:memory:/process_api/c3c8\n1:cpu:/\n0::/\n"
        #expect(limit(hybrid, ["/sys/fs/cgroup/memory/process_api/c3c8/memory.limit_in_bytes": "9223372036854771712\n"]) == (physical, nil))
        #expect(limit(hybrid, ["/sys/fs/cgroup/memory/process_api/memory.limit_in_bytes": "2147483648"]) == (2 << 30, "/process_api/c3c8"))
        // Nothing readable, or no cgroups at all: the machine's.
        #expect(limit("", [:]) == (physical, nil))
        #expect(limit("garbage\n::\n", [:]) == (physical, nil))
    }

    @Test("a growth while appending, from 4 MiB on, is logged with the pause and the setting that avoids it")
    func growthLogged() throws {
        let ingest = try IngestProcess(home: StackHome())
        // 65,536 slots hold 45,875 keys: the next key makes 131,072 slots, 5 MiB.
        for first in stride(from: 0, to: 46_000, by: 2_000) {
            let events = (first..<first + 2_000).map { usage("r-1", "1", id: "key-\($0)") }
            #expect(try ingest.client().call(appendRequest(events))["ok"] == true)
        }
        ingest.kill(SIGTERM)
        let log = ingest.readErrors()
        #expect(log.contains("the idempotency table grew to 131072 slots (5 MiB) for "), "\(log)")
        #expect(log.contains("appends waiting; METERING_INGEST_EXPECTED_KEYS makes it large enough at start"))
        // Smaller growths are counted, not logged.
        #expect(!log.contains("grew to 65536 slots"))
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
        let limited = #expect(throws: SettingsError.self) {
            try IngestConfiguration.checkTableFits(expectedKeys: 10_000_000, memory: 1 << 30, cgroup: "/system.slice/meter-ingest.service")
        }
        #expect(limited?.message.contains("its cgroup (/system.slice/meter-ingest.service) may use 1024 MiB of memory") == true)
        // Beyond what any machine may give it (and outside the setting's range), from the process.
        let outcome = try TestCommand.run(
            Binaries.path("meter-ingest"), [],
            environment: ["METERING_HOME": StackHome().path, "METERING_INGEST_EXPECTED_KEYS": "2000000000"], timeout: 20)
        #expect(outcome.status == 64 && !outcome.timedOut, "\(outcome.errors)")
        #expect(outcome.errors.contains("METERING_INGEST_EXPECTED_KEYS"), "\(outcome.errors)")
    }
}
