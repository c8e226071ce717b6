import Foundation
import Transport
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// `meterctl send`: purchases, usage and deletions from flags, or messages from a file; then
/// whether the aggregator can bill what was accepted.
enum Send {
    static let file = Option(
        "file", .value("FILE"), "the messages to send: a JSON file with one message or an array; - reads standard input")
    static let admin = Option("admin", .flag, "send on ingest's admin socket (internal messages need it)")
    static let noCheck = Option(
        "no-check", .flag, "do not wait for the aggregator to say whether it can bill what was accepted (at most 5 s)")
    static let id = Option(
        "id", .value("KEY"), "an idempotency key: the message sent again with it is answered duplicate and counted once")
    static let meter = Option("meter", .value("NAME"), "the meter name, a key of the plan's billingDimensions (required)")
    static let quantity = Option("quantity", .value("Q"), "the quantity used, a decimal of at least 0 (required)")
    static let timestamp = Option(
        "timestamp", .value("TIME"), "the sender's time of the usage (recorded; billing goes by ingest's clock)",
        fallback: .computed("ingest's clock"))
    static let property = Option("property", .repeated("KEY=VALUE"), "a property of the usage, for breakdowns")
    static let planFile = Option(
        "plan-file", .value("FILE"), "the plan: a JSON plan, or a whole purchase message (meterctl help plans)")
    static let planId = Option("plan-id", .value("P"), "the plan's id, with --dimension (instead of --plan-file)")
    static let dimension = Option(
        "dimension", .repeated("METER=DIMENSION[:INCLUDED]"), "a simple dimension of the --plan-id plan; INCLUDED is a quantity or Infinite"
    )
    static let start = Option(
        "start", .value("TIME"), "the subscription's start: its billing periods count from this date", fallback: .computed("ingest's clock")
    )
    static let renewal = Option(
        "renewal", .value("INTERVAL"), "the renewal interval", fallback: .value("Monthly"),
        choices: ["Monthly", "Annually", "2-years", "3-years"])

    /// The options of every way of sending: where, and how the answer is shown and checked.
    static let delivery: [Option] = [
        id, .json, noCheck, .home, .ingestSocket, .aggregatorSocket, .querySocket,
    ]

    static let command = Command(
        name: "send", summary: "send messages to ingest: a purchase, usage, a deletion, or a file of messages",
        details: """
            Each message is answered accepted (with its partition, sequence and enqueued time), duplicate
            (its id was seen before) or rejected (with the reason). Accepted usage for a subscription or
            meter the stack does not know is kept as unprocessable: 'send' waits (at most 5 s) for the
            aggregator to fold what it sent and says so, with the reason, and exits 1.
            The message format: 'meterctl help messages'.
            """,
        options: [file, admin, .json, noCheck, .home, .ingestSocket, .adminSocket, .aggregatorSocket, .querySocket],
        examples: ["meterctl send --file purchases.json", "generate-usage | meterctl send --file -"],
        subcommands: [purchaseCommand, usageCommand, deleteCommand],
        run: { invocation in
            guard let path = invocation.value(file) else {
                throw UsageError("send what? purchase, usage, delete, or --file FILE; see meterctl send --help")
            }
            try deliver(try readMessages(path), invocation, admin: invocation.flag(admin))
        })

    static let purchaseCommand = Command(
        name: "purchase", summary: "a subscription bought: its plan, start and renewal interval",
        details: "The plan comes from --plan-file (meterctl help plans) or from --plan-id with one --dimension per meter.",
        options: [.resourceId, .resourceUri, planFile, planId, dimension, start, renewal] + delivery,
        examples: [
            "meterctl send purchase --resource-id sub-1 --plan-id basic --dimension email=emails:1000 --dimension cpu=cpu_hours:Infinite",
            "meterctl send purchase --resource-id sub-2 --plan-file plan.json --start 2024-01-31T09:00:00Z --renewal Annually",
        ],
        run: { invocation in
            var subscription = try resource(invocation)
            let plan = try plan(invocation)
            let client = try MeterCtl.connect(invocation.path(.ingestSocket)!)
            subscription.append(.init("subscriptionStart", .string(try invocation.value(start) ?? ingestTime(client))))
            subscription.append(.init("renewalInterval", .string(invocation.value(renewal)!)))
            subscription.append(.init("plan", plan))
            let message = envelope("SubscriptionPurchased", [.init("subscription", .object(JSONObject(subscription)))], invocation)
            try deliver([message], invocation, client: client)
        })

