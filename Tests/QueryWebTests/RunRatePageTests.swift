import Crypto
import Foundation
import HTTP
import QueryWeb
import StackTestSupport
import Testing
import Wire

/// The run-rate page in a real browser (headless Chromium): what a customer's browser shows,
/// read from the DOM after the page's script has run, and a screenshot.
///
/// Chromium is required, not optional: without it these tests fail and say how to install it.
@Suite("The run-rate page in headless Chromium", .serialized)
struct RunRatePageTests {
    static let install = "install it with: apt-get install -y chromium (scripts/bootstrap does)"

    static func chromium() throws -> String {
        try #require(TestCommand.find("chromium") ?? TestCommand.find("chromium-browser"), "Chromium is not installed; \(install)")
    }

    /// Chromium's outcome for `url` with `mode` (`--dump-dom` or `--screenshot=...`), after
    /// `budget` milliseconds of virtual time (timers run, network waits do not count).
    static func browse(_ url: String, _ mode: [String], budget: Int = 3000) throws -> TestCommand.Outcome {
        let profile = FileManager.default.temporaryDirectory.appendingPathComponent("chromium-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: profile) }
        let outcome = try TestCommand.run(
            try chromium(),
            [
                "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                "--disable-background-networking", "--lang=en-US", "--user-data-dir=\(profile)", "--virtual-time-budget=\(budget)",
            ] + mode + [url], timeout: 60)
        #expect(!outcome.timedOut, "chromium did not finish in 60 s: \(outcome.errors.suffix(2000))")
        return outcome
    }

    static func dom(_ url: String, budget: Int = 3000) throws -> PageDOM {
        let outcome = try browse(url, ["--dump-dom"], budget: budget)
        try #require(outcome.status == 0 && outcome.output.contains("<main"), "chromium failed: \(outcome.errors.suffix(2000))")
        return PageDOM(outcome.output)
    }

    @Test("the page shows every meter's numbers exactly as sent, the tiers as the CLI reads them, and whole days left")
    func showsTheRunRate() throws {
        let server = try RunRateServer()
        let page = try Self.dom(server.baseURL + "#token=" + RunRateServer.token())
        #expect(page.attribute("status", "data-state") == "live", "\(page.text("status") ?? "")")

        #expect(page.field("email", "consumed") == .init(value: "1250", text: "1,250"))
        #expect(page.field("email", "included") == .init(value: "1000", text: "1,000"))
        #expect(page.field("email", "remaining") == .init(value: "0", text: "0"))
        #expect(page.field("email", "overage") == .init(value: "250", text: "250"))
        #expect(page.field("email", "openHourOverage") == .init(value: "50", text: "50"))
        #expect(page.field("email", "projected") == .init(value: "1800", text: "1,800"))
        #expect(page.field("email", "projectedOverage")?.value == "800")
        #expect(page.field("email", "usedPercent") == .init(value: "125", text: "125 % of the included quantity"))
        #expect(page.field("email", "marketplace.pending")?.value == "50")
        #expect(page.field("email", "marketplace.accepted")?.value == "200")
        #expect(page.field("email", "marketplace.rejected")?.value == "0")

        #expect(page.field("storage", "included") == .init(value: "Infinite", text: "unlimited"))
        #expect(page.field("storage", "remaining") == .init(value: "Infinite", text: "Unlimited"))
        // 25 significant digits: a double would show 1,234,567.123456789.
        #expect(page.field("storage", "consumed") == .init(value: RunRateFixture.storageConsumed, text: "1,234,567.123456789012345678"))
        #expect(page.field("storage", "projectedOverage") == nil)

        // "15,000 used; 100 included; tier 2 from 10,100", never "15,000 % of the included quantity".
        #expect(page.field("egress", "consumed") == .init(value: "15000", text: "15,000"))
        #expect(page.field("egress", "included") == .init(value: "100", text: "100"))
        #expect(page.field("egress", "currentTier") == .init(value: "2", text: "tier 2"))
        #expect(page.field("egress", "currentTierFrom") == .init(value: "10100", text: "10,100"))
        #expect(page.field("egress", "usedPercent") == nil)
        #expect(page.fields("egress", "tierFrom").map(\.value) == ["100", "10100", "50100"])
        #expect(page.fields("egress", "tierConsumed").map(\.value) == ["10000", "4900", "0"])
        #expect(page.field("egress", "marketplace.rejected")?.value == "500")
        #expect(page.field("egress", "marketplace.conflicts") == nil)

        #expect(page.field("seats", "consumed")?.value == "7")
        #expect(page.field("seats", "overage")?.value == "2")
        #expect(page.field("seats", "projected") == nil)

        #expect(page.attribute("days-left", "data-value") == "10")
        #expect(page.text("days-left")?.hasPrefix("10 days left, then included quantities refill on Jul 21, 2024") == true)
        #expect(page.attribute("as-of", "data-value") == RunRateFixture.asOf)
        #expect(page.text("as-of")?.hasPrefix("Figures as of ") == true)
        #expect(page.text("plan") == "Plan gold")
        #expect(page.text("subscription") == "Subscription sub-a")
        let period = try #require(page.text("period"))
        #expect(period == "Period Jun 21, 2024 – Jul 20, 2024", "\(period)")
    }

    @Test("each meter's chart is inline SVG with one mark per day with usage, the included line and the projection")
    func chart() throws {
        let server = try RunRateServer()
        let page = try Self.dom(server.baseURL + "#token=" + RunRateServer.token())
        #expect(page.field("email", "chart")?.value == "4")
        #expect(page.attribute(meter: "email", field: "chart", "data-step") == "day")
        let days = page.fields("email", "chart.day")
        #expect(days.map(\.value) == ["250", "400", "500", "100"])
        #expect(
            page.attributes(meter: "email", field: "chart.day", "data-day") == ["2024-06-22", "2024-07-01", "2024-07-09", "2024-07-10"])
        #expect(page.field("email", "chart.included")?.value == "1000")
        #expect(page.field("email", "chart.projected")?.value == "1800")
        // Unlimited: no included line; a gauge: its readings, no projection.
        #expect(page.fields("storage", "chart.day").map(\.value) == ["1234000", "567.123456789012345678"])
        #expect(page.field("storage", "chart.included") == nil)
        #expect(page.fields("seats", "chart.day").map(\.value) == ["3", "7", "6"])
        #expect(page.field("seats", "chart.included")?.value == "5")
        #expect(page.field("seats", "chart.projected") == nil)
        #expect(page.fields("egress", "chart.day").count == 3)
        // The marks are SVG elements the page's own script drew: no image, no external file.
        #expect(page.html.contains("<svg") && !page.html.contains("<img") && !page.html.contains("http://www.w3.org/2000/svg\" href"))
    }

