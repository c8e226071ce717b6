import AdapterKit
import Foundation
import HTTP
import Reconciliation
import Transport
import Wire

#if canImport(Glibc)
    import Glibc
#endif

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// `meterctl demo`: a realistic run of the whole stack on the manual clock. Two dozen SaaS
/// subscriptions on three plans of the plan catalog, with display prices (one with a waterfall
/// dimension, one annual with a seat gauge),
/// bought on different January days (one on the 31st), send usage with properties hour by hour
/// over five simulated weeks across their renewals (the waterfall's first 100 GB a month are free,
/// `egress_tier_1` bills 100–500, `egress_tier_2` 500–1,500, `egress_tier_3` beyond). Halfway, one
/// subscription changes plan (a bigger included quantity, the period going on) and one usage report
/// sent a few hours before is voided (the marketplace had accepted it: a credit). Then a summary of
/// each subscription's meters and of what the (emulated) marketplace accepted per dimension and day,
/// with totals.
enum Demo {
    static let plans: [(name: String, interval: String, json: String)] = [
        (
            "starter", "Monthly",
            #"{"planId":"starter","billingDimensions":{"email":{"type":"simple","dimension":"emails","included":1000},"cpu":{"type":"simple","dimension":"cpu_hours","included":"Infinite"}},"prices":{"currency":"USD","perUnit":{"emails":0.002}}}"#
        ),
        (
            "pro", "Monthly",
            #"{"planId":"pro","billingDimensions":{"email":{"type":"simple","dimension":"emails","included":5000},"egress":{"type":"waterfall","tiers":[{"dimension":"egress_tier_1","threshold":100},{"dimension":"egress_tier_2","threshold":400},{"dimension":"egress_tier_3","threshold":1000}]}},"prices":{"currency":"USD","perUnit":{"emails":0.0015,"egress_tier_1":0.09,"egress_tier_2":0.07,"egress_tier_3":0.05}}}"#
        ),
        (
            "enterprise", "Annually",
            #"{"planId":"enterprise","billingDimensions":{"email":{"type":"simple","dimension":"emails","included":20000},"seats":{"type":"simple","dimension":"seats","included":25,"aggregation":"max"}},"prices":{"currency":"USD","perUnit":{"emails":0.001,"seats":12}}}"#
        ),
    ]

    /// The plan the first starter subscription changes to halfway: five times the e-mails.
    static let upgrade =
        #"{"planId":"starter-plus","billingDimensions":{"email":{"type":"simple","dimension":"emails","included":5000},"cpu":{"type":"simple","dimension":"cpu_hours","included":"Infinite"}},"prices":{"currency":"USD","perUnit":{"emails":0.0018}}}"#

    static let days = Option("days", .value("N"), "simulated days of usage, 1 to 120", fallback: .value("35"))

    static let command = Command(
        name: "demo", summary: "a realistic run on the manual clock: 24 subscriptions, weeks of usage, a summary",
        details: """
            Starts the whole stack under a fresh home (as 'meterctl up' does, logs in $METERING_HOME/log/),
            buys 24 subscriptions on three plans, sends usage hour by hour (halfway, one subscription
            changes plan and one usage report is voided), and ends with each subscription's run-rate
            and what the emulated marketplace accepted. The data stays.
            """,
        options: [days, .home], examples: ["meterctl demo --home /tmp/demo --days 7"],
        run: { try run($0) })

