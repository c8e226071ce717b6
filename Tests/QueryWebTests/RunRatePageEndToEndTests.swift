import Foundation
import StackTestSupport
import Testing
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

        init() throws {
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
            let plan =
                #"{"planId":"gold","billingDimensions":{"email":{"type":"simple","dimension":"emails","included":1000},"storage":{"type":"simple","dimension":"gb","included":"Infinite"}}}"#
            _ = try ingest.admin().call(Request(op: "advance-clock", fields: JSONObject(["to": "2024-03-10T12:00:00Z"])))
            var events: [JSONValue] = []
            for name in ["page-a", "page-b"] {
                events.append(
                    try JSONParser.parse(
                        #"{"type":"SubscriptionPurchased","value":{"subscription":{"resourceId":"\#(name)","subscriptionStart":"2024-03-01T00:00:00Z","renewalInterval":"Monthly","plan":\#(plan)}}}"#
                    ))
            }
            events.append(usage("page-a", "1250", meter: "email"))
            events.append(usage("page-a", "321.5", meter: "storage"))
            events.append(usage("page-b", "7", meter: "email"))
            _ = try ingest.client().call(appendRequest(events))
            try query.waitUntilCaughtUp(with: ingest)
        }

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
        #expect(email?["consumed"] == .number("1250"))
        #expect(email?["overage"] == .number("250"))
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

    @Test("Chromium renders the page with the log's numbers, and a screenshot is taken")
    func chromiumRendersThePage() throws {
        let served = try Served()
        let url = served.baseURL + "/#token=" + (try served.token("page-a"))
        let page = try RunRatePageTests.dom(url)
        #expect(page.attribute("status", "data-state") == "live", "\(page.text("status") ?? "")")
        #expect(page.field("email", "consumed")?.value == "1250")
        #expect(page.field("email", "included")?.value == "1000")
        #expect(page.field("email", "overage")?.value == "250")
        #expect(page.field("storage", "included")?.value == "Infinite")
        #expect(page.text("subscription") == "Subscription page-a")
        let path = "/tmp/metering-runrate-page-e2e.png"
        try? FileManager.default.removeItem(atPath: path)
        let outcome = try RunRatePageTests.browse(url, ["--screenshot=\(path)", "--window-size=1000,800", "--hide-scrollbars"])
        #expect(outcome.status == 0, "\(outcome.errors.suffix(1000))")
        let png = try #require(FileManager.default.contents(atPath: path))
        #expect(png.count > 20_000)
    }
}