    @Test("words for customers: no conflicts, marketplace dimensions only under Details, and no money without prices")
    func customerWords() throws {
        let server = try RunRateServer()
        let page = try Self.dom(server.baseURL + "#token=" + RunRateServer.token())
        let visible = page.textOutsideDetails
        #expect(!visible.isEmpty)
        for word in ["onflict", "email-overage", "egress_tier", "storage-gb", "marketplace.", "Dimension"] {
            #expect(!visible.contains(word), "\(word) is visible outside Details")
        }
        #expect(!page.html.contains("onflict"))
        #expect(page.field("email", "dimension")?.value == "email-overage")
        #expect(page.fields("egress", "tierDimension").map(\.value) == ["egress_tier_1", "egress_tier_2", "egress_tier_3"])
        for field in ["overageCost", "projectedOverageCost", "tierCost"] {
            #expect(page.fields("email", field).isEmpty && page.fields("egress", field).isEmpty)
        }
        #expect(!visible.contains("$") && !visible.contains("USD") && !visible.contains("€"))
    }

    @Test("with display prices the page shows money, computed exactly, for overage and projected overage, per tier too")
    func money() throws {
        let server = try RunRateServer(answer: { name, _ in .success(RunRateFixture.object(name, consumed: 1250, prices: true)) })
        let page = try Self.dom(server.baseURL + "#token=" + RunRateServer.token())
        #expect(page.field("email", "overageCost") == .init(value: "5", text: "$5.00"))
        #expect(page.field("email", "projectedOverageCost") == .init(value: "16", text: "$16.00"))
        // 10,000 × 0.01 + 4,900 × 0.008; projected 20,000: 10,000 × 0.01 + 9,900 × 0.008.
        #expect(page.field("egress", "overageCost") == .init(value: "139.2", text: "$139.20"))
        #expect(page.field("egress", "projectedOverageCost") == .init(value: "179.2", text: "$179.20"))
        #expect(page.fields("egress", "tierCost").map(\.value) == ["100", "39.2", "0"])
        // No price, no money.
        #expect(page.fields("storage", "overageCost").isEmpty && page.fields("seats", "overageCost").isEmpty)
    }

