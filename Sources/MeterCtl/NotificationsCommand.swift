import Foundation
import Wire

/// `meterctl notifications add|list|remove|dead-letters|retry`: the subscribers of meter-notifier
/// (docs/NOTIFICATIONS.md), through its socket: the notifier is the one writer of its
/// registrations, so a change is confirmed and applies from the next record on.
enum NotificationsCommand {
    static let socket = Option(
        "notifier-socket", .value("PATH"), "meter-notifier's socket", environment: "METERING_NOTIFIER_SOCKET",
        fallback: .inHome("run/notifier.sock"))
    static let url = Option("url", .value("URL"), "where notifications are posted (http or https)")
    static let secretFile = Option(
        "secret-file", .value("FILE"), "a file holding the signing secret (16 to 512 bytes); without it the notifier makes one")
    static let events = Option(
        "events", .repeated("TYPE[,TYPE]"),
        "the types wanted: subscription.purchased, subscription.deleted, subscription.planChanged, usage.threshold, marketplace.rejected, marketplace.conflict, marketplace.atRisk (all by default)"
    )
    static let subscriptions = Option("subscription", .repeated("NAME"), "only this subscription (resourceId or resourceUri); repeatable")
    static let plans = Option("plan", .repeated("PLAN"), "only subscriptions on this plan; repeatable")
    static let meters = Option("meter", .repeated("NAME"), "thresholds of this meter only; repeatable")
    static let percents = Option("percent", .repeated("N[,N]"), "usage thresholds in percent of the included quantity, such as 50,80,100")
    static let quantities = Option("quantity", .repeated("Q[,Q]"), "usage thresholds as quantities consumed in the billing period")
    static let notification = Option("notification", .value("ID"), "only this notification (its id, ntf_...)")

    static let command = Command(
        name: "notifications", summary: "webhook subscribers of meter-notifier: add, list, remove, dead letters, retry",
        details:
            "Each subscriber gets signed POSTs of the notifications it asked for, in order per subscription, at least once (docs/NOTIFICATIONS.md). meter-notifier must be running.",
        subcommands: [
            Command(
                name: "add", summary: "register a subscriber (its signing secret is shown once)",
                options: [url, secretFile, events, subscriptions, plans, meters, percents, quantities, .json, .home, socket],
                examples: [
                    "meterctl notifications add --url https://billing.example.com/hooks --events usage.threshold --percent 50,80,100",
                    "meterctl notifications add --url https://ops.example.com/hooks --events marketplace.rejected,marketplace.atRisk",
                ],
                run: { try add($0) }),
            Command(
                name: "list", summary: "the subscribers: URL, types, filters, thresholds, backlog, failures",
                options: [.json, .home, socket], examples: ["meterctl notifications list"], run: { try list($0) }),
            Command(
                name: "remove", summary: "remove a subscriber, its cursors and its dead letters",
                arguments: [Argument(name: "ID", summary: "the subscriber's id (wh_...), as 'notifications list' shows it")],
                options: [.home, socket], examples: ["meterctl notifications remove wh_0123456789abcdef"], run: { try remove($0) }),
            Command(
                name: "dead-letters", summary: "notifications that ran out of delivery attempts",
                arguments: [Argument(name: "ID", summary: "only this subscriber's", optional: true)],
                options: [.json, .home, socket], examples: ["meterctl notifications dead-letters"], run: { try deadLetters($0) }),
            Command(
                name: "retry", summary: "deliver a subscriber's dead letters again",
                arguments: [Argument(name: "ID", summary: "the subscriber's id (wh_...)")],
                options: [notification, .home, socket], examples: ["meterctl notifications retry wh_0123456789abcdef"],
                run: { try retry($0) }),
        ])

    private static func call(_ invocation: Invocation, _ op: String, _ fields: JSONObject = JSONObject()) throws -> JSONObject {
        try MeterCtl.call(try MeterCtl.connect(invocation.path(socket)!), Request(op: op, fields: fields))
    }

    /// Every value of a repeated option, commas splitting each.
    private static func list(_ invocation: Invocation, _ option: Option) -> [String] {
        invocation.all(option).flatMap { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }.filter { !$0.isEmpty }
    }