    static let usageCommand = Command(
        name: "usage", summary: "usage of one meter of a subscription",
        details: "Included quantities are used first; the rest is the hour's overage, reported once the hour has closed.",
        options: [.resourceId, .resourceUri, meter, quantity, timestamp, property] + delivery,
        examples: ["meterctl send usage --resource-id sub-1 --meter email --quantity 25 --property campaign=spring --id usage-1"],
        run: { invocation in
            var value = try resource(invocation)
            guard let meterName = invocation.value(meter) else {
                throw UsageError("'meterctl send usage' needs --meter NAME; see meterctl send usage --help")
            }
            guard let amount = invocation.value(quantity) else {
                throw UsageError("'meterctl send usage' needs --quantity Q; see meterctl send usage --help")
            }
            let client = try MeterCtl.connect(invocation.path(.ingestSocket)!)
            value.append(.init("timestamp", .string(try invocation.value(timestamp) ?? ingestTime(client))))
            value.append(.init("meterName", .string(meterName)))
            value.append(.init("quantity", Quantity(exactly: amount).map { $0.json } ?? .string(amount)))
            let properties = invocation.all(property)
            if !properties.isEmpty {
                var map = JSONObject()
                for entry in properties {
                    guard let equals = entry.firstIndex(of: "=") else { throw UsageError("--property takes KEY=VALUE, got \"\(entry)\"") }
                    map[String(entry[..<equals])] = .string(String(entry[entry.index(after: equals)...]))
                }
                value.append(.init("properties", .object(map)))
            }
            try deliver([envelope("UsageReported", value, invocation)], invocation, client: client)
        })

    static let deleteCommand = Command(
        name: "delete", summary: "a subscription ended: its open hour closes now",
        options: [.resourceId, .resourceUri] + delivery,
        examples: ["meterctl send delete --resource-id sub-1"],
        run: { invocation in
            try deliver([envelope("SubscriptionDeleted", try resource(invocation), invocation)], invocation)
        })

    /// Appends `events`, prints each one's answer, then reports what the aggregator cannot bill.
    static func deliver(_ events: [JSONValue], _ invocation: Invocation, admin: Bool = false, client: UnixClient? = nil) throws {
        let client = try client ?? MeterCtl.connect(invocation.path(admin ? .adminSocket : .ingestSocket)!)
        let json = invocation.flag(.json)
        let response = try MeterCtl.call(client, Request(op: "append", fields: JSONObject(["events": .array(events)])))
        let results = response["results"]?.arrayValue ?? []
        if json { MeterCtl.printJSON(.array(results)) }
        var rejected = 0
        var accepted: [UnprocessableCheck.Appended] = []
        for (index, result) in results.enumerated() {
            let status = result["status"]?.stringValue ?? "?"
            if status == "rejected" {
                rejected += 1
                let message = result["error"]?["message"]?.stringValue ?? ""
                FileHandle.standardError.write(Data("event \(index): rejected: \(message)\n".utf8))
                continue
            }
            if !json {
                let partition = result["partition"]?.intValue.map(String.init) ?? "?"
                let sequence = result["sequence"]?.intValue.map(String.init) ?? "?"
                let time = result["enqueuedTime"]?.stringValue ?? "?"
                print("event \(index): \(status) partition \(partition) sequence \(sequence) at \(time)")
            }
            if status == "accepted", let partition = result["partition"]?.intValue, let sequence = result["sequence"]?.intValue,
                index < events.count
            {
                accepted.append(.init(index: index, partition: partition, sequence: sequence, event: events[index]))
            }
        }
        var unbillable = 0
        if !invocation.flag(noCheck) && !accepted.isEmpty {
            let check = UnprocessableCheck.run(
                accepted, aggregator: invocation.path(.aggregatorSocket)!, query: invocation.path(.querySocket)!, timeout: 5)
            for finding in check.findings {
                FileHandle.standardError.write(Data("event \(finding.index): accepted, but it cannot be billed: \(finding.reason)\n".utf8))
            }
            unbillable = check.findings.count
            if let note = check.unchecked { FileHandle.standardError.write(Data("meterctl: \(note)\n".utf8)) }
        }
        var problems: [String] = []
        if rejected > 0 { problems.append("\(rejected) of \(results.count) events rejected") }
        if unbillable > 0 {
            problems.append(
                "\(unbillable) of \(results.count) events accepted into the log but kept as unprocessable (they bill nothing; 'meterctl unprocessable' lists them)"
            )
        }
        if !problems.isEmpty { throw MeterCtl.Failure(problems.joined(separator: "; ")) }
    }