    @Test("a figure past the largest quantity reads \"… or more\", never as an exact number")
    func saturated() throws {
        let server = try RunRateServer(answer: { name, _ in .success(RunRateFixture.object(name, consumed: 1250, saturated: true)) })
        let page = try Self.dom(server.baseURL + "#token=" + RunRateServer.token())
        let projected = try #require(page.field("email", "projected"))
        #expect(projected == .init(value: RunRateFixture.largest, text: "170,141,183,460,469,231,731.687303715884105727 or more"))
        #expect(page.attribute(meter: "email", field: "projected", "data-saturated") == "true")
        #expect(page.field("email", "projectedOverage")?.text.hasSuffix(" or more") == true)
        #expect(page.field("email", "marketplace.pending")?.text.hasSuffix(" or more") == true)
        #expect(page.field("email", "marketplace.accepted")?.text == "200")
        #expect(page.field("email", "overage")?.text == "250")
    }

    @Test("the page refreshes by itself and shows the newest figures")
    func refreshes() throws {
        let server = try RunRateServer(answer: { name, call in
            .success(RunRateFixture.object(name, consumed: call == 1 ? 1250 : 1300))
        })
        let page = try Self.dom(server.baseURL + "#token=" + RunRateServer.token(), budget: 12_000)
        let calls = server.askedNames.count
        #expect(calls >= 2)
        #expect(page.field("email", "consumed")?.value == "1300")
        #expect(page.attribute("status", "data-state") == "live")
    }

    @Test(
        "an expired link, a forged one, another scope, an unknown subscription and no token each get a clear message",
        arguments: [
            (RunRateServer.token(expiresIn: 0), "unauthorized", "expired"),
            (RunRateServer.token(secret: try! AccessTokenSecret(bytes: Array(repeating: 9, count: 32))), "unauthorized", "not valid"),
            (RunRateServer.token(scope: "admin"), "forbidden", "does not give access"),
            (RunRateServer.token(RunRateServer.unknown), "notfound", "No usage is known"),
            ("", "notoken", "needs the link"),
        ])
    func refusals(_ token: String, _ state: String, _ message: String) throws {
        let server = try RunRateServer()
        let page = try Self.dom(server.baseURL + (token.isEmpty ? "" : "#token=" + token))
        #expect(page.attribute("status", "data-state") == state)
        #expect(page.text("status")?.contains(message) == true, "\(page.text("status") ?? "")")
        #expect(page.fields("email", "consumed").isEmpty)
    }

    @Test("a connection cut on the API call is shown as the server being unreachable, and retried")
    func networkError() throws {
        let inner = RunRateHTTPHandler(verifier: AccessTokenVerifier(secret: RunRateServer.secret, now: { RunRateServer.now })) { _ in
            .failure(WireError(.internalError, "unreachable"))
        }
        let cutting = try HTTPServer(host: "127.0.0.1", port: 0, limits: HTTPServer.Limits(), handler: CuttingAPI(inner: inner))
        cutting.start()
        defer { cutting.stop(waitingUpTo: 2) }
        let page = try Self.dom("http://127.0.0.1:\(cutting.port)/#token=" + RunRateServer.token())
        #expect(page.attribute("status", "data-state") == "offline")
        #expect(page.text("status")?.contains("Cannot reach the server") == true)
    }

    /// Where screenshots are kept for people to look at.
    static let artifacts = "/tmp/metering-page-artifacts"

    /// A screenshot of `url` at `width`×`height`, checked to be a real rendering of that size and
    /// kept as `artifacts/name.png`.
    static func screenshot(_ url: String, name: String, width: Int, height: Int) throws {
        try FileManager.default.createDirectory(atPath: artifacts, withIntermediateDirectories: true)
        let path = artifacts + "/" + name + ".png"
        try? FileManager.default.removeItem(atPath: path)
        let outcome = try browse(url, ["--screenshot=\(path)", "--window-size=\(width),\(height)", "--hide-scrollbars"])
        #expect(outcome.status == 0, "\(outcome.errors.suffix(2000))")
        let png = try #require(FileManager.default.contents(atPath: path), "no screenshot written: \(outcome.errors.suffix(2000))")
        let bytes = Array(png)
        #expect(bytes.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]))
        func bigEndian(_ offset: Int) -> Int { bytes[offset..<offset + 4].reduce(0) { $0 << 8 | Int($1) } }
        try #require(bytes.count > 24)
        #expect(bigEndian(16) == width && bigEndian(20) == height)
        // A blank page compresses to a few kilobytes; text, bars, charts and tables do not.
        #expect(bytes.count > width * height / 40, "\(bytes.count) bytes")
        print("run-rate page screenshot: \(path)")
    }