    static func add(_ invocation: Invocation) throws {
        guard let target = invocation.value(url) else {
            throw UsageError("notifications add needs --url URL; see \(invocation.path) --help")
        }
        var fields = JSONObject([.init("url", .string(target))])
        if let file = invocation.path(secretFile) {
            guard let data = FileManager.default.contents(atPath: file) else { throw MeterCtl.Failure("cannot read --secret-file \(file)") }
            fields["secret"] = .string(String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
        }
        for (option, key) in [(events, "events"), (subscriptions, "subscriptions"), (plans, "plans"), (meters, "meters")] {
            let values = list(invocation, option)
            if !values.isEmpty { fields[key] = .array(values.map { .string($0) }) }
        }
        var percentValues: [JSONValue] = []
        for text in list(invocation, percents) {
            guard let value = Int(text) else { throw UsageError("--percent takes whole numbers such as 50,80,100, not \"\(text)\"") }
            percentValues.append(.number(String(value)))
        }
        if !percentValues.isEmpty { fields["percents"] = .array(percentValues) }
        let quantityValues = list(invocation, quantities)
        if !quantityValues.isEmpty { fields["quantities"] = .array(quantityValues.map { .string($0) }) }
        if fields["events"] == nil && (!percentValues.isEmpty || !quantityValues.isEmpty) {
            // Thresholds given without types: the subscriber wants at least those.
            fields["events"] = .array(["usage.threshold"])
        }
        let response = try call(invocation, "subscriber-add", fields)
        if invocation.flag(.json) {
            MeterCtl.printJSON(.object(response))
            return
        }
        let subscriber = response["subscriber"]
        print("registered subscriber \(AggregatorCommands.text(subscriber?["id"])) for \(AggregatorCommands.text(subscriber?["url"]))")
        print("  events:     \((subscriber?["events"]?.arrayValue ?? []).compactMap(\.stringValue).joined(separator: ", "))")
        let thresholds = (subscriber?["thresholds"]?.arrayValue ?? []).compactMap(\.stringValue)
        if !thresholds.isEmpty { print("  thresholds: \(thresholds.joined(separator: ", "))") }
        if invocation.value(secretFile) == nil {
            print("  secret:     \(AggregatorCommands.text(subscriber?["secret"]))")
            print("The secret is shown only now: the receiver checks each Metering-Signature with it.")
        }
        print("It receives what happens from now on.")
    }

    static func list(_ invocation: Invocation) throws {
        let response = try call(invocation, "subscribers")
        if invocation.flag(.json) {
            MeterCtl.printJSON(.object(response))
            return
        }
        let subscribers = response["subscribers"]?.arrayValue ?? []
        var rows = [["id", "url", "events", "filters", "backlog", "delivered", "failures", "dead", "last error"]]
        for subscriber in subscribers {
            var filters: [String] = []
            for key in ["subscriptions", "plans", "meters", "thresholds"] {
                let values = (subscriber[key]?.arrayValue ?? []).compactMap(\.stringValue)
                if !values.isEmpty { filters.append("\(key): \(values.joined(separator: ","))") }
            }
            rows.append([
                AggregatorCommands.text(subscriber["id"]), AggregatorCommands.text(subscriber["url"]),
                (subscriber["events"]?.arrayValue ?? []).compactMap(\.stringValue).joined(separator: ","),
                filters.isEmpty ? "-" : filters.joined(separator: "; "), AggregatorCommands.text(subscriber["backlog"]),
                AggregatorCommands.text(subscriber["delivered"]), AggregatorCommands.text(subscriber["failures"]),
                AggregatorCommands.text(subscriber["deadLetters"]), AggregatorCommands.text(subscriber["lastError"]),
            ])
        }
        Table.print(rows)
        print("\(subscribers.count) subscribers")
    }

    static func remove(_ invocation: Invocation) throws {
        _ = try call(invocation, "subscriber-remove", JSONObject([.init("subscriber", .string(invocation.words[0]))]))
        print("removed subscriber \(invocation.words[0])")
    }

    static func deadLetters(_ invocation: Invocation) throws {
        var fields = JSONObject()
        if let id = invocation.words.first { fields["subscriber"] = .string(id) }
        let response = try call(invocation, "dead-letters", fields)
        if invocation.flag(.json) {
            MeterCtl.printJSON(.object(response))
            return
        }
        let letters = response["deadLetters"]?.arrayValue ?? []
        var rows = [["subscriber", "notification", "type", "attempts", "since", "last error", "retrying"]]
        for letter in letters {
            rows.append([
                AggregatorCommands.text(letter["subscriber"]), AggregatorCommands.text(letter["id"]),
                AggregatorCommands.text(letter["type"]),
                AggregatorCommands.text(letter["attempts"]), AggregatorCommands.text(letter["at"]),
                AggregatorCommands.text(letter["lastError"]), AggregatorCommands.text(letter["retrying"]),
            ])
        }
        Table.print(rows)
        print("\(letters.count) dead letters")
    }

    static func retry(_ invocation: Invocation) throws {
        var fields = JSONObject([.init("subscriber", .string(invocation.words[0]))])
        if let id = invocation.value(notification) { fields["notification"] = .string(id) }
        let response = try call(invocation, "retry", fields)
        print("retrying \(AggregatorCommands.text(response["retrying"])) dead letters of \(invocation.words[0])")
    }
}
