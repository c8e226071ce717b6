import Foundation
import HTTP
import StackTestSupport
import Testing
import Transport
import Wire

/// The run-rate page served by the real `meter-query`, folded from a real `meter-ingest` log,
/// with tokens minted by the real `meterctl token`.
@Suite("The run-rate page served by meter-query from a real log", .serialized)
struct RunRatePageEndToEndTests {
    /// ingest and query on one home, two subscriptions with usage, the page on an ephemeral port.
    final class Served: @unchecked Sendable {
        let home = StackHome()
        let ingest: IngestProcess
        let query: QueryProcess
        let baseURL: String
        let port: Int

        /// `usage`: per log time, the usage appended then (`Served.usage` by default).
        init(usage: [(String, [(String, String, String)])] = Served.usage) throws {
            ingest = try IngestProcess(home: home)
            query = try QueryProcess(home: home, environment: ["METERING_QUERY_HTTP": "127.0.0.1:0"])
            let addressFile = home.path + "/run/query-http.addr"
            let deadline = Date().addingTimeInterval(10)
            var address = ""
            while Date() < deadline && !address.hasPrefix("http") {
                address = ((try? String(contentsOfFile: addressFile, encoding: .utf8)) ?? "").trimmingCharacters(
                    in: .whitespacesAndNewlines)
                usleep(20_000)
            }
            baseURL = address
            port = Int(address.split(separator: ":").last ?? "") ?? 0
            let plan = """
                {"planId":"gold","billingDimensions":{"email":{"type":"simple","dimension":"emails","included":1000},\
                "storage":{"type":"simple","dimension":"gb","included":"Infinite"},\
                "egress":{"type":"waterfall","tiers":[{"dimension":"egress-1","threshold":100},{"dimension":"egress-2","threshold":10000}]},\
                "seats":{"type":"simple","dimension":"seats","included":5,"aggregation":"max"}}}
                """
            var events: [JSONValue] = []
            for name in ["page-a", "page-b"] {
                events.append(
                    try JSONParser.parse(
                        #"{"type":"SubscriptionPurchased","value":{"subscription":{"resourceId":"\#(name)","subscriptionStart":"2024-03-01T00:00:00Z","renewalInterval":"Monthly","plan":\#(plan)}}}"#
                    ))
            }
            // Usage on three days of March, so the chart has three days to show.
            for (day, usage) in usage {
                _ = try ingest.admin().call(Request(op: "advance-clock", fields: JSONObject(["to": .string(day)])))
                events += usage.map { PageUsage.event($0) }
                _ = try ingest.client().call(appendRequest(events))
                events = []
            }
            try query.waitUntilCaughtUp(with: ingest)
        }

        /// Per log time, the usage appended then: page-a's email adds up to 1,250.000000000000000001
        /// (more digits than a double holds), its egress to 15,000 (tier 2 from 10,100).
        static let usage: [(String, [(String, String, String)])] = [
            ("2024-03-02T09:00:00Z", [("page-a", "email", "400"), ("page-a", "egress", "5000"), ("page-a", "seats", "3")]),
            (
                "2024-03-05T15:00:00Z",
                [("page-a", "email", "600.000000000000000001"), ("page-a", "egress", "6000"), ("page-a", "seats", "7")]
            ),
            (
                "2024-03-10T12:00:00Z",
                [
                    ("page-a", "email", "250"), ("page-a", "storage", "321.5"), ("page-a", "egress", "4000"), ("page-a", "seats", "6"),
                    ("page-b", "email", "7"),
                ]
            ),
        ]

        /// A token minted by `meterctl token` with this home's secret.
        func token(_ resourceId: String, ttl: Int = 600) throws -> String {
            let outcome = try TestCommand.run(
                Binaries.path("meterctl"), ["token", "--home", home.path, "--resource-id", resourceId, "--ttl", String(ttl)], timeout: 20)
            #expect(outcome.status == 0, "\(outcome.errors)")
            return outcome.output.split(separator: "\n").first.map(String.init) ?? ""
        }

        func api(_ token: String?, _ target: String = "/api/runrate") throws -> TestHTTPClient.Response {
            let client = try TestHTTPClient(port: port)
            return try client.request("GET", target, headers: token.map { ["Authorization": "Bearer \($0)"] } ?? [:])
        }
    }

    @Test("the API answers the subscription of the token with the numbers of the log, and refuses everything else")
    func apiAnswersOnlyTheTokensSubscription() throws {
        let served = try Served()
        let tokenA = try served.token("page-a")
        let answer = try served.api(tokenA)
        #expect(answer.status == 200)
        let email = answer.json?["meters"]?.arrayValue?.first { $0["meterName"] == "email" }
        #expect(email?["consumed"] == .number("1250.000000000000000001"))
        #expect(email?["overage"] == .number("250.000000000000000001"))
        #expect(answer.json?["resourceId"] == "page-a")
        #expect(try served.api(tokenA, "/api/runrate?resourceId=page-b").status == 403)
        #expect(try served.api(nil).status == 401)
        #expect(try served.api(tokenA + "x").status == 401)
        let expiring = try served.token("page-a", ttl: 1)
        Thread.sleep(forTimeInterval: 2.1)
        #expect(try served.api(expiring).status == 401)
        // B's own token reads B, never A.
        let tokenB = try served.token("page-b")
        #expect(try served.api(tokenB).json?["resourceId"] == "page-b")
        #expect(try served.api(tokenB, "/api/runrate?resourceId=page-a").status == 403)
    }

