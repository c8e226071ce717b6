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

    @Test("the page shows every meter's numbers, the tiers, the period and the time the figures are valid at")
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
        #expect(page.field("email", "usedPercent")?.value == "125")
        #expect(page.field("email", "marketplace.pending")?.value == "50")
        #expect(page.field("email", "marketplace.accepted")?.value == "200")
        #expect(page.field("email", "marketplace.rejected")?.value == "0")
        #expect(page.field("email", "marketplace.conflicts")?.value == "0")

        #expect(page.field("storage", "included") == .init(value: "Infinite", text: "unlimited"))
        #expect(page.field("storage", "remaining") == .init(value: "Infinite", text: "Unlimited"))
        #expect(page.field("storage", "consumed") == .init(value: "321.5", text: "321.5"))
        #expect(page.field("storage", "projectedOverage") == nil)

        #expect(page.fields("egress", "tierConsumed").map(\.value) == ["9900", "2000", "0"])
        #expect(page.fields("egress", "tierThreshold").map(\.value) == ["100", "10000", "40000"])
        #expect(page.field("egress", "marketplace.conflicts")?.value == "1")
        #expect(page.field("egress", "marketplace.rejected")?.value == "500")
        #expect(page.field("egress", "usedPercent") == .init(value: "12000", text: "12,000 % of the included quantity"))

        #expect(page.attribute("days-left", "data-value") == "10.5")
        #expect(page.attribute("as-of", "data-value") == RunRateFixture.asOf)
        #expect(page.text("as-of")?.hasPrefix("Figures as of ") == true)
        #expect(page.text("plan") == "Plan gold")
        #expect(page.text("subscription") == "Subscription sub-a")
        let period = try #require(page.text("period"))
        #expect(period.hasPrefix("Period ") && period.contains(" – "), "\(period)")
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

    @Test("a screenshot of the page at 1000×800 is a real rendering (the PNG is kept at /tmp/metering-runrate-page.png)")
    func screenshot() throws {
        let server = try RunRateServer()
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("runrate-\(UUID().uuidString.prefix(8)).png").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let outcome = try Self.browse(
            server.baseURL + "#token=" + RunRateServer.token(), ["--screenshot=\(path)", "--window-size=1000,800", "--hide-scrollbars"])
        #expect(outcome.status == 0, "\(outcome.errors.suffix(2000))")
        let png = try #require(FileManager.default.contents(atPath: path), "no screenshot written: \(outcome.errors.suffix(2000))")
        let bytes = Array(png)
        #expect(bytes.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]))
        func bigEndian(_ offset: Int) -> Int { bytes[offset..<offset + 4].reduce(0) { $0 << 8 | Int($1) } }
        try #require(bytes.count > 24)
        #expect(bigEndian(16) == 1000 && bigEndian(20) == 800)
        // A blank 1000×800 page compresses to a few kilobytes; text, bars and tables do not.
        #expect(bytes.count > 30_000, "\(bytes.count) bytes")
        let kept = "/tmp/metering-runrate-page.png"
        try? FileManager.default.removeItem(atPath: kept)
        try? FileManager.default.copyItem(atPath: path, toPath: kept)
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

    init(_ html: String) {
        // Each opening tag with its attributes and the text that directly follows it.
        let tag = try! NSRegularExpression(pattern: #"<([a-zA-Z][a-zA-Z0-9]*)((?:\s+[a-zA-Z-.:]+(?:="[^"]*")?)*)\s*/?>([^<]*)"#)
        let attribute = try! NSRegularExpression(pattern: #"([a-zA-Z-.:]+)(?:="([^"]*)")?"#)
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

    func attribute(_ id: String, _ name: String) -> String? {
        elements.first { $0.attributes["id"] == id }?.attributes[name]
    }

    func text(_ id: String) -> String? {
        elements.first { $0.attributes["id"] == id }?.text
    }
}
