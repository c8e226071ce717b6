import EventStore
import Foundation
import SystemIO
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// `meterctl log check|accept-loss` and `meterctl rebuild aggregator|query`: what an operator runs
/// after a damaged disk (docs/OPERATIONS.md, "When something goes wrong").
///
/// Both work on the files directly, with the process that owns them stopped (each takes the lock
/// its process holds, and refuses while it runs). Nothing is deleted: what is replaced is moved
/// aside with a time in its name.
enum RecoveryCommands {
    static let yes = Option("yes", .flag, "do it (without it, only show what ingest refuses and what accepting means)")
    static let partitions = Option("partitions", .value("LIST"), "only these partitions, e.g. 0,1 (default: every one)")
    static let queryData = Option(
        "query-data", .value("DIR"), "meter-query's data directory", environment: "METERING_QUERY_DATA", fallback: .inHome("data/query"))

    static let logCommand = Command(
        name: "log", summary: "the event log's files, with meter-ingest stopped: check them, accept a loss",
        subcommands: [
            Command(
                name: "check", summary: "open the log as meter-ingest would and say whether it will start (ingest stopped)",
                options: [.home], examples: ["meterctl log check --home /var/lib/metering"], run: { try check($0) }),
            Command(
                name: "accept-loss",
                summary: "cut what a damaged log lost, record the loss in log.json, give the log a new identity (ingest stopped)",
                details:
                    "Without --yes, shows what meter-ingest refuses. With it, the log is cut where it is damaged (the bytes kept aside), the missing records are written into log.json, and the log gets a new identity: meter-aggregator and meter-query then refuse it until `meterctl rebuild` (docs/OPERATIONS.md).",
                options: [yes, .home], examples: ["meterctl log accept-loss", "meterctl log accept-loss --yes"],
                run: { try acceptLoss($0) }),
            MigrateCommand.command,
        ])

    static let rebuildCommand = Command(
        name: "rebuild", summary: "move a stopped meter-aggregator's or meter-query's state aside, to fold the log again from its start",
        details:
            "Nothing is deleted: the state is moved to <directory>.replaced-<time>. Refused while the process runs. After a rebuild of the query, usage ids follow from the log as it is; the ledger's line ids start again at 0.",
        arguments: [Argument(name: "PROCESS", summary: "aggregator or query", choices: ["aggregator", "query"])],
        options: [partitions, queryData, .home], examples: ["meterctl rebuild aggregator", "meterctl rebuild query"],
        run: { try rebuild($0) })

    /// The log's directory under the stack's home.
    private static func logDirectory(_ invocation: Invocation) throws -> String {
        let directory = invocation.home + "/data/log"
        guard FileManager.default.fileExists(atPath: directory) else { throw MeterCtl.Failure("there is no log at \(directory)") }
        return directory
    }

    static func check(_ invocation: Invocation) throws {
        let directory = try logDirectory(invocation)
        var options = EventLog.Options(partitionCount: 1)
        options.clock = recordedClock(directory, invocation.environment)
        let log = try open(directory, options)
        print(
            "the log at \(directory) is whole: identity \(log.manifest.identity), \(log.partitions.count) partitions, clock \(log.manifest.clock)"
        )
        for notice in log.notices { print("note: \(notice)") }
    }

    static func acceptLoss(_ invocation: Invocation) throws {
        let directory = try logDirectory(invocation)
        var options = EventLog.Options(partitionCount: 1)
        options.clock = recordedClock(directory, invocation.environment)
        guard invocation.flag(yes) else {
            do {
                let log = try EventLog(directory: directory, options: options)
                print("the log at \(directory) is whole (identity \(log.manifest.identity)): there is no loss to accept")
            } catch {
                print("ingest refuses this log: \(error)")
                print("")
                print("Accepting the loss cuts the log where it is damaged, records what was lost in log.json and gives the")
                print("log a new identity. Run again with --yes to do it; then rebuild the read models from the log:")
                print("  meterctl rebuild aggregator && meterctl rebuild query")
            }
            return
        }
        options.acceptingLoss = true
        let log = try open(directory, options)
        for notice in log.notices { print(notice) }
        print("")
        print("Next, with meter-aggregator and meter-query stopped: meterctl rebuild aggregator && meterctl rebuild query")
        print("(they refuse the new identity until then), then start everything again.")
    }

