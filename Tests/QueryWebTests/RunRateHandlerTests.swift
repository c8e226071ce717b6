import Crypto
import Foundation
import HTTP
import StackTestSupport
import Testing
import Wire

/// The run-rate endpoints over real HTTP: who may read what, the status codes, the headers.
@Suite("The run-rate HTTP endpoints")
struct RunRateHandlerTests {
    static let securityHeaders = [
        "cache-control": "no-store",
        "content-security-policy": "default-src 'self'",
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
    ]

    static func expectSecurityHeaders(_ response: TestHTTPClient.Response, sourceLocation: SourceLocation = #_sourceLocation) {
        for (name, value) in securityHeaders {
            #expect(response.headers[name] == value, "\(name) on \(response.status)", sourceLocation: sourceLocation)
        }
    }

    /// The `error` member of a refusal, after checking the refusal's shape.
    static func error(_ response: TestHTTPClient.Response, sourceLocation: SourceLocation = #_sourceLocation) -> JSONValue? {
        #expect(response.headers["content-type"] == "application/json; charset=utf-8", sourceLocation: sourceLocation)
        #expect(response.json?["ok"] == .bool(false), sourceLocation: sourceLocation)
        return response.json?["error"]
    }

    @Test("a valid token reads its own subscription's run-rate, exactly as the read model gave it")
    func ownSubscription() throws {
        let server = try RunRateServer()
        let response = try server.request("/api/runrate", token: RunRateServer.token())
        #expect(response.status == 200)
        Self.expectSecurityHeaders(response)
        #expect(response.headers["content-type"] == "application/json; charset=utf-8")
        let body = try #require(response.json)
        #expect(body["ok"] == .bool(true))
        #expect(body["resourceId"] == "sub-a")
        #expect(body["meters"]?.arrayValue?.first?["consumed"] == .number("1250"))
        #expect(server.askedNames == [ResourceName(resourceId: "sub-a")])

        let uri = try server.request("/api/runrate", token: RunRateServer.token(RunRateServer.subscriptionB))
        #expect(uri.status == 200)
        #expect(uri.json?["resourceUri"] == .string(RunRateServer.subscriptionB.name))
        #expect(uri.json?["resourceId"] == nil)
    }

    @Test("a token for A never reads B: naming B (or A by the other kind) in the query answers 403 and asks nothing")
    func otherSubscription() throws {
        let server = try RunRateServer()
        let tokenA = RunRateServer.token()
        let uriB = RunRateServer.subscriptionB.name.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
        for target in ["/api/runrate?resourceUri=\(uriB)", "/api/runrate?resourceId=sub-b", "/api/runrate?resourceUri=sub-a"] {
            let response = try server.request(target, token: tokenA)
            #expect(response.status == 403, "\(target)")
            #expect(Self.error(response)?["code"] == "forbidden")
            Self.expectSecurityHeaders(response)
        }
        #expect(server.askedNames.isEmpty)
        let same = try server.request("/api/runrate?resourceId=sub-a", token: tokenA)
        #expect(same.status == 200)
        #expect(same.json?["resourceId"] == "sub-a")
    }

    @Test("no token, a malformed one, a forged one and an expired one answer 401 with WWW-Authenticate: Bearer")
    func unauthorized() throws {
        let server = try RunRateServer()
        let forged = RunRateServer.token(secret: try AccessTokenSecret(bytes: Array(repeating: 7, count: 32)))
        let cases: [(String, [String: String], String)] = [
            ("missing", [:], "missing"),
            ("not bearer", ["Authorization": "Basic dXNlcjpwYXNz"], "malformed"),
            ("malformed", ["Authorization": "Bearer v1.garbage"], "malformed"),
            ("empty", ["Authorization": "Bearer "], "malformed"),
            ("forged", ["Authorization": "Bearer \(forged)"], "bad_signature"),
            ("expired", ["Authorization": "Bearer \(RunRateServer.token(expiresIn: 0))"], "expired"),
        ]
        for (name, headers, reason) in cases {
            let response = try server.request("/api/runrate", headers: headers)
            #expect(response.status == 401, "\(name)")
            #expect(response.headers["www-authenticate"]?.hasPrefix("Bearer") == true, "\(name)")
            let error = Self.error(response)
            #expect(error?["code"] == "unauthorized", "\(name)")
            #expect(error?["reason"] == .string(reason), "\(name)")
            Self.expectSecurityHeaders(response)
        }
        let missing = try server.request("/api/runrate")
        #expect(missing.headers["www-authenticate"] == "Bearer realm=\"runrate\"")
        let expired = try server.request("/api/runrate", token: RunRateServer.token(expiresIn: 0))
        #expect(expired.headers["www-authenticate"] == "Bearer realm=\"runrate\", error=\"invalid_token\"")
        #expect(server.askedNames.isEmpty)
    }