    static func run(_ invocation: Invocation) throws {
        let days = try invocation.number(days, minimum: 1, maximum: 120) ?? 35
        let home = invocation.home
        if FileManager.default.fileExists(atPath: home + "/data/log") {
            throw MeterCtl.Failure("\(home) already holds a stack's data; the demo needs a fresh METERING_HOME (remove it, or pass --home)")
        }
        let (children, marketplace) = try Up.startStack(
            home: home, environment: ["METERING_CLOCK": "manual", "METERING_SUBMIT_INTERVAL_MS": "100", "METERING_LOG_LEVEL": "warning"])
        defer { Up.stop(children) }
        // Lets scripts/demo start over on the next run without touching a stack that is not a demo's.
        _ = FileManager.default.createFile(atPath: home + "/demo.marker", contents: Data("made by meterctl demo\n".utf8))
        let client = try MeterCtl.connect(home + "/run/ingest.sock")
        let admin = try MeterCtl.connect(home + "/run/ingest-admin.sock")
        let aggregator = home + "/run/aggregator.sock"

        // A webhook receiver, registered with meter-notifier for usage thresholds and plan changes.
        let receiver = DemoWebhookReceiver()
        let webhooks = try HTTPServer(host: "127.0.0.1", port: 0, limits: HTTPServer.Limits(), handler: receiver)
        webhooks.start()
        defer { webhooks.stop(waitingUpTo: 1) }
        _ = try MeterCtl.call(
            try MeterCtl.connect(home + "/run/notifier.sock"),
            Request(
                op: "subscriber-add",
                fields: JSONObject([
                    "url": .string("http://127.0.0.1:\(webhooks.port)/metering-hooks"),
                    "events": ["usage.threshold", "subscription.planChanged"], "percents": [80, 100],
                ])))

        // The plans, defined once in the catalog (with display prices); purchases name them by id.
        var clock = Timestamp(iso8601: "2024-01-31T00:00:00Z")!
        _ = try MeterCtl.call(admin, Request(op: "advance-clock", fields: JSONObject(["to": .string(clock.iso8601)])))
        let definitions = try (Demo.plans.map(\.json) + [upgrade]).map { plan in
            try JSONParser.parse(#"{"type":"PlanDefined","value":{"plan":\#(plan)}}"#)
        }
        let defined = try MeterCtl.call(client, Request(op: "append", fields: JSONObject(["events": .array(definitions)])))
        let refused = (defined["results"]?.arrayValue ?? []).filter { $0["status"] == "rejected" }
        guard refused.isEmpty else { throw MeterCtl.Failure("the demo's plans were refused: \(refused)") }
        Up.say("\(definitions.count) plans defined in the plan catalog, with display prices ('meterctl plans list')")

        // The subscriptions: bought on different January days, the last one on the 31st.
        var random = SplitMix64(seed: 2024)
        var subscriptions: [(id: String, plan: Int)] = []
        var purchases: [JSONValue] = []
        for index in 0..<24 {
            let plan = index % 3
            let day = index == 23 ? 31 : 1 + index
            let id = "demo-\(Demo.plans[plan].name)-\(index + 1)"
            subscriptions.append((id, plan))
            let text =
                #"{"type":"SubscriptionPurchased","id":"purchase-\#(id)","value":{"subscription":{"resourceId":"\#(id)","subscriptionStart":"2024-01-\#(day < 10 ? "0" : "")\#(day)T09:00:00Z","renewalInterval":"\#(Demo.plans[plan].interval)","plan":{"planId":"\#(Demo.plans[plan].name)"}}}}"#
            purchases.append(try JSONParser.parse(text))
        }
        _ = try MeterCtl.call(client, Request(op: "append", fields: JSONObject(["events": .array(purchases)])))
        Up.say("24 subscriptions bought; simulating \(days) days of usage, hour by hour")

        let hours = days * 24
        let campaigns = ["spring-sale", "newsletter", "onboarding"]
        var sent = 0
        // Halfway: a plan change, and a void of a usage report of a few hours before.
        let changeHour = hours / 2
        var sentIds: [(hour: Int, id: String, subscription: String)] = []
        var corrections: [String] = []
        for hour in 0..<hours {
            var events: [JSONValue] = []
            if hour == changeHour {
                let change = try JSONParser.parse(
                    #"{"type":"PlanChanged","id":"change-demo-starter-1","value":{"resourceId":"demo-starter-1","plan":{"planId":"starter-plus"}}}"#
                )
                let answer = try MeterCtl.call(client, Request(op: "append", fields: JSONObject(["events": [change]])))
                corrections.append(
                    "demo-starter-1 changed plan to starter-plus at \(clock.iso8601) (\(answer["results"]?.arrayValue?.first?["status"]?.stringValue ?? "?")): its e-mails consumed so far count against 5,000 included from then on"
                )
                // An egress report of a pro subscription: past its free band, so billed and accepted by now.
                if let usage = sentIds.last(where: { $0.hour <= hour - 3 && $0.id.hasSuffix("-g") }) {
                    let void = try JSONParser.parse(
                        #"{"type":"UsageVoided","id":"void-\#(usage.id)","value":{"ids":["\#(usage.id)"],"reason":"the demo's customer was billed twice for one transfer"}}"#
                    )
                    let answer = try MeterCtl.call(client, Request(op: "append", fields: JSONObject(["events": [void]])))
                    corrections.append(
                        "usage \(usage.id) of \(usage.subscription) voided at \(clock.iso8601) (\(answer["results"]?.arrayValue?.first?["status"]?.stringValue ?? "?")): out of its period's consumption; what the marketplace had accepted of it is a credit netted against later overage"
                    )
                }
            }
            let hourOfDay = hour % 24
            let busy = hourOfDay >= 8 && hourOfDay < 20
            for (number, subscription) in subscriptions.enumerated() where Int.random(in: 0..<100, using: &random) < (busy ? 60 : 15) {
                let time = clock.adding(microseconds: Int64.random(in: 0..<3_600_000_000, using: &random)).iso8601
                let campaign = campaigns[Int.random(in: 0..<campaigns.count, using: &random)]
                let emails = Int.random(in: 1...[10, 50, 60][subscription.plan], using: &random)
                func usage(_ meter: String, _ quantity: String, _ key: String) -> String {
                    #"{"type":"UsageReported","id":"u-\#(hour)-\#(number)-\#(key)","value":{"resourceId":"\#(subscription.id)","timestamp":"\#(time)","meterName":"\#(meter)","quantity":\#(quantity),"properties":{"campaign":"\#(campaign)"}}}"#
                }
                var texts = [usage("email", String(emails), "e")]
                switch subscription.plan {
                case 0: texts.append(usage("cpu", "0.25", "c"))
                case 1:
                    texts.append(usage("egress", "\(Int.random(in: 0...3, using: &random)).\(Int.random(in: 0...9, using: &random))", "g"))
                default: texts.append(usage("seats", String(Int.random(in: 10...40, using: &random)), "s"))
                }
                for text in texts { events.append(try JSONParser.parse(text)) }
                if subscription.plan == 1 { sentIds.append((hour, "u-\(hour)-\(number)-g", subscription.id)) }
            }
            if !events.isEmpty {
                let response = try MeterCtl.call(client, Request(op: "append", fields: JSONObject(["events": .array(events)])))
                sent += (response["results"]?.arrayValue ?? []).filter { $0["status"] == "accepted" }.count
            }
            clock = clock.adding(microseconds: Timestamp.microsecondsPerHour)
            _ = try MeterCtl.call(admin, Request(op: "advance-clock", fields: JSONObject(["to": .string(clock.iso8601)])))
            // Every six simulated hours, let the submitter catch up: the marketplace refuses
            // usage older than 24 hours, and the demo's clock runs far faster than a real one.
            if hour % 6 == 5 { waitUntilReported(aggregator) }
            progress(hour + 1, of: hours, clock: clock, events: sent)
        }
        _ = try MeterCtl.call(
            admin, Request(op: "advance-clock", fields: JSONObject(["to": .string(clock.adding(microseconds: 1_000_000).iso8601)])))
        waitUntilReported(aggregator)
        print("")
        let query = home + "/run/query.sock"
        waitUntilCaughtUp(query)
        try summary(subscriptions.map(\.id), aggregator: aggregator, query: query, marketplace: marketplace, sent: sent)
        print("")
        print("== Corrections")
        for line in corrections { print(line) }
        // What the void left in the marketplace ledger: a credit, and a refund when its period ended unused.
        let reader = try MeterCtl.connect(query)
        for status in ["Credited", "Refund"] {
            let page = try reader.call(Request(op: "submissions", fields: JSONObject(["batchSize": 100, "status": .string(status)])))
            for record in page["records"]?.arrayValue ?? [] {
                print(
                    "ledger: \(status) \(AggregatorCommands.text(record["quantity"])) \(AggregatorCommands.text(record["dimension"])) for \(AggregatorCommands.text(record["resourceId"])) at \(AggregatorCommands.text(record["recordedAt"]))"
                )
            }
        }
        webhookSummary(receiver)
        reconcile(home: home, environment: invocation.environment, query: query, last: clock)
        try usageAPI(home: home)
        Up.say("the data stays in \(home); explore it with: METERING_CLOCK=manual \(Up.binary("meterctl")) up --home \(home)")
    }

    /// What the demo's webhook received from meter-notifier, once deliveries have settled.
    static func webhookSummary(_ receiver: DemoWebhookReceiver) {
        var count = -1
        let deadline = Date().addingTimeInterval(15)
        while Date() < deadline {
            let now = receiver.notifications.count
            if now == count && now > 0 { break }
            count = now
            Thread.sleep(forTimeInterval: 1)
        }
        let received = receiver.notifications
        print("")
        print("== Notifications meter-notifier delivered to a webhook (signed; docs/NOTIFICATIONS.md)")
        var perType: [String: Int] = [:]
        for notification in received { perType[notification["type"]?.stringValue ?? "?", default: 0] += 1 }
        print("received \(received.count): " + perType.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", "))
        let shown =
            received.filter { $0["type"] == "subscription.planChanged" }.prefix(2)
            + received.filter { $0["type"] == "usage.threshold" }.prefix(4)
        for notification in shown { print(DemoWebhookReceiver.line(notification)) }
    }