    static func rebuild(_ invocation: Invocation) throws {
        let home = invocation.home
        let stamp = Timestamp(microseconds: Int64(Date().timeIntervalSince1970 * 1_000_000)).iso8601.replacingOccurrences(
            of: ":", with: "")
        switch invocation.words[0] {
        case "aggregator":
            let root = home + "/data/aggregator"
            var chosenPartitions = existingPartitions(root)
            if let only = invocation.value(partitions) {
                let chosen = only.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
                guard !chosen.isEmpty else { throw UsageError("--partitions takes a list such as 0,1; see meterctl rebuild --help") }
                chosenPartitions = chosenPartitions.filter { chosen.contains($0.number) }
            }
            guard !chosenPartitions.isEmpty else {
                print("no aggregator state under \(root): the next start folds the log from its first record")
                return
            }
            for partition in chosenPartitions { try ensureStopped(partition.path, process: "meter-aggregator") }
            for partition in chosenPartitions {
                let aside = "\(partition.path).replaced-\(stamp)"
                try moveAside(partition.path, to: aside)
                print("partition \(partition.number): state moved to \(aside)")
            }
            print("meter-aggregator folds these partitions from the log's first record at its next start")
        default:
            let data = invocation.path(queryData)!
            guard FileManager.default.fileExists(atPath: data) else {
                print("no query state at \(data): the next start folds the log from its first record")
                return
            }
            try ensureStopped(data, process: "meter-query")
            let aside = "\(data).replaced-\(stamp)"
            try moveAside(data, to: aside)
            print("read models moved to \(aside)")
            print(
                "meter-query folds the log from its first record at its next start (usage ids follow from the log as it is; the ledger's line ids start again at 0)"
            )
        }
    }

    private static func open(_ directory: String, _ options: EventLog.Options) throws -> EventLog {
        do {
            return try EventLog(directory: directory, options: options)
        } catch {
            throw MeterCtl.Failure("\(error)")
        }
    }

    /// The clock `log.json` records, so checking a log never trips over the clock it was written on.
    private static func recordedClock(_ directory: String, _ environment: [String: String]) -> String {
        guard let data = FileManager.default.contents(atPath: directory + "/log.json"),
            case .success(.current(let manifest)) = LogManifest.decode(Array(data))
        else { return environment["METERING_CLOCK"] ?? "system" }
        return manifest.clock
    }

    private static func existingPartitions(_ root: String) -> [(number: Int, path: String)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
        return names.compactMap { name -> (Int, String)? in
            guard name.hasPrefix("p"), name.count == 4, let number = Int(name.dropFirst()) else { return nil }
            return (number, root + "/" + name)
        }.sorted { $0.0 < $1.0 }
    }

    /// Fails unless the lock the owning process holds on `directory` is free.
    private static func ensureStopped(_ directory: String, process: String) throws {
        do {
            let fd = try FileIO.lockExclusively(directory + "/LOCK")
            close(fd)
        } catch {
            if let owner = error.owner { throw MeterCtl.Failure("\(process) (pid \(owner)) is using \(directory); stop it first") }
            throw MeterCtl.Failure("cannot check \(directory): \(error)")
        }
    }

    private static func moveAside(_ path: String, to aside: String) throws {
        guard rename(path, aside) == 0 else { throw MeterCtl.Failure("cannot move \(path) to \(aside): \(SystemError("rename", path))") }
        do {
            try FileIO.fsyncDirectory((path as NSString).deletingLastPathComponent)
        } catch {
            throw MeterCtl.Failure("moved \(path) to \(aside), but cannot make the move durable: \(error)")
        }
    }
}
