public import AdapterKit
public import Crypto
import Daemon
import Foundation
public import HTTP
public import Wire

/// What the usage API reads, answered by `meter-query` from its read models. `names` is a
/// credential's scope: nil for every subscription, else only what names one of them (by key,
/// `resourceId` or `resourceUri`).
public protocol AdapterBackend: Sendable {
    /// Closed-hour usage records from id `start`: `records`, `nextId`, `firstId`, `total`.
    func usage(from start: Int, size: Int, names: Set<String>?) throws(AdapterProblem) -> JSONObject
    /// Subscriptions by key after `after`: `subscriptions`, `total`, `next`.
    func subscriptions(after: String?, max: Int, names: Set<String>?) throws(AdapterProblem) -> JSONObject
    /// The plans of the subscriptions held: `plans`.
    func plans(names: Set<String>?) throws(AdapterProblem) -> JSONObject
    /// Marketplace outcomes from `cursor` on: `records`, `cursor`.
    func submissions(cursor: String?, size: Int, status: String?, names: Set<String>?) throws(AdapterProblem) -> JSONObject
    /// One subscription's recorded events in a time range: `records`, `next`.
    func events(_ name: ResourceName, from: Timestamp?, to: Timestamp?, after: Int?, max: Int) throws(AdapterProblem) -> JSONObject
}

/// A refusal of the usage API: a stable `code` (the wire protocol's, plus `expired`), a message,
/// and details an adapter can act on (for `expired`, the first id still readable).
public struct AdapterProblem: Error, Sendable, CustomStringConvertible {
    public var code: String
    public var message: String
    public var details: [JSONObject.Member]

    public init(_ code: String, _ message: String, details: [JSONObject.Member] = []) {
        self.code = code
        self.message = message
        self.details = details
    }

    /// The socket protocol's error as a refusal.
    public init(_ error: WireError) { self.init(error.code.rawValue, error.message) }

    /// An asked usage id has aged out (HTTP 410).
    public static let expiredCode = "expired"

    public var description: String { "\(code): \(message)" }

    /// The HTTP status of the code.
    var status: Int {
        switch code {
        case "bad_request": return 400
        case "unauthorized": return 401
        case "forbidden": return 403
        case "not_found": return 404
        case Self.expiredCode: return 410
        case "unavailable": return 503
        default: return 500
        }
    }
}

/// The usage API for billing adapters (docs/BILLING-ADAPTERS.md), served by `meter-query` on
/// `METERING_QUERY_ADAPTER_HTTP`: `GET /v1/usage`, `/v1/subscriptions`, `/v1/plans`,
/// `/v1/submissions`, `/v1/events`, each with `Authorization: Bearer <adapter key>`, and
/// `/v1/health` without. Read-only; JSON, or CSV for usage on request. Refusals are logged with
/// the credential's id, never its key.
public struct AdapterHTTPHandler: HTTPHandler {
    let credentials: AdapterCredentialDirectory
    let backend: any AdapterBackend
    /// Now, for credential expiry: the wall clock (people's time, not the log's).
    let now: @Sendable () -> Timestamp

    public init(
        credentials: AdapterCredentialDirectory, backend: any AdapterBackend,
        now: @escaping @Sendable () -> Timestamp = { Timestamp(seconds: AccessToken.wallClock()) }
    ) {
        self.credentials = credentials
        self.backend = backend
        self.now = now
    }

    static let maximumBatch = 10_000

    public func handle(_ request: HTTPRequest) -> HTTPReply {
        var response: HTTPResponse
        do throws(AdapterProblem) {
            response = try route(request)
        } catch {
            response = refuse(request, error)
        }
        response.headers += [("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff")]
        return .respond(response)
    }

    public func refused(_ status: Int, reason: String) {
        Log.notice("usage API: refused with \(status): \(reason)")
    }

