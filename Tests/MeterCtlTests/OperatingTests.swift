import Foundation
import StackTestSupport
import Testing
import Transport
import Wire

/// The procedures of docs/OPERATING.md, run as written.
@Suite("docs/OPERATING.md's backup and restore", .serialized)
struct OperatingTests {
    static let page = repositoryRoot + "/docs/OPERATING.md"
    static let subscriptions = (1...6).map { "backup-sub-\($0)" }
    /// Small segments, so that appends during the copy start new ones.
    static let ingestEnvironment = ["METERING_SEGMENT_BYTES": "65536"]

    /// Runs one of the page's shell blocks with `METERING_HOME` and `backup` set.
    static func run(_ block: [String], home: String, backup: String) throws {
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("METERING_") }
        environment["METERING_HOME"] = home
        environment["backup"] = backup
        let outcome = try TestCommand.run(
            "/bin/bash", ["-c", "set -euo pipefail\n" + block.joined(separator: "\n")], environment: environment, timeout: 120)
        #expect(outcome.status == 0 && !outcome.timedOut, "\(outcome.errors)\(outcome.output)")
    }

    /// Each subscription's run-rate as meter-query answers it, as text.
    static func runRates(_ stack: CommandStack) throws -> [String] {
        try subscriptions.map { name in
            JSONWriter.string(
                .object(try stack.query!.client().call(Request(op: "runrate", fields: JSONObject(["resourceId": .string(name)])))))
        }
    }

    @Test("a backup copied by the documented procedure while the stack runs and appends, restored as documented, serves the same run-rates")
    func backupWhileRunningAndRestore() throws {
        let backupBlock = try shellBlock(in: Self.page, after: "### Back up")
        let restoreBlock = try shellBlock(in: Self.page, after: "### Restore")
        let original = try CommandStack(ingestEnvironment: Self.ingestEnvironment)
        try original.ok(["advance-clock", "2024-03-01T08:00:00Z"])
        for (index, name) in Self.subscriptions.enumerated() {
            try original.ok(["send", "purchase", "--resource-id", name, "--no-check"] + CommandStack.purchase)
            try original.ok([
                "send", "usage", "--resource-id", name, "--meter", "email", "--quantity", String(60 + 17 * index), "--no-check",
            ])
        }
        try original.ok(["advance-clock", "2024-03-01T09:30:00Z"])
        for (index, name) in Self.subscriptions.enumerated() {
            try original.ok(["send", "usage", "--resource-id", name, "--meter", "email", "--quantity", "\(index).5", "--no-check"])
        }
        try original.caughtUp()
        let before = try Self.runRates(original)
        let heads = try original.ingest.client().call("status")["partitions"]?.arrayValue?.map { $0["nextSequence"]?.intValue ?? 0 } ?? []

        // Appends go on while the backup is copied: usage of subscriptions nobody bought, which
        // changes no run-rate but fills (and starts) segments.
        let stop = Locked(false)
        let socket = original.home.clientSocket
        let noise = Thread {
            guard let client = try? UnixClient(path: socket) else { return }
            var round = 0
            while !stop.value {
                let events = (0..<50).map { usage("noise-\(round % 97)-\($0)", "1", meter: "email") }
                _ = try? client.call(appendRequest(events))
                round += 1
            }
        }
        noise.start()
        defer { stop.withLock { $0 = true } }
        // Copy only once the log has started new segments, while the appends go on.
        let log = original.home.path + "/data/log"
        let deadline = Date().addingTimeInterval(120)
        func segments(_ directory: String) -> [String] {
            ((try? FileManager.default.subpathsOfDirectory(atPath: directory)) ?? []).filter { $0.hasSuffix(".wal") }
        }
        while segments(log).count < 4 && Date() < deadline { usleep(50_000) }
        try #require(segments(log).count >= 4, "the appends started no new segments: \(segments(log))")
        let backup = original.home.path + "-backup"
        defer { try? FileManager.default.removeItem(atPath: backup) }
        try Self.run(backupBlock, home: original.home.path, backup: backup)
        stop.withLock { $0 = true }
        #expect(segments(backup + "/log").count >= 4, "\(segments(backup + "/log"))")

        let restored = try CommandStack(ingestEnvironment: Self.ingestEnvironment) { home in
            try Self.run(restoreBlock, home: home.path, backup: backup)
        }
        let restoredHeads =
            try restored.ingest.client().call("status")["partitions"]?.arrayValue?.map { $0["nextSequence"]?.intValue ?? 0 } ?? []
        for (partition, head) in heads.enumerated() {
            #expect(restoredHeads.count > partition && restoredHeads[partition] >= head, "partition \(partition): \(restoredHeads)")
        }
        try restored.caughtUp()
        #expect(try Self.runRates(restored) == before)
    }

    @Test("the restore leaves the replaced log aside and removes the state derived from it")
    func restoreKeepsTheReplacedLog() throws {
        let restoreBlock = try shellBlock(in: Self.page, after: "### Restore")
        let original = try CommandStack(aggregator: false, query: false)
        try original.ok(["send", "purchase", "--resource-id", "kept", "--no-check"] + CommandStack.purchase)
        original.ingest.kill(SIGTERM)
        let target = StackHome()
        for directory in ["data/log/wal", "data/aggregator/p000", "data/query"] {
            try FileManager.default.createDirectory(atPath: target.path + "/" + directory, withIntermediateDirectories: true)
        }
        try Self.run(restoreBlock, home: target.path, backup: original.home.path + "/data")
        let data = try FileManager.default.contentsOfDirectory(atPath: target.path + "/data")
        #expect(data.contains("log"))
        #expect(data.contains { $0.hasPrefix("log.replaced-") }, "\(data)")
        #expect(!data.contains("aggregator") && !data.contains("query"), "\(data)")
    }
}