    @Test("the browser's /favicon.ico gets an empty answer and no log line; a wrong path is still logged")
    func faviconIsQuiet() throws {
        let served = try Served()
        for _ in 0..<3 { #expect(try served.api(nil, "/favicon.ico").status == 204) }
        #expect(try served.api(nil, "/no-such-page").status == 404)
        served.query.kill(SIGTERM)
        let log = served.query.readErrors()
        #expect(log.contains("/no-such-page"), "\(log)")
        #expect(!log.contains("favicon"), "\(log)")
    }

    @Test("Chromium shows the log's figures exactly, the chart of the log's days and tiers as the CLI reads them")
    func chromiumRendersThePage() throws {
        let served = try Served()
        let url = served.baseURL + "/#token=" + (try served.token("page-a"))
        let page = try RunRatePageTests.dom(url)
        #expect(page.attribute("status", "data-state") == "live", "\(page.text("status") ?? "")")
        #expect(page.field("email", "consumed") == .init(value: "1250.000000000000000001", text: "1,250.000000000000000001"))
        #expect(page.field("email", "included")?.value == "1000")
        #expect(page.field("email", "overage")?.value == "250.000000000000000001")
        #expect(page.field("storage", "included")?.value == "Infinite")
        #expect(page.field("storage", "consumed")?.value == "321.5")
        #expect(page.text("subscription") == "Subscription page-a")
        // March 2024: 31 days, 2024-03-10T12:00 is 21.5 days before its end.
        #expect(page.attribute("days-left", "data-value") == "21")
        #expect(page.text("period") == "Period Mar 1, 2024 – Mar 31, 2024")

        // The chart: one mark per day with usage, each the log's usage of that day.
        #expect(page.attributes(meter: "email", field: "chart.day", "data-day") == ["2024-03-02", "2024-03-05", "2024-03-10"])
        #expect(page.fields("email", "chart.day").map(\.value) == ["400", "600.000000000000000001", "250"])
        #expect(page.field("email", "chart.included")?.value == "1000")
        #expect(page.field("email", "chart.projected")?.value == page.field("email", "projected")?.value)
        #expect(page.fields("seats", "chart.day").map(\.value) == ["3", "7", "6"])
        #expect(page.fields("egress", "chart.day").map(\.value) == ["5000", "6000", "4000"])

        // "15,000 used; 100 included; tier 2 from 10,100".
        #expect(page.field("egress", "consumed")?.text == "15,000")
        #expect(page.field("egress", "included")?.text == "100")
        #expect(page.field("egress", "currentTier")?.text == "tier 2")
        #expect(page.field("egress", "currentTierFrom")?.text == "10,100")
        #expect(page.fields("egress", "tierConsumed").map(\.value) == ["10000", "4900"])

        // No price in the log: nothing about money.
        #expect(!page.textOutsideDetails.contains("$") && page.fields("email", "overageCost").isEmpty)

        try RunRatePageTests.screenshot(url, name: "stack-desktop", width: 1280, height: 900)
        try RunRatePageTests.screenshot(url, name: "stack-phone", width: 390, height: 844)
    }

    @Test("a projection past the largest quantity reads \"… or more\" on the page and in meterctl runrate")
    func saturatedProjection() throws {
        // The largest whole usage in the period's first hour: scaled to the month, it passes the range.
        let served = try Served(usage: [("2024-03-01T00:30:00Z", [("page-a", "email", "170141183460469231731")])])
        let largest = "170141183460469231731.687303715884105727"
        let page = try RunRatePageTests.dom(served.baseURL + "/#token=" + (try served.token("page-a")))
        #expect(page.field("email", "projected") == .init(value: largest, text: "170,141,183,460,469,231,731.687303715884105727 or more"))
        #expect(page.field("email", "consumed")?.value == "170141183460469231731")
        let outcome = try TestCommand.run(
            Binaries.path("meterctl"), ["runrate", "--home", served.home.path, "--resource-id", "page-a"], timeout: 20)
        #expect(outcome.status == 0, "\(outcome.errors)")
        #expect(outcome.output.contains(largest + " or more"), "\(outcome.output)")
        #expect(!outcome.output.contains("170141183460469231731 or more"), "\(outcome.output)")
    }

    @Test("query.sock answers the series only when asked, and refuses a series flag that is not true or false")
    func seriesOnTheSocket() throws {
        let served = try Served()
        let client = try served.query.client()
        let plain = try client.call(Request(op: "runrate", fields: JSONObject(["resourceId": "page-a"])))
        #expect(plain["meters"]?.arrayValue?.allSatisfy { $0["series"] == nil } == true)
        let asked = try client.call(Request(op: "runrate", fields: JSONObject(["resourceId": "page-a", "series": true])))
        let email = asked["meters"]?.arrayValue?.first { $0["meterName"] == "email" }
        #expect(email?["series"]?["step"] == "day")
        #expect(email?["series"]?["points"]?.arrayValue?.map { $0["start"] } == ["2024-03-02", "2024-03-05", "2024-03-10"])
        let refusal = Result { () throws(UnixClient.Failure) in
            try client.call(Request(op: "runrate", fields: JSONObject(["resourceId": "page-a", "series": "yes"])))
        }
        guard case .failure(.server(let error)) = refusal else {
            Issue.record("a series flag of \"yes\" was not refused: \(refusal)")
            return
        }
        #expect(error.code == .badRequest, "\(error)")
    }
}

/// A usage event of the page's end-to-end log.
enum PageUsage {
    static func event(_ usage: (resource: String, meter: String, quantity: String)) -> JSONValue {
        StackTestSupport.usage(usage.resource, usage.quantity, meter: usage.meter)
    }
}
