import Foundation
import Transport
import Wire

private func text(_ value: JSONValue?) -> String { AggregatorCommands.text(value) }

/// `meterctl plans add|list|show`: the plan catalog, kept by ingest in the log (`PlanDefined`
/// records) so purchases can name a plan by its id.
enum PlansCommand {
    static let command = Command(
        name: "plans", summary: "the plan catalog: plans defined once, bought by their id (send purchase --plan-id)",
        details: """
            Ingest keeps the catalog in its log. A purchase or plan change that names a plan by its id
            alone is stored with the catalog's plan whole, so every other process sees the plan as if
            it had been sent inline. A plan may carry display prices, which the run-rate page and
            'meterctl runrate' show as money; billing never uses them. The plan-file format:
            'meterctl help plans'.
            """,
        subcommands: [addCommand, listCommand, showCommand])

    static let addCommand = Command(
        name: "add", summary: "define a plan, or a new version of it: later purchases of its id get that version",
        details: """
            FILE holds one plan (meterctl help plans), or an array of them, with optional "prices".
            The same plan again changes nothing ('unchanged'); a different plan under an existing id
            becomes its next version: subscriptions bought before keep the version they bought.
            """,
        arguments: [Argument(name: "FILE", summary: "the plan file; - reads standard input")],
        options: [Send.id, .json, .home, .ingestSocket],
        examples: ["meterctl plans add gold.json", "cat plans.json | meterctl plans add -"],
        run: { try add($0) })

    static let listCommand = Command(
        name: "list", summary: "the catalog's plans, each in its newest version",
        options: [.json, .home, .ingestSocket], examples: ["meterctl plans list"],
        run: { invocation in
            let plans = try fetch(invocation, planId: nil)
            if invocation.flag(.json) {
                MeterCtl.printJSON(.array(plans))
                return
            }
            guard !plans.isEmpty else {
                print("the plan catalog is empty; 'meterctl plans add FILE' defines a plan (meterctl help plans)")
                return
            }
            var rows = [["plan", "version", "meters", "prices", "defined (log time)"]]
            for entry in plans {
                let plan = entry["plan"]
                let meters = plan?["billingDimensions"]?.objectValue?.members.map(\.key) ?? []
                rows.append([
                    text(entry["planId"]), text(entry["version"]), meters.joined(separator: ", "), priceSummary(plan?["prices"]),
                    text(entry["definedAt"]),
                ])
            }
            print(Table.text(rows), terminator: "")
        })

    static let showCommand = Command(
        name: "show", summary: "one plan of the catalog: its newest version, in the plan-file format",
        arguments: [Argument(name: "ID", summary: "the plan's id (its planId)")],
        options: [.json, .home, .ingestSocket], examples: ["meterctl plans show gold"],
        run: { invocation in
            let plans = try fetch(invocation, planId: invocation.words[0])
            guard let entry = plans.first else { throw MeterCtl.Failure("no plan \"\(invocation.words[0])\" in the catalog") }
            if invocation.flag(.json) {
                MeterCtl.printJSON(entry)
                return
            }
            print(
                "plan \(text(entry["planId"])) version \(text(entry["version"])), defined \(text(entry["definedAt"])) (partition \(text(entry["partition"])), sequence \(text(entry["sequence"])))"
            )
            print(pretty(entry["plan"] ?? .null))
        })

