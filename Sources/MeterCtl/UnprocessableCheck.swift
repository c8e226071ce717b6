import Foundation
import Transport
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// After `meterctl send`: which of the events ingest accepted the stack cannot bill (usage of an
/// unknown or deleted subscription, an unknown meter name). Ingest accepts them, since the log
/// keeps everything; the aggregator keeps them as unprocessable with a reason. This asks it,
/// once it has folded the events, or else asks meter-query whether each usage's subscription
/// and meter exist.
enum UnprocessableCheck {
    /// An event ingest accepted, and where it put it.
    struct Appended {
        /// Its place in what was sent.
        var index: Int
        var partition: Int
        var sequence: Int
        var event: JSONValue
    }

    /// An event that cannot be billed, and why.
    struct Finding {
        var index: Int
        var reason: String
    }

    /// What the check found, and what it could not check (nil when it checked everything).
    struct Outcome {
        var findings: [Finding] = []
        var unchecked: String?
    }

    static let advice = "'meterctl unprocessable' lists usage that cannot be billed"

    /// Checks `appended`, waiting at most `timeout` seconds for the aggregator (or meter-query)
    /// to fold them.
    static func run(_ appended: [Appended], aggregator: String, query: String, timeout: Double) -> Outcome {
        let deadline = Date().addingTimeInterval(timeout)
        var needed: [Int: Int] = [:]
        for event in appended { needed[event.partition] = max(needed[event.partition] ?? 0, event.sequence + 1) }
        if let client = try? UnixClient(path: aggregator), let outcome = try? fromAggregator(client, appended, needed, deadline) {
            return outcome
        }
        if let client = try? UnixClient(path: query), let outcome = try? fromQuery(client, appended, needed, deadline) {
            return outcome
        }
        return Outcome(
            unchecked:
                "not checked whether the stack can bill what was accepted: neither meter-aggregator (\(aggregator)) nor meter-query (\(query)) answers"
        )
    }

    /// Waits until the folding process on `client` has passed every needed position, or the
    /// deadline: the partitions it has folded far enough, and those it does not own.
    static func waitUntilFolded(_ client: UnixClient, _ needed: [Int: Int], until deadline: Date) throws -> (
        reached: Set<Int>, foreign: Set<Int>
    ) {
        while true {
            var positions: [Int: Int] = [:]
            for entry in try client.call("status")["partitions"]?.arrayValue ?? [] {
                if let partition = entry["partition"]?.intValue, let position = entry["position"]?.intValue {
                    positions[partition] = position
                }
            }
            let foreign = Set(needed.keys.filter { positions[$0] == nil })
            let reached = Set(needed.keys.filter { partition in positions[partition].map { $0 >= needed[partition]! } ?? false })
            if reached.count + foreign.count == needed.count || Date() >= deadline { return (reached, foreign) }
            usleep(20_000)
        }
    }

    /// What could not be checked in partitions not `reached`, or nil.
    static func note(_ needed: [Int: Int], reached: Set<Int>, foreign: Set<Int>, process: String) -> String? {
        let late = Set(needed.keys).subtracting(reached).subtracting(foreign).sorted()
        var parts: [String] = []
        if !late.isEmpty { parts.append("\(process) has not folded partition \(late.map(String.init).joined(separator: ", ")) yet") }
        if !foreign.isEmpty {
            parts.append("this \(process) does not own partition \(foreign.sorted().map(String.init).joined(separator: ", "))")
        }
        return parts.isEmpty ? nil : "not all checked: " + parts.joined(separator: "; ") + "; \(advice)"
    }

    /// The aggregator's unprocessable records (its `ledger`) at the appended positions.
    static func fromAggregator(_ client: UnixClient, _ appended: [Appended], _ needed: [Int: Int], _ deadline: Date) throws -> Outcome {
        let (reached, foreign) = try waitUntilFolded(client, needed, until: deadline)
        var reasons: [String: String] = [:]
        // The latest unprocessable records of each partition, in full (the ledger keeps 100 per partition).
        for record in try UnprocessableCommand.pages(client, list: "examples").entries {
            if let partition = record["partition"]?.intValue, let sequence = record["sequence"]?.intValue {
                reasons["\(partition)/\(sequence)"] = record["reason"]?.stringValue ?? "unprocessable"
            }
        }
        var outcome = Outcome(unchecked: note(needed, reached: reached, foreign: foreign, process: "meter-aggregator"))
        for event in appended where reached.contains(event.partition) {
            if let reason = reasons["\(event.partition)/\(event.sequence)"] {
                outcome.findings.append(Finding(index: event.index, reason: reason))
            }
        }
        return outcome
    }

    /// Without an aggregator: whether meter-query knows each usage's subscription and meter.
    static func fromQuery(_ client: UnixClient, _ appended: [Appended], _ needed: [Int: Int], _ deadline: Date) throws -> Outcome {
        let (reached, foreign) = try waitUntilFolded(client, needed, until: deadline)
        var outcome = Outcome(unchecked: note(needed, reached: reached, foreign: foreign, process: "meter-query"))
        for event in appended where reached.contains(event.partition) && event.event["type"] == "UsageReported" {
            guard let value = event.event["value"], let meterName = value["meterName"]?.stringValue else { continue }
            var fields = JSONObject()
            if let id = value["resourceId"]?.stringValue {
                fields["resourceId"] = .string(id)
            } else if let uri = value["resourceUri"]?.stringValue {
                fields["resourceUri"] = .string(uri)
            }
            let name = fields.members.first?.value.stringValue ?? "?"
            try client.send(Request(op: "runrate", fields: fields))
            let runRate: JSONObject
            switch Response.check(try client.receive()) {
            case .success(let object): runRate = object
            case .failure(let error) where error.code == .notFound:
                outcome.findings.append(
                    Finding(index: event.index, reason: "meter-query holds no subscription \(name): it was never bought, or was deleted"))
                continue
            case .failure(let error): throw error
            }
            let meters = (runRate["meters"]?.arrayValue ?? []).compactMap { $0["meterName"]?.stringValue }
            if runRate["deleted"] == true {
                outcome.findings.append(Finding(index: event.index, reason: "subscription \(name) is deleted"))
            } else if !meters.contains(meterName) {
                let plan = runRate["planId"]?.stringValue ?? "?"
                outcome.findings.append(
                    Finding(
                        index: event.index,
                        reason:
                            "subscription \(name) has no meter \"\(meterName)\"; plan \(plan) has \(meters.map { "\"\($0)\"" }.joined(separator: ", "))"
                    ))
            }
        }
        return outcome
    }
}