    private func route(_ request: HTTPRequest) throws(AdapterProblem) -> HTTPResponse {
        let routes = ["/v1/usage", "/v1/subscriptions", "/v1/plans", "/v1/submissions", "/v1/events", "/v1/health"]
        guard routes.contains(request.path) else {
            throw AdapterProblem("not_found", "no endpoint \(request.path); the usage API serves \(routes.joined(separator: ", "))")
        }
        guard request.method == "GET" || request.method == "HEAD" else {
            throw AdapterProblem("method_not_allowed", "\(request.path) is read-only: use GET")
        }
        if request.path == "/v1/health" { return .json(200, ["ok": true]) }
        let credential = try authenticate(request)
        let names = credential.subscriptions.map(Set.init)
        let query = request.query
        let answer: JSONObject
        switch request.path {
        case "/v1/usage":
            let start = try Self.whole(query, "startId", default: 0, range: 0...Int.max)
            let size = try Self.whole(query, "batchSize", default: 100, range: 1...Self.maximumBatch)
            let csv = try Self.wantsCSV(request)
            answer = try backend.usage(from: start, size: size, names: names)
            var response = csv ? Self.csv(answer) : HTTPResponse.json(200, .object(answer))
            for (header, key) in [("X-Next-Id", "nextId"), ("X-First-Id", "firstId"), ("X-Total", "total")] {
                if let value = answer[key]?.intValue { response.add(header, String(value)) }
            }
            return response
        case "/v1/subscriptions":
            let max = try Self.whole(query, "max", default: 100, range: 1...Self.maximumBatch)
            answer = try backend.subscriptions(after: try Self.text(query, "after"), max: max, names: names)
        case "/v1/plans":
            answer = try backend.plans(names: names)
        case "/v1/submissions":
            let size = try Self.whole(query, "batchSize", default: 100, range: 1...Self.maximumBatch)
            answer = try backend.submissions(
                cursor: try Self.text(query, "cursor"), size: size, status: try Self.text(query, "status"), names: names)
        default:
            let name = try Self.subscription(query)
            if let names, ![name.resourceId, name.resourceUri].contains(where: { $0.map(names.contains) ?? false }) {
                throw AdapterProblem("forbidden", "adapter credential \(credential.id) may not read \(name)")
            }
            let max = try Self.whole(query, "max", default: 100, range: 1...1000)
            let after = query["after"] == nil ? nil : try Self.whole(query, "after", default: 0, range: 0...(Int.max - 1))
            answer = try backend.events(name, from: try Self.time(query, "from"), to: try Self.time(query, "to"), after: after, max: max)
        }
        Log.debug("usage API: \(request.path) for \(credential.id)")
        return .json(200, .object(answer))
    }

    private func authenticate(_ request: HTTPRequest) throws(AdapterProblem) -> AdapterCredential {
        guard let header = request.header("authorization") else {
            throw AdapterProblem(
                "unauthorized", "no Authorization header; send Authorization: Bearer <adapter key> (meterctl adapters create)")
        }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else {
            throw AdapterProblem("unauthorized", "the Authorization header is not \"Bearer <adapter key>\"")
        }
        do {
            return try credentials.authenticate(String(parts[1].drop { $0 == " " }), now: now())
        } catch {
            if error.reason == .unavailable { throw AdapterProblem("unavailable", error.message) }
            throw AdapterProblem("unauthorized", error.message, details: [.init("reason", .string(error.reason.rawValue))])
        }
    }

    // MARK: Parameters

    static func whole(_ query: [String: String], _ name: String, default value: Int, range: ClosedRange<Int>) throws(AdapterProblem)
        -> Int
    {
        guard let text = query[name] else { return value }
        guard let number = Int(text), range.contains(number) else {
            let upper = range.upperBound == Int.max ? "" : " to \(range.upperBound)"
            throw AdapterProblem("bad_request", "\(name) must be a whole number from \(range.lowerBound)\(upper), not \"\(text)\"")
        }
        return number
    }

