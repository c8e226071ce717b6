import Foundation
import Synchronization
import Transport
import Wire

/// `meterctl tail`: follows every partition and prints one line per record.
enum Tail {
    static let fromStart = Option("from-start", .flag, "print the log from its first record, then follow it")
    static let partition = Option("partition", .value("P"), "only this partition")

    static let command = Command(
        name: "tail", summary: "follow the log, one line per record, until Ctrl-C (ingest)",
        details: "Without --from-start, only records appended from now on.",
        options: [fromStart, partition, .json, .home, .ingestSocket], examples: ["meterctl tail --from-start --partition 3"],
        run: { try run($0) })

    static func run(_ invocation: Invocation) throws {
        let fromStart = invocation.flag(fromStart)
        let json = invocation.flag(.json)
        let only = try invocation.number(partition)
        let socket = invocation.path(.ingestSocket)!
        let status = try MeterCtl.call(try MeterCtl.connect(socket), Request(op: "status"))
        let partitions = (status["partitions"]?.arrayValue ?? []).compactMap { entry -> (Int, Int)? in
            guard let partition = entry["partition"]?.intValue, let next = entry["nextSequence"]?.intValue else { return nil }
            return (partition, next)
        }
        let chosen = partitions.filter { only == nil || $0.0 == only }
        guard !chosen.isEmpty else { throw MeterCtl.Failure("no such partition; the log has \(partitions.count)") }
        /// Held while a batch is printed, so the lines of two partitions never interleave.
        let output = Mutex(())
        let group = DispatchGroup()
        for (partition, next) in chosen {
            group.enter()
            let path = socket
            Thread {
                defer { group.leave() }
                do {
                    let client = try UnixClient(path: path)
                    try client.send(
                        Request(
                            op: "follow",
                            fields: JSONObject(["partition": .number(String(partition)), "from": .number(String(fromStart ? 0 : next))])))
                    while true {
                        let frame = try client.receive()
                        let records = try Response.check(frame).get()["records"]?.arrayValue ?? []
                        output.withLock { _ in
                            for record in records { print(json ? JSONWriter.string(record) : line(record)) }
                            fflush(nil)
                        }
                    }
                } catch {
                    output.withLock { _ in FileHandle.standardError.write(Data("meterctl: partition \(partition): \(error)\n".utf8)) }
                }
            }.start()
        }
        group.wait()
    }

    /// `p0 #12 2022-01-01T00:00:00Z UsageReported <resource> cpu 1.5 [key=value] id=...`
    static func line(_ record: JSONValue) -> String {
        let partition = record["partition"]?.intValue.map(String.init) ?? "?"
        let sequence = record["sequence"]?.intValue.map(String.init) ?? "?"
        let time = record["enqueuedTime"]?.stringValue ?? "?"
        let event = record["event"] ?? .null
        let type = event["type"]?.stringValue ?? "?"
        let value = event["value"] ?? .null
        func resource(_ value: JSONValue) -> String {
            value["resourceId"]?.stringValue ?? value["resourceUri"]?.stringValue ?? "?"
        }
        var detail: String
        switch type {
        case "UsageReported":
            let quantity: String
            switch value["quantity"] {
            case .number(let text)?, .string(let text)?: quantity = text
            default: quantity = "?"
            }
            detail = "\(resource(value)) \(value["meterName"]?.stringValue ?? "?") \(quantity)"
            if let properties = value["properties"]?.objectValue, !properties.members.isEmpty {
                detail += " [" + properties.members.map { "\($0.key)=\($0.value.stringValue ?? "")" }.joined(separator: " ") + "]"
            }
        case "SubscriptionPurchased":
            let subscription = value["subscription"] ?? .null
            detail =
                "\(resource(subscription)) plan \(subscription["plan"]?["planId"]?.stringValue ?? "?") \(subscription["renewalInterval"]?.stringValue ?? "") from \(subscription["subscriptionStart"]?.stringValue ?? "?")"
        case "SubscriptionDeleted":
            detail = resource(value)
        case "UsageSubmittedToAPI":
            let result = value["result"] ?? .null
            detail =
                "\(resource(result)) \(result["dimension"]?.stringValue ?? "") \(result["effectiveStartTime"]?.stringValue ?? "") \(result["status"]?.stringValue ?? "?")"
        case "Ping":
            detail = value["reason"]?.stringValue ?? ""
        case "PlanDefined":
            let version = value["version"].map(AggregatorCommands.text) ?? "?"
            detail = "plan \(value["plan"]?["planId"]?.stringValue ?? "?") version \(version) (the plan catalog)"
        default:
            detail = JSONWriter.string(value)
        }
        if let id = event["id"]?.stringValue { detail += " id=\(id)" }
        return "p\(partition) #\(sequence) \(time) \(type) \(detail)"
    }
}