    @Test("a valid token of another scope answers 403 insufficient_scope")
    func wrongScope() throws {
        let server = try RunRateServer()
        let response = try server.request("/api/runrate", token: RunRateServer.token(scope: "admin"))
        #expect(response.status == 403)
        #expect(Self.error(response)?["reason"] == "wrong_scope")
        #expect(response.headers["www-authenticate"]?.contains("error=\"insufficient_scope\"") == true)
        #expect(server.askedNames.isEmpty)
    }

    @Test("an unknown subscription answers 404 and a read model still catching up 503 with Retry-After")
    func readModelErrors() throws {
        let server = try RunRateServer()
        let unknown = try server.request("/api/runrate", token: RunRateServer.token(RunRateServer.unknown))
        #expect(unknown.status == 404)
        #expect(Self.error(unknown)?["code"] == "not_found")
        let warming = try server.request("/api/runrate", token: RunRateServer.token(RunRateServer.warmingUp))
        #expect(warming.status == 503)
        #expect(warming.headers["retry-after"] == "5")
        #expect(Self.error(warming)?["code"] == "unavailable")
    }

    @Test("other methods answer 405 with Allow, unknown paths 404, and HEAD answers like GET without a body")
    func methodsAndPaths() throws {
        let server = try RunRateServer()
        for method in ["POST", "PUT", "DELETE", "OPTIONS"] {
            let response = try server.request("/api/runrate", method: method, token: RunRateServer.token())
            #expect(response.status == 405, "\(method)")
            #expect(response.headers["allow"] == "GET, HEAD")
            Self.expectSecurityHeaders(response)
        }
        #expect(try server.request("/", method: "POST").status == 405)
        let missing = try server.request("/admin")
        #expect(missing.status == 404)
        Self.expectSecurityHeaders(missing)

        let get = try server.request("/api/runrate", token: RunRateServer.token())
        let head = try server.request("/api/runrate", method: "HEAD", token: RunRateServer.token())
        #expect(head.status == 200)
        #expect(head.body.isEmpty)
        #expect(head.headers["content-length"] == String(get.body.count))
        Self.expectSecurityHeaders(head)
        #expect(try server.request("/", method: "HEAD").status == 200)
    }

    @Test("the page, its script and style are served with their types, and the page has no inline script or style")
    func staticFiles() throws {
        let server = try RunRateServer()
        let page = try server.request("/")
        #expect(page.status == 200)
        #expect(page.headers["content-type"] == "text/html; charset=utf-8")
        Self.expectSecurityHeaders(page)
        #expect(page.text.contains(#"<script src="app.js" defer></script>"#))
        #expect(page.text.contains(#"<link rel="stylesheet" href="app.css">"#))
        #expect(page.text.components(separatedBy: "<script").count == 2)
        #expect(!page.text.contains("<style") && !page.text.contains("style=") && !page.text.contains("onload"))
        #expect(!page.text.contains("http://") && !page.text.contains("https://"))

        let script = try server.request("/app.js")
        #expect(script.status == 200)
        #expect(script.headers["content-type"] == "text/javascript; charset=utf-8")
        #expect(script.text.contains("location.hash"))
        #expect(script.text.contains("\"Authorization\": \"Bearer \" + token"))
        #expect(!script.text.contains("innerHTML"))
        let style = try server.request("/app.css")
        #expect(style.status == 200)
        #expect(style.headers["content-type"] == "text/css; charset=utf-8")
        Self.expectSecurityHeaders(style)
        // The page needs no token: only the API does.
        #expect(server.askedNames.isEmpty)
    }

    @Test("/healthz answers 200 without a token")
    func health() throws {
        let server = try RunRateServer()
        let response = try server.request("/healthz")
        #expect(response.status == 200)
        #expect(response.json?["ok"] == .bool(true))
        Self.expectSecurityHeaders(response)
    }

    @Test("/favicon.ico answers 204 with no body and no token, so browsers stop asking")
    func favicon() throws {
        let server = try RunRateServer()
        let response = try server.request("/favicon.ico")
        #expect(response.status == 204)
        #expect(response.body.isEmpty)
        #expect(server.askedNames.isEmpty)
    }

    @Test("several requests on one kept-alive connection are each checked on their own")
    func keepAlive() throws {
        let server = try RunRateServer()
        let client = try TestHTTPClient(port: server.port)
        #expect(try client.request("GET", "/api/runrate", headers: ["Authorization": "Bearer \(RunRateServer.token())"]).status == 200)
        #expect(try client.request("GET", "/api/runrate").status == 401)
        #expect(try client.request("GET", "/api/runrate", headers: ["Authorization": "bearer \(RunRateServer.token())"]).status == 200)
    }
}