    static func text(_ query: [String: String], _ name: String) throws(AdapterProblem) -> String? {
        guard let text = query[name] else { return nil }
        guard !text.isEmpty, text.utf8.count <= 1024 else { throw AdapterProblem("bad_request", "\(name) must be 1 to 1024 characters") }
        return text
    }

    static func time(_ query: [String: String], _ name: String) throws(AdapterProblem) -> Timestamp? {
        guard let text = query[name] else { return nil }
        guard let time = Timestamp(iso8601: text) else {
            throw AdapterProblem("bad_request", "\(name) must be an ISO 8601 UTC time such as 2024-03-01T00:00:00Z")
        }
        return time
    }

    static func subscription(_ query: [String: String]) throws(AdapterProblem) -> ResourceName {
        let name = ResourceName(resourceId: try text(query, "resourceId"), resourceUri: try text(query, "resourceUri"))
        guard name.resourceId != nil || name.resourceUri != nil else {
            throw AdapterProblem("bad_request", "/v1/events needs resourceId or resourceUri")
        }
        return name
    }

    /// `format=csv`, or an `Accept` header asking for `text/csv` (and not JSON first).
    static func wantsCSV(_ request: HTTPRequest) throws(AdapterProblem) -> Bool {
        switch request.query["format"] {
        case "csv"?: return true
        case "json"?: return false
        case let other?: throw AdapterProblem("bad_request", "format must be json or csv, not \"\(other)\"")
        case nil:
            let accept = (request.header("accept") ?? "").lowercased()
            guard let csv = accept.range(of: "text/csv") else { return false }
            return accept.range(of: "application/json").map { $0.lowerBound > csv.lowerBound } ?? true
        }
    }

    // MARK: Answers

    /// The columns of a usage page in CSV, in order.
    static let csvColumns = [
        "id", "partition", "subscription", "resourceId", "resourceUri", "planId", "meterName", "dimension", "hour", "quantity", "billed",
        "status",
    ]

    /// A usage page as RFC 4180 CSV: a header line, then one line per record; the paging figures
    /// are in the `X-Next-Id`, `X-First-Id` and `X-Total` headers.
    static func csv(_ answer: JSONObject) -> HTTPResponse {
        var text = csvColumns.joined(separator: ",") + "\r\n"
        for record in answer["records"]?.arrayValue ?? [] {
            text += csvColumns.map { column -> String in
                switch record[column] {
                case .string(let value)?: return field(value)
                case .number(let value)?: return value
                default: return ""
                }
            }.joined(separator: ",")
            text += "\r\n"
        }
        return HTTPResponse(status: 200, headers: [("Content-Type", "text/csv; charset=utf-8; header=present")], body: Array(text.utf8))
    }

    /// A CSV field: quoted when it holds a comma, a quote or a line break; a leading `=`, `+`,
    /// `-` or `@` is quoted too and prefixed with `'`, so a spreadsheet never runs it as a formula.
    static func field(_ value: String) -> String {
        var text = value
        if let first = text.first, "=+-@".contains(first) { text = "'" + text }
        guard text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) || text != value else { return text }
        return "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    private func refuse(_ request: HTTPRequest, _ problem: AdapterProblem) -> HTTPResponse {
        let status = problem.code == "method_not_allowed" ? 405 : problem.status
        let line = "usage API: \(request.method) \(request.path): \(status) \(problem.code): \(problem.message)"
        if status >= 500 { Log.warning(line) } else { Log.notice(line) }
        var error = JSONObject(["code": .string(problem.code), "message": .string(problem.message)])
        error.members += problem.details
        var response = HTTPResponse.json(status, ["error": .object(error)])
        switch status {
        case 401: response.add("WWW-Authenticate", "Bearer realm=\"metering-usage\"")
        case 405: response.add("Allow", "GET, HEAD")
        case 503: response.add("Retry-After", "5")
        default: break
        }
        return response
    }
}