    @Test("screenshots at desktop (1280×900) and phone (390×844, and the whole phone page) widths are real renderings, kept")
    func screenshots() throws {
        let server = try RunRateServer(answer: { name, _ in .success(RunRateFixture.object(name, consumed: 1250, prices: true)) })
        let url = server.baseURL + "#token=" + RunRateServer.token()
        try Self.screenshot(url, name: "stub-desktop", width: 1280, height: 900)
        try Self.screenshot(url, name: "stub-phone", width: 390, height: 844)
        try Self.screenshot(url, name: "stub-phone-whole", width: 390, height: 2800)
    }
}

/// Serves the page, but cuts every `/api/runrate` connection without an answer, as a network
/// failure would.
struct CuttingAPI: HTTPHandler {
    let inner: RunRateHTTPHandler

    func handle(_ request: HTTPRequest) -> HTTPReply {
        request.path == "/api/runrate" ? .drop : inner.handle(request)
    }

    func refused(_ status: Int, reason: String) {}
}

/// The numbers of a DOM serialization as the page's elements carry them (`data-meter`,
/// `data-field`, `data-value`, and the element's text), and elements by id.
struct PageDOM {
    struct Field: Equatable {
        var value: String
        var text: String
    }

    private struct Element {
        var attributes: [String: String]
        var text: String
    }

    private var elements: [Element] = []
    /// The serialized DOM as Chromium printed it.
    let html: String

    init(_ html: String) {
        self.html = html
        // Each opening tag with its attributes and the text that directly follows it.
        let tag = try! NSRegularExpression(pattern: #"<([a-zA-Z][a-zA-Z0-9]*)((?:\s+[a-zA-Z][a-zA-Z0-9-.:]*(?:="[^"]*")?)*)\s*/?>([^<]*)"#)
        let attribute = try! NSRegularExpression(pattern: #"([a-zA-Z][a-zA-Z0-9-.:]*)(?:="([^"]*)")?"#)
        let text = html as NSString
        for match in tag.matches(in: html, range: NSRange(location: 0, length: text.length)) {
            let attributeText = text.substring(with: match.range(at: 2))
            var attributes: [String: String] = [:]
            for pair in attribute.matches(in: attributeText, range: NSRange(location: 0, length: (attributeText as NSString).length)) {
                let name = (attributeText as NSString).substring(with: pair.range(at: 1))
                let value = pair.range(at: 2).location == NSNotFound ? "" : (attributeText as NSString).substring(with: pair.range(at: 2))
                attributes[name] = Self.unescaped(value)
            }
            elements.append(Element(attributes: attributes, text: Self.unescaped(text.substring(with: match.range(at: 3)))))
        }
    }

    private static func unescaped(_ text: String) -> String {
        text.replacingOccurrences(of: "&quot;", with: "\"").replacingOccurrences(of: "&lt;", with: "<")
            .replacingOccurrences(of: "&gt;", with: ">").replacingOccurrences(of: "&nbsp;", with: "\u{A0}")
            .replacingOccurrences(of: "&amp;", with: "&")
    }

    func fields(_ meter: String, _ name: String) -> [Field] {
        elements.filter { $0.attributes["data-meter"] == meter && $0.attributes["data-field"] == name }.map {
            Field(value: $0.attributes["data-value"] ?? "", text: $0.text)
        }
    }

    /// The only field `name` of `meter`, or nil when there is none (or several).
    func field(_ meter: String, _ name: String) -> Field? {
        let found = fields(meter, name)
        return found.count == 1 ? found[0] : nil
    }

    /// Attribute `name` of the only element with `data-meter` `meter` and `data-field` `field`.
    func attribute(meter: String, field: String, _ name: String) -> String? {
        let found = attributes(meter: meter, field: field, name)
        return found.count == 1 ? found[0] : nil
    }

    /// Attribute `name` of every element with `data-meter` `meter` and `data-field` `field`, in order.
    func attributes(meter: String, field: String, _ name: String) -> [String] {
        elements.filter { $0.attributes["data-meter"] == meter && $0.attributes["data-field"] == field }.compactMap { $0.attributes[name] }
    }

    /// The text of the page outside `<details>` (what shows before anyone asks for details),
    /// without tags.
    var textOutsideDetails: String {
        let body = html.range(of: "<body").map { String(html[$0.lowerBound...]) } ?? html
        return body.replacingOccurrences(of: #"<details[\s\S]*?</details>"#, with: "", options: .regularExpression)
            .replacingOccurrences(of: #"<[^>]*>"#, with: " ", options: .regularExpression)
    }

    func attribute(_ id: String, _ name: String) -> String? {
        elements.first { $0.attributes["id"] == id }?.attributes[name]
    }

    func text(_ id: String) -> String? {
        elements.first { $0.attributes["id"] == id }?.text
    }
}
