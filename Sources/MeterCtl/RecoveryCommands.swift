import EventStore
import Foundation
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
    /// `meterctl log check`: opens the log as ingest would and says whether ingest will start.
    /// `meterctl log accept-loss --yes`: cuts what is lost, records the loss, gives the log a new identity.
    static func log(_ raw: [String]) throws {
        var arguments = try MeterCtl.Arguments(raw, switches: ["yes"])
        let home = try homeDirectory(&arguments)
        let confirmed = arguments.flag("yes")
        try arguments.rejectUnused()
        let directory = home + "/data/log"
        guard FileManager.default.fileExists(atPath: directory) else { throw MeterCtl.Failure("there is no log at \(directory)") }
        var options = EventLog.Options(partitionCount: 1)
        options.clock = recordedClock(directory)
        switch arguments.words.first {
        case "check":
            let log = try open(directory, options)
            print(
                "the log at \(directory) is whole: identity \(log.manifest.identity), \(log.partitions.count) partitions, clock \(log.manifest.clock)"
            )
            for notice in log.notices { print("note: \(notice)") }
        case "accept-loss":
            guard confirmed else {
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
        default:
            throw MeterCtl.Failure("meterctl log needs check or accept-loss [--yes]")
        }
    }

    /// `meterctl rebuild aggregator [--partitions 0,1]` / `meterctl rebuild query`: moves the state
    /// aside so the next start folds the log from its first record.
    static func rebuild(_ raw: [String]) throws {
        var arguments = try MeterCtl.Arguments(raw, switches: [])
        let home = try homeDirectory(&arguments)
        let only = arguments.value("partitions")
        let queryData = arguments.value("query-data")
        try arguments.rejectUnused()
        let stamp = Timestamp(microseconds: Int64(Date().timeIntervalSince1970 * 1_000_000)).iso8601.replacingOccurrences(
            of: ":", with: "")
        switch arguments.words.first {
        case "aggregator":
            let root = home + "/data/aggregator"
            var partitions = existingPartitions(root)
            if let only {
                let chosen = only.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
                guard !chosen.isEmpty else { throw MeterCtl.Failure("--partitions takes a list such as 0,1") }
                partitions = partitions.filter { chosen.contains($0.number) }
            }
            guard !partitions.isEmpty else {
                print("no aggregator state under \(root): the next start folds the log from its first record")
                return
            }
            for partition in partitions { try ensureStopped(partition.path, process: "meter-aggregator") }
            for partition in partitions {
                let aside = "\(partition.path).replaced-\(stamp)"
                try moveAside(partition.path, to: aside)
                print("partition \(partition.number): state moved to \(aside)")
            }
            print("meter-aggregator folds these partitions from the log's first record at its next start")
        case "query":
            let data = queryData ?? home + "/data/query"
            guard FileManager.default.fileExists(atPath: data) else {
                print("no query state at \(data): the next start folds the log from its first record")
                return
            }
            try ensureStopped(data, process: "meter-query")
            let aside = "\(data).replaced-\(stamp)"
            try moveAside(data, to: aside)
            print("read models moved to \(aside)")
            print("meter-query folds the log from its first record at its next start (usage and submission ids start again at 1)")
        default:
            throw MeterCtl.Failure("meterctl rebuild needs aggregator or query")
        }
    }

    private static func homeDirectory(_ arguments: inout MeterCtl.Arguments) throws -> String {
        var forwarded: [String] = []
        if let home = arguments.value("home") { forwarded = ["--home", home] }
        var settings = try Settings(arguments: forwarded)
        return settings.home()
    }

    private static func open(_ directory: String, _ options: EventLog.Options) throws -> EventLog {
        do {
            return try EventLog(directory: directory, options: options)
        } catch {
            throw MeterCtl.Failure("\(error)")
        }
    }

    /// The clock `log.json` records, so checking a log never trips over the clock it was written on.
    private static func recordedClock(_ directory: String) -> String {
        guard let data = FileManager.default.contents(atPath: directory + "/log.json"),
            case .success(.current(let manifest)) = LogManifest.decode(Array(data))
        else { return ProcessInfo.processInfo.environment["METERING_CLOCK"] ?? "system" }
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
