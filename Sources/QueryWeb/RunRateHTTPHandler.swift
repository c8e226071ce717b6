public import Crypto
import Daemon
public import HTTP
public import Wire

/// The customer-facing, read-only HTTP side of `meter-query` (DESIGN.md §3.4): the run-rate
/// page, its script and style, `GET /api/runrate` for the subscription an access token names,
/// `GET /healthz`, and an empty `/favicon.ico`.
///
/// Every answer carries `Cache-Control: no-store` (run-rate data is per customer and live) and a
/// `default-src 'self'` content security policy, which is why the page has no inline script or
/// style. Refusals are logged with their reason, never with the token.
public struct RunRateHTTPHandler: HTTPHandler {
    /// The run-rate object of one subscription (§3.4's shape, `"ok":true` included), or an
    /// error: `not_found` for an unknown subscription, `unavailable` while the read model is
    /// not ready.
    public typealias RunRate = @Sendable (ResourceName) -> Result<JSONObject, WireError>

    let verifier: AccessTokenVerifier
    let runrate: RunRate

    /// A handler checking tokens with `verifier` and answering from `runrate`.
    public init(verifier: AccessTokenVerifier, runrate: @escaping RunRate) {
        self.verifier = verifier
        self.runrate = runrate
    }

    static let securityHeaders: [(name: String, value: String)] = [
        ("Cache-Control", "no-store"),
        ("Content-Security-Policy", "default-src 'self'"),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
    ]

    private enum Route: String {
        case page = "/"
        case script = "/app.js"
        case style = "/app.css"
        case runrate = "/api/runrate"
        case health = "/healthz"
        /// Browsers ask for it by themselves with every page load: answered empty, not logged.
        case favicon = "/favicon.ico"
    }

    /// Answers `request`; the HTTP layer drops the body of a `HEAD` answer.
    public func handle(_ request: HTTPRequest) -> HTTPReply {
        var response = route(request)
        response.headers += Self.securityHeaders
        return .respond(response)
    }

    /// Logs what the HTTP layer refused by itself (malformed, too large, too many connections).
    public func refused(_ status: Int, reason: String) {
        Log.notice("http: refused with \(status): \(reason)")
    }

    private func route(_ request: HTTPRequest) -> HTTPResponse {
        guard let route = Route(rawValue: request.path) else {
            return refuse(request, 404, "not_found", "no such page; the run-rate page is at /")
        }
        guard request.method == "GET" || request.method == "HEAD" else {
            var response = refuse(request, 405, "method_not_allowed", "\(request.path) is read-only: use GET or HEAD")
            response.add("Allow", "GET, HEAD")
            return response
        }
        switch route {
        case .page: return Self.asset(RunRatePage.html, "text/html; charset=utf-8")
        case .script: return Self.asset(RunRatePage.script, "text/javascript; charset=utf-8")
        case .style: return Self.asset(RunRatePage.style, "text/css; charset=utf-8")
        case .health: return .json(200, ["ok": true])
        case .favicon: return HTTPResponse(status: 204, headers: [], body: [])
        case .runrate: return answerRunRate(request)
        }
    }

    private static func asset(_ bytes: [UInt8], _ type: String) -> HTTPResponse {
        HTTPResponse(status: 200, headers: [("Content-Type", type)], body: bytes)
    }

    private func answerRunRate(_ request: HTTPRequest) -> HTTPResponse {
        let token: AccessToken
        do {
            guard let text = try Self.bearerToken(request) else {
                // RFC 6750 §3.1: no error code when no credentials were sent at all.
                var response = refuse(
                    request, 401, "unauthorized", "no Authorization header; send Authorization: Bearer <token>", reason: "missing")
                response.add("WWW-Authenticate", "Bearer realm=\"runrate\"")
                return response
            }
            token = try verifier.verify(text)
        } catch {
            return refuse(request, error)
        }
        // The subscription comes from the token; naming another one is refused, not ignored,
        // so a page or script that asks for the wrong subscription learns it.
        for kind in ["resourceId", "resourceUri"] {
            if let asked = request.query[kind], kind != token.subject.kind || asked != token.subject.name {
                return refuse(
                    request, 403, "forbidden", "this token gives access to \(token.subject) only, not \(kind) \(asked)",
                    subject: token.subject)
            }
        }
        switch runrate(token.subject.resourceName) {
        case .success(let object):
            return .json(200, .object(object))
        case .failure(let error):
            let status: Int
            switch error.code {
            case .notFound: status = 404
            case .unavailable: status = 503
            default: status = 500
            }
            var response = refuse(request, status, error.code.rawValue, error.message, subject: token.subject)
            if status == 503 { response.add("Retry-After", "5") }
            return response
        }
    }

    /// The token of `Authorization: Bearer <token>` (RFC 6750 §2.1; the scheme is
    /// case-insensitive), or nil when there is no such header.
    private static func bearerToken(_ request: HTTPRequest) throws(AccessTokenError) -> String? {
        guard let value = request.header("authorization") else { return nil }
        let parts = value.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else {
            throw AccessTokenError(.malformed, "the Authorization header is not \"Bearer <token>\"")
        }
        return String(parts[1].drop { $0 == " " })
    }

    /// 401 for a token that proves nothing (RFC 6750 §3: with `WWW-Authenticate`), 403 for a
    /// valid token that does not reach this.
    private func refuse(_ request: HTTPRequest, _ error: AccessTokenError) -> HTTPResponse {
        guard error.reason != .wrongScope else {
            var response = refuse(request, 403, "forbidden", error.message, reason: error.reason.rawValue, subject: error.subject)
            response.add(
                "WWW-Authenticate", "Bearer realm=\"runrate\", error=\"insufficient_scope\", scope=\"\(AccessToken.runRateScope)\"")
            return response
        }
        var response = refuse(request, 401, "unauthorized", error.message, reason: error.reason.rawValue, subject: error.subject)
        response.add("WWW-Authenticate", "Bearer realm=\"runrate\", error=\"invalid_token\"")
        return response
    }

    /// A JSON error answer, `{"ok":false,"error":{"code","message","reason"?}}`, logged.
    private func refuse(
        _ request: HTTPRequest, _ status: Int, _ code: String, _ message: String, reason: String? = nil,
        subject: AccessToken.Subject? = nil
    ) -> HTTPResponse {
        let detail = [reason, subject.map { "token for \($0)" }].compactMap { $0 }.joined(separator: ", ")
        let line = "\(request.method) \(request.path): \(status) \(code)\(detail.isEmpty ? "" : " (\(detail))"): \(message)"
        if status >= 500 { Log.warning(line) } else { Log.notice(line) }
        var error = JSONObject(["code": .string(code), "message": .string(message)])
        if let reason { error["reason"] = .string(reason) }
        return .json(status, ["ok": false, "error": .object(error)])
    }
}