    /// Sends each plan of the file as a `PlanDefined` and says what became of it.
    static func add(_ invocation: Invocation) throws {
        let path = invocation.words[0]
        let json = try Send.readJSON(path)
        let plans = json.arrayValue ?? [json]
        var events: [JSONValue] = []
        for (index, plan) in plans.enumerated() {
            // A whole PlanDefined message, or the plan itself (the plan-file format).
            let value = plan["type"]?.stringValue == "PlanDefined" ? plan["value"]?["plan"] : plan
            guard let value, value["planId"] != nil else {
                throw MeterCtl.Failure(
                    "\(path == "-" ? "standard input" : path)\(plans.count > 1 ? " (plan \(index))" : ""): not a plan: it needs a planId and billingDimensions (meterctl help plans)"
                )
            }
            var envelope = JSONObject([.init("type", "PlanDefined"), .init("value", .object(JSONObject(["plan": value])))])
            if let key = invocation.value(Send.id) { envelope["id"] = .string(plans.count > 1 ? "\(key)-\(index)" : key) }
            events.append(.object(envelope))
        }
        let client = try MeterCtl.connect(invocation.path(.ingestSocket)!)
        let response = try MeterCtl.call(client, Request(op: "append", fields: JSONObject(["events": .array(events)])))
        let results = response["results"]?.arrayValue ?? []
        var answers: [JSONValue] = []
        var rejected = 0
        for (index, result) in results.enumerated() {
            let planId = events[index]["value"]?["plan"]?["planId"]?.stringValue ?? "?"
            let status = result["status"]?.stringValue ?? "?"
            guard status == "accepted" || status == "duplicate" else {
                rejected += 1
                let message = result["error"]?["message"]?.stringValue ?? status
                FileHandle.standardError.write(Data("plan \(planId): \(status): \(message)\n".utf8))
                answers.append(result)
                continue
            }
            let current = try? MeterCtl.call(client, Request(op: "plans", fields: JSONObject(["planId": .string(planId)])))
            let entry = current?["plans"]?.arrayValue?.first
            var answer = result.objectValue ?? JSONObject()
            answer["planId"] = .string(planId)
            if let version = entry?["version"] { answer["version"] = version }
            answers.append(.object(answer))
            if !invocation.flag(.json) {
                let version = text(entry?["version"])
                print(
                    status == "accepted"
                        ? "plan \(planId): version \(version) defined (partition \(text(result["partition"])), sequence \(text(result["sequence"])))"
                        : "plan \(planId): unchanged, version \(version) is this plan")
            }
        }
        if invocation.flag(.json) { MeterCtl.printJSON(.array(answers)) }
        if rejected > 0 { throw MeterCtl.Failure("\(rejected) of \(results.count) plans refused") }
    }

    /// The catalog's entries (one with `planId`) from ingest's `plans` operation.
    static func fetch(_ invocation: Invocation, planId: String?) throws -> [JSONValue] {
        let client = try MeterCtl.connect(invocation.path(.ingestSocket)!)
        var fields = JSONObject()
        if let planId { fields["planId"] = .string(planId) }
        do {
            return try client.call(Request(op: "plans", fields: fields))["plans"]?.arrayValue ?? []
        } catch .server(let error) where error.code == .notFound {
            throw MeterCtl.Failure(error.message)
        } catch {
            throw MeterCtl.Failure("plans failed: \(error)")
        }
    }

    /// "USD: emails 0.002, cpu_hours 0.05", or "-".
    static func priceSummary(_ prices: JSONValue?) -> String {
        guard let prices, let perUnit = prices["perUnit"]?.objectValue else { return "-" }
        return "\(text(prices["currency"])): " + perUnit.members.map { "\($0.key) \(text($0.value))" }.joined(separator: ", ")
    }

    /// JSON with two-space indentation, members in their stored order.
    static func pretty(_ value: JSONValue, indent: String = "") -> String {
        let inner = indent + "  "
        switch value {
        case .object(let object) where !object.members.isEmpty:
            let members = object.members.map { inner + JSONWriter.string(.string($0.key)) + ": " + pretty($0.value, indent: inner) }
            return "{\n" + members.joined(separator: ",\n") + "\n" + indent + "}"
        case .array(let items) where !items.isEmpty && items.contains(where: { $0.objectValue != nil }):
            return "[\n" + items.map { inner + pretty($0, indent: inner) }.joined(separator: ",\n") + "\n" + indent + "]"
        default:
            return JSONWriter.string(value)
        }
    }
}