    /// The messages in the file at `path` (`-`: standard input): one message or an array of them;
    /// a UTF-8 byte-order mark is fine.
    static func readMessages(_ path: String) throws -> [JSONValue] {
        let json = try readJSON(path)
        return json.arrayValue ?? [json]
    }

    /// The JSON in the file at `path`, or on standard input for `-`; a failure says why.
    static func readJSON(_ path: String) throws -> JSONValue {
        let name = path == "-" ? "standard input" : path
        let data: Data
        if path == "-" {
            data = FileHandle.standardInput.readDataToEndOfFile()
        } else {
            let descriptor = open(path, O_RDONLY | O_CLOEXEC)
            guard descriptor >= 0 else { throw MeterCtl.Failure("cannot read \(path): \(String(cString: strerror(errno)))") }
            let handle = FileHandle(fileDescriptor: descriptor, closeOnDealloc: true)
            do {
                data = try handle.readToEnd() ?? Data()
            } catch {
                throw MeterCtl.Failure("cannot read \(path): \((error as NSError).localizedDescription)")
            }
        }
        guard !data.isEmpty else { throw MeterCtl.Failure("\(name) is empty; it should hold a JSON message or an array of them") }
        do {
            return try JSONParser.parse(Array(data))
        } catch {
            throw MeterCtl.Failure("\(name) is not valid JSON: \(error)")
        }
    }

    static func resource(_ invocation: Invocation) throws -> [JSONObject.Member] { try invocation.subscription().members }

    /// The time of ingest's clock (the manual clock's, on a manual stack): a purchase's default
    /// start and a usage's default timestamp, so both agree with the log's business time.
    static func ingestTime(_ client: UnixClient) throws -> String {
        let status = try MeterCtl.call(client, Request(op: "status"))
        guard let time = status["time"]?.stringValue else { throw MeterCtl.Failure("meter-ingest's status has no time") }
        return time
    }

    static func envelope(_ type: String, _ value: [JSONObject.Member], _ invocation: Invocation) -> JSONValue {
        var members = [JSONObject.Member("type", .string(type)), JSONObject.Member("value", .object(JSONObject(value)))]
        if let key = invocation.value(id) { members.append(.init("id", .string(key))) }
        return .object(JSONObject(members))
    }

    /// A plan from `--plan-file` (a plan object, or a whole purchase message) or from flags.
    static func plan(_ invocation: Invocation) throws -> JSONValue {
        if let path = invocation.value(planFile) {
            let json = try readJSON(path)
            if let plan = json["value"]?["subscription"]?["plan"] { return plan }
            guard json["planId"] != nil else {
                throw MeterCtl.Failure("\(path) holds neither a plan nor a purchase message (meterctl help plans)")
            }
            return json
        }
        guard let planId = invocation.value(planId) else {
            throw UsageError("'meterctl send purchase' needs --plan-file FILE or --plan-id P; see meterctl send purchase --help")
        }
        var dimensions = JSONObject()
        for spec in invocation.all(dimension) {
            guard let equals = spec.firstIndex(of: "=") else {
                throw UsageError("--dimension takes METER=DIMENSION[:INCLUDED], got \"\(spec)\"")
            }
            let meter = String(spec[..<equals])
            let rest = spec[spec.index(after: equals)...].split(separator: ":", maxSplits: 1).map(String.init)
            guard !meter.isEmpty, let name = rest.first else {
                throw UsageError("--dimension takes METER=DIMENSION[:INCLUDED], got \"\(spec)\"")
            }
            var members = [JSONObject.Member("type", "simple"), JSONObject.Member("dimension", .string(name))]
            if rest.count == 2 {
                let included = rest[1]
                members.append(
                    .init("included", included == "Infinite" ? .string(included) : (Quantity(exactly: included)?.json ?? .string(included)))
                )
            }
            dimensions[meter] = .object(JSONObject(members))
        }
        guard !dimensions.members.isEmpty else {
            throw UsageError("--plan-id needs at least one --dimension METER=DIMENSION[:INCLUDED]")
        }
        return .object(JSONObject([.init("planId", .string(planId)), .init("billingDimensions", .object(dimensions))]))
    }
}