    /// The reconciliation of every simulated day the marketplace has processed (those before the
    /// last one) against the query service's accepted ledger.
    static func reconcile(home: String, environment: [String: String], query: String, last: Timestamp) {
        print("")
        let day = Timestamp.microsecondsPerDay
        let from = Timestamp(iso8601: "2024-01-31T00:00:00Z")!
        let to = Timestamp(microseconds: last.microseconds / day * day)
        print("== Reconciliation: what we recorded accepted against the marketplace's usage events, per day, subscription and dimension")
        do {
            let reconciler = Reconciler(
                access: try ReconcileCommand.access(home: home, environment: environment, url: nil), querySocket: query)
            print(ReconcileCommand.text(try reconciler.run(from: from, to: to)), terminator: "")
            print("(meter-submitter runs this every hour; meterctl submitter-status shows the last result, meterctl reconcile runs it now)")
        } catch {
            print("the reconciliation could not run: \(error)")
        }
    }

    /// A key for the usage API and the first records it serves, as a billing adapter reads them.
    static func usageAPI(home: String) throws {
        print("")
        print("== The usage API for billing adapters (docs/BILLING-ADAPTERS.md)")
        guard
            let address = (try? String(contentsOfFile: home + "/run/query-adapters.addr", encoding: .utf8))?
                .trimmingCharacters(in: .whitespacesAndNewlines), address.hasPrefix("http")
        else {
            print("meter-query does not serve it (METERING_QUERY_ADAPTER_HTTP)")
            return
        }
        let key = AdapterKey.generate()
        let store = AdapterCredentialStore(path: AdapterCredentialStore.defaultPath(home: home))
        let created = Timestamp(seconds: Int64(Date().timeIntervalSince1970))
        try store.update { $0.append(AdapterCredential(key: key, name: "demo", subscriptions: nil, created: created)) }
        var request = URLRequest(url: URL(string: address + "/v1/usage?startId=0&batchSize=3")!)
        request.setValue("Bearer \(key.text)", forHTTPHeaderField: "Authorization")
        guard let data = try? synchronousData(request), let page = try? JSONParser.parse(Array(data)) else {
            print("the usage API at \(address) did not answer")
            return
        }
        var rows = [["id", "resource", "meter", "dimension", "hour (UTC)", "quantity", "billed", "status"]]
        for record in page["records"]?.arrayValue ?? [] {
            rows.append(
                ["id", "resourceId", "meterName", "dimension", "hour", "quantity", "billed", "status"].map {
                    AggregatorCommands.text(record[$0])
                })
        }
        Table.print(rows)
        print(
            "\(AggregatorCommands.text(page["total"])) usage records in all, the same ids on every replica. With the key made for the demo:"
        )
        print("  curl -H 'Authorization: Bearer \(key.text)' '\(address)/v1/usage?startId=0&batchSize=100'")
    }

    /// The body of a GET, waiting for it (URLSession has no synchronous call on Linux).
    static func synchronousData(_ request: URLRequest) throws -> Data {
        final class Box: @unchecked Sendable {
            var result: Result<Data, any Error> = .failure(MeterCtl.Failure("no answer"))
        }
        let box = Box()
        let done = DispatchSemaphore(value: 0)
        URLSession.shared.dataTask(with: request) { data, response, error in
            if let error {
                box.result = .failure(error)
            } else if let status = (response as? HTTPURLResponse)?.statusCode, status != 200 {
                box.result = .failure(MeterCtl.Failure("HTTP \(status)"))
            } else {
                box.result = .success(data ?? Data())
            }
            done.signal()
        }.resume()
        done.wait()
        return try box.result.get()
    }

    /// Waits (at most 20 s) until the aggregators have nothing left to report.
    static func waitUntilReported(_ aggregator: String) {
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            if let status = try? UnixClient(path: aggregator).call("status"),
                (status["partitions"]?.arrayValue ?? []).allSatisfy({ $0["pending"]?.intValue == 0 && $0["lag"]?.intValue == 0 })
            {
                return
            }
            usleep(50_000)
        }
    }

    /// Waits (at most 20 s) until the query service has folded everything ingest has.
    static func waitUntilCaughtUp(_ query: String) {
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            if let status = try? UnixClient(path: query).call("status"),
                (status["partitions"]?.arrayValue ?? []).allSatisfy({ $0["lag"]?.intValue == 0 })
            {
                return
            }
            usleep(50_000)
        }
    }

    static func progress(_ done: Int, of total: Int, clock: Timestamp, events: Int) {
        let width = 40
        let filled = done * width / total
        let line =
            "[\(String(repeating: "#", count: filled))\(String(repeating: ".", count: width - filled))] \(done * 100 / total)%  \(clock.iso8601)  \(events) events"
        if isatty(1) != 0 {
            print("\r" + line, terminator: "")
            fflush(nil)
        } else if done % max(1, total / 10) == 0 || done == total {
            print(line)
        }
    }

    static func quantity(_ value: JSONValue?) -> Quantity {
        switch value {
        case .number(let text)?, .string(let text)?: return Quantity(exactly: text) ?? .zero
        default: return .zero
        }
    }

    static func summary(_ ids: [String], aggregator: String, query: String, marketplace: String, sent: Int) throws {
        print("== Each subscription's run-rate now (the query service's view, current billing period)")
        var rows = [
            [
                "subscription", "plan", "period", "meter", "consumed", "included", "remaining", "overage", "projected", "accepted",
                "overage cost",
            ]
        ]
        let client = try MeterCtl.connect(aggregator)
        let reader = try MeterCtl.connect(query)
        var total: [String: Quantity] = [:]
        for id in ids {
            guard let runRate = try? reader.call(Request(op: "runrate", fields: JSONObject(["resourceId": .string(id)]))) else { continue }
            let period =
                "\(String(runRate["period"]?["start"]?.stringValue?.prefix(10) ?? "?"))..\(String(runRate["period"]?["end"]?.stringValue?.prefix(10) ?? "?"))"
            for (index, meter) in (runRate["meters"]?.arrayValue ?? []).enumerated() {
                rows.append([
                    index == 0 ? id : "", index == 0 ? AggregatorCommands.text(runRate["planId"]) : "", index == 0 ? period : "",
                    AggregatorCommands.text(meter["meterName"]), AggregatorCommands.text(meter["consumed"]),
                    AggregatorCommands.text(meter["included"]), AggregatorCommands.text(meter["remaining"]),
                    AggregatorCommands.text(meter["overage"]), AggregatorCommands.text(meter["projected"]),
                    AggregatorCommands.text(meter["marketplace"]?["accepted"]),
                    QueryCommands.overageCost(meter).map { QueryCommands.money($0.amount, $0.currency) } ?? "-",
                ])
                if let cost = QueryCommands.overageCost(meter) { total[cost.currency, default: .zero] += cost.amount }
            }
        }
        Table.print(rows)
        print(
            "Overage this period at the plans' display prices (from the plan catalog; the marketplace bills by its own price list): "
                + total.sorted { $0.key < $1.key }.map { QueryCommands.money($0.value, $0.key) }.joined(separator: ", "))

        print("")
        print("== What the (emulated) marketplace accepted, per day and dimension (\(marketplace))")
        guard let url = URL(string: marketplace + "/emulator/ledger"), let data = try? Data(contentsOf: url),
            let ledger = try? JSONParser.parse(Array(data)).arrayValue
        else { throw MeterCtl.Failure("cannot read the emulator's ledger at \(marketplace)") }
        var byDay: [String: [String: Quantity]] = [:]
        var dimensions: Set<String> = []
        var totals: [String: Quantity] = [:]
        for entry in ledger {
            let day = String(entry["effectiveStartTime"]?.stringValue?.prefix(10) ?? "?")
            let dimension = entry["dimension"]?.stringValue ?? "?"
            let amount = quantity(entry["quantity"])
            dimensions.insert(dimension)
            byDay[day, default: [:]][dimension, default: .zero] += amount
            totals[dimension, default: .zero] += amount
        }
        let columns = dimensions.sorted()
        var table = [["day"] + columns]
        for day in byDay.keys.sorted() {
            table.append([day] + columns.map { byDay[day]?[$0].map { $0.description } ?? "" })
        }
        table.append(["total"] + columns.map { totals[$0]?.description ?? "0" })
        Table.print(table)
        let status = try client.call("status")
        let partitions = status["partitions"]?.arrayValue ?? []
        func sum(_ key: String) -> Int { partitions.compactMap { $0[key]?.intValue }.reduce(0, +) }
        print("")
        print(
            "\(sent) usage events sent; \(ledger.count) usage items accepted by the marketplace, \(sum("accepted")) settled in the aggregator's books; pending \(sum("pending")), conflicts \(sum("conflicts")), rejected \(sum("rejected"))."
        )
        // The query service's marketplace ledger must hold exactly what the marketplace accepted.
        var recorded: [String: Quantity] = [:]
        var next = 0
        while true {
            let page = try reader.call(
                Request(
                    op: "submissions", fields: JSONObject(["startId": .number(String(next)), "batchSize": 10000, "status": "Accepted"])))
            for record in page["records"]?.arrayValue ?? [] where record["settled"] == "Accepted" {
                // Sent before a void took part of it back: the marketplace holds the quantity sent.
                recorded[record["dimension"]?.stringValue ?? "?", default: .zero] += quantity(
                    record["acceptedQuantity"] ?? record["quantity"])
            }
            let after = page["nextId"]?.intValue ?? next
            if after == next || after >= (page["total"]?.intValue ?? 0) { break }
            next = after
        }
        let agrees = recorded.filter { $0.value > .zero } == totals.filter { $0.value > .zero }
        print(
            "The query service's ledger \(agrees ? "agrees with" : "DIFFERS FROM") the marketplace's accepted totals for every dimension"
                + (agrees ? "." : ": \(recorded) vs \(totals)"))
    }
}
