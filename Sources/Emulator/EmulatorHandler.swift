import Daemon
import Foundation
import HTTP
import Synchronization
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// The emulator's endpoints: the metering API, the token endpoints, and the control endpoints
/// for tests and demos. Runs on the connections' threads; all shared state is behind locks.
final class EmulatorHandler: HTTPHandler {
    static let apiVersion = "2018-08-31"

    let marketplace: Marketplace
    let clock: EmulatorClock
    let tokens: TokenIssuer
    let requiresAuthorization: Bool
    /// What `usageEvents` names the offer and a SaaS resource's Azure subscription.
    let offerId: String
    let azureSubscriptionId: String
    let faults = Mutex(FaultInjector())
    let counters = Mutex(Counters())

    /// What `GET /emulator/stats` reports besides the item statuses.
    struct Counters {
        var requests = 0
        var calls: [Endpoint: Int] = [:]
        var unauthorized = 0
        /// Requests answered by the HTTP layer: malformed, too large, the server full.
        var refused = 0
        var failed = 0
        var droppedBeforeProcessing = 0
        var droppedAfterRecording = 0
        var delayed = 0
        /// Calls refused whole: bad JSON, a batch size out of range, a bad api-version, no clock.
        var badRequests = 0
    }

    /// The endpoints, as counted in the stats.
    enum Endpoint: String, CaseIterable, Sendable {
        case batchUsageEvent, usageEvent, usageEvents, token, managedIdentityToken, control
    }

    init(
        marketplace: Marketplace, clock: EmulatorClock, tokens: TokenIssuer, requiresAuthorization: Bool,
        offerId: String = "metering-emulator-offer", azureSubscriptionId: String = "00000000-0000-0000-0000-000000000000"
    ) {
        self.marketplace = marketplace
        self.clock = clock
        self.tokens = tokens
        self.requiresAuthorization = requiresAuthorization
        self.offerId = offerId
        self.azureSubscriptionId = azureSubscriptionId
    }

    func handle(_ request: HTTPRequest) -> HTTPReply {
        counters.withLock { $0.requests += 1 }
        let reply = route(request)
        guard case .respond(var response) = reply else {
            Log.debug("\(request.method) \(request.path): connection dropped (injected fault)")
            return reply
        }
        // The metering API names every request; the client's ids come back for correlation.
        if let requestId = request.header("x-ms-requestid") {
            response.add("x-ms-requestid", requestId)
        } else if request.path.lowercased().hasPrefix("/api/") {
            response.add("x-ms-requestid", UUID().uuidString.lowercased())
        }
        if let correlationId = request.header("x-ms-correlationid") { response.add("x-ms-correlationid", correlationId) }
        Log.debug("\(request.method) \(request.path): \(response.status)")
        return .respond(response)
    }

    func refused(_ status: Int, reason: String) {
        counters.withLock { $0.refused += 1 }
        Log.debug("refused a request with \(status): \(reason)")
    }

    private func route(_ request: HTTPRequest) -> HTTPReply {
        let path = request.path.lowercased()
        switch path {
        case "/api/batchusageevent": return only(["POST"], request) { meteringCall(request, batch: true) }
        case "/api/usageevent": return only(["POST"], request) { meteringCall(request, batch: false) }
        case "/api/usageevents": return only(["GET"], request) { .respond(usageEvents(request)) }
        case "/metadata/identity/oauth2/token":
            return only(["GET"], request) {
                count(.managedIdentityToken)
                return .respond(tokens.issueForManagedIdentity(request))
            }
        case "/emulator/ledger", "/emulator/stats", "/emulator/clock", "/emulator/faults", "/emulator/reconciliation":
            let methods = ["/emulator/clock", "/emulator/faults", "/emulator/reconciliation"].contains(path) ? ["GET", "POST"] : ["GET"]
            return only(methods, request) {
                count(.control)
                return .respond(control(path, request))
            }
        default:
            // `/{tenant}/oauth2/token` and `/{tenant}/oauth2/v2.0/token`.
            let segments = path.split(separator: "/")
            if segments.count >= 3, segments[1] == "oauth2", segments[2...] == ["token"] || segments[2...] == ["v2.0", "token"] {
                return only(["POST"], request) {
                    count(.token)
                    return .respond(tokens.issue(request))
                }
            }
            return .respond(.error(404, code: "NotFound", message: "no endpoint \(request.path); see meter-marketplace-emulator --help"))
        }
    }

    /// Runs `body` when the request's method is one of `methods`, else answers 405.
    private func only(_ methods: [String], _ request: HTTPRequest, _ body: () -> HTTPReply) -> HTTPReply {
        guard methods.contains(request.method) else {
            var response = HTTPResponse.error(
                405, code: "MethodNotAllowed", message: "\(request.path) accepts \(methods.joined(separator: ", ")) only")
            response.add("Allow", methods.joined(separator: ", "))
            return .respond(response)
        }
        return body()
    }

    private func count(_ endpoint: Endpoint) { counters.withLock { $0.calls[endpoint, default: 0] += 1 } }

    private func badRequest(_ message: String, target: String? = nil) -> HTTPResponse {
        counters.withLock { $0.badRequests += 1 }
        return .error(400, code: "BadArgument", message: message, target: target)
    }

    /// The 401 answer for a request without a live bearer token issued here; nil when it has one
    /// or authorization is off.
    private func authorize(_ request: HTTPRequest) -> HTTPResponse? {
        guard requiresAuthorization, !tokens.accepts(authorization: request.header("authorization")) else { return nil }
        counters.withLock { $0.unauthorized += 1 }
        var response = HTTPResponse.error(
            401, code: "Unauthorized",
            message: "a bearer token from this emulator's token endpoint is required (Authorization: Bearer <token>)")
        response.add("WWW-Authenticate", "Bearer")
        return response
    }

    // MARK: The metering API

    /// `POST /api/batchUsageEvent` (`{"request":[1 to 25 items]}`) and `POST /api/usageEvent`
    /// (one item), with the injected faults.
    private func meteringCall(_ request: HTTPRequest, batch: Bool) -> HTTPReply {
        count(batch ? .batchUsageEvent : .usageEvent)
        guard request.query["api-version"] == Self.apiVersion else {
            return .respond(badRequest("api-version must be \(Self.apiVersion)", target: "api-version"))
        }
        if let refusal = authorize(request) { return .respond(refusal) }
        let (fault, delay) = faults.withLock { ($0.draw(), $0.configuration.delayMs) }
        if delay > 0 {
            counters.withLock { $0.delayed += 1 }
            usleep(UInt32(delay) * 1000)
        }
        switch fault {
        case .fail(let status):
            counters.withLock { $0.failed += 1 }
            var response = HTTPResponse.error(
                status, code: status == 429 ? "TooManyRequests" : "ServiceUnavailable", message: "an injected fault: nothing was recorded")
            if status == 429 { response.add("Retry-After", "1") }
            return .respond(response)
        case .dropBeforeProcessing:
            counters.withLock { $0.droppedBeforeProcessing += 1 }
            return .drop
        case .none, .dropAfterRecording:
            break
        }
        let body: JSONValue
        do {
            body = try JSONParser.parse(request.body)
        } catch {
            return .respond(badRequest("The request body is not valid JSON: \(error).", target: "usageEventRequest"))
        }
        let items: [JSONValue]
        if batch {
            guard let array = body["request"]?.arrayValue else {
                return .respond(badRequest(#"The body must be {"request":[usage events]}."#, target: "request"))
            }
            guard (1...25).contains(array.count) else {
                return .respond(badRequest("A batch holds 1 to 25 usage events; this one holds \(array.count).", target: "request"))
            }
            items = array
        } else {
            guard body.objectValue != nil else { return .respond(badRequest("The body must be one usage event (a JSON object).")) }
            items = [body]
        }
        let now: Timestamp
        do {
            now = try clock.now()
        } catch {
            counters.withLock { $0.badRequests += 1 }
            return .respond(.error(error.status, code: "ServiceUnavailable", message: error.message))
        }
        let results = marketplace.record(items, now: now)
        if fault == .dropAfterRecording {
            counters.withLock { $0.droppedAfterRecording += 1 }
            return .drop
        }
        if batch {
            return .respond(.json(200, ["count": .number(String(results.count)), "result": .array(results.map { .object($0.result) })]))
        }
        let result = results[0]
        switch result.status {
        case .accepted: return .respond(.json(200, .object(result.result)))
        case .duplicate: return .respond(.json(409, .object(result.result)))
        default:
            // `MarketplaceExpiredErrorResponse.json`: a single call's refusal is the error object.
            return .respond(.json(400, result.result["error"] ?? .null))
        }
    }

    /// `GET /api/usageEvents?usageStartDate=..&usageEndDate=..&offerId=&planId=&dimension=&azureSubscriptionId=&reconStatus=`:
    /// per UTC day, resource, plan and dimension, the quantity accepted (`submittedQuantity`, in
    /// `submittedCount` events), the quantity processed and the reconciliation status. The start
    /// is required; the end (its day included) defaults to the clock's day.
    private func usageEvents(_ request: HTTPRequest) -> HTTPResponse {
        count(.usageEvents)
        if let version = request.query["api-version"], version != Self.apiVersion {
            return badRequest("api-version must be \(Self.apiVersion)", target: "api-version")
        }
        if let refusal = authorize(request) { return refusal }
        let now: Timestamp
        do {
            now = try clock.now()
        } catch {
            return .error(error.status, code: "ServiceUnavailable", message: error.message)
        }
        guard let startText = request.query["usageStartDate"] else {
            return badRequest("usageStartDate is required: a date (2024-01-31) or an ISO 8601 UTC time", target: "usageStartDate")
        }
        guard let start = UsageEventSummary.day(startText) else {
            return badRequest("usageStartDate must be a date (2024-01-31) or an ISO 8601 UTC time", target: "usageStartDate")
        }
        var end = UsageEventSummary.dayStart(now).adding(microseconds: Timestamp.microsecondsPerDay)
        if let text = request.query["usageEndDate"] {
            guard let day = UsageEventSummary.day(text) else {
                return badRequest("usageEndDate must be a date (2024-01-31) or an ISO 8601 UTC time", target: "usageEndDate")
            }
            end = day.adding(microseconds: Timestamp.microsecondsPerDay)
        }
        if let status = request.query["reconStatus"], !UsageEventSummary.statuses.contains(status) {
            return badRequest("reconStatus must be one of \(UsageEventSummary.statuses.joined(separator: ", "))", target: "reconStatus")
        }
        let query = request.query
        let rows = marketplace.usageEvents(from: start, to: end, now: now).filter { row in
            (query["offerId"].map { $0 == offerId } ?? true) && (query["planId"].map { $0 == row.planId } ?? true)
                && (query["dimension"].map { $0 == row.dimension } ?? true)
                && (query["azureSubscriptionId"].map {
                    $0.lowercased() == row.azureSubscriptionId(default: azureSubscriptionId).lowercased()
                }
                    ?? true)
                && (query["reconStatus"].map { $0 == row.reconStatus } ?? true)
        }
        return .json(200, .array(rows.map { $0.json(offerId: offerId, azureSubscriptionId: azureSubscriptionId) }))
    }

    // MARK: Control

    private func control(_ path: String, _ request: HTTPRequest) -> HTTPResponse {
        switch (path, request.method) {
        case ("/emulator/ledger", _):
            return .json(200, .array(marketplace.entries().map(\.json)))
        case ("/emulator/stats", _):
            return .json(200, stats())
        case ("/emulator/clock", "GET"):
            do {
                return .json(200, ["time": .string(try clock.now().iso8601), "mode": .string(clock.mode.rawValue)])
            } catch {
                return .error(error.status, code: "ServiceUnavailable", message: error.message)
            }
        case ("/emulator/clock", _):
            guard let body = try? JSONParser.parse(request.body), let text = body["time"]?.stringValue,
                let time = Timestamp(iso8601: text)
            else {
                return .error(400, code: "BadArgument", message: #"the body must be {"time":"2024-01-31T10:00:00Z"}"#)
            }
            do {
                let now = try clock.set(to: time)
                Log.info("clock set to \(now.iso8601)")
                return .json(200, ["time": .string(now.iso8601), "mode": .string(clock.mode.rawValue)])
            } catch {
                return .error(error.status, code: "Conflict", message: error.message)
            }
        case ("/emulator/reconciliation", "GET"):
            return .json(200, .array(marketplace.adjustments().map(\.json)))
        case ("/emulator/reconciliation", _):
            do throws(HTTPError) {
                guard let body = try? JSONParser.parse(request.body) else {
                    throw HTTPError(
                        400,
                        #"the body must be a JSON object such as {"resourceId":"sub-1","dimension":"emails","usageDate":"2024-03-01","submittedQuantity":5}"#
                    )
                }
                let adjustment = try UsageEventSummary.Adjustment(json: body)
                marketplace.plant(adjustment)
                Log.info("planted a usageEvents difference: \(JSONWriter.string(adjustment.json))")
                return .json(200, adjustment.json)
            } catch {
                return .error(error.status, code: "BadArgument", message: error.message)
            }
        case ("/emulator/faults", "GET"):
            return .json(200, faults.withLock { $0.configuration.json })
        default:
            let configuration: FaultInjector.Configuration
            do throws(HTTPError) {
                guard let body = try? JSONParser.parse(request.body) else {
                    throw HTTPError(400, "the body must be a JSON object such as {\"failRate\":0.3,\"status\":503,\"seed\":42}")
                }
                configuration = try FaultInjector.Configuration(json: body)
            } catch {
                return .error(error.status, code: "BadArgument", message: error.message)
            }
            faults.withLock { $0 = FaultInjector(configuration: configuration) }
            Log.info("faults set: \(JSONWriter.string(configuration.json))")
            return .json(200, configuration.json)
        }
    }

    private func stats() -> JSONValue {
        let counters = counters.withLock { $0 }
        let (statuses, accepted) = marketplace.counts()
        let configuration = faults.withLock { $0.configuration }
        let time: JSONValue = (try? clock.now()).map { .string($0.iso8601) } ?? .null
        return [
            "time": time, "clock": .string(clock.mode.rawValue), "requests": .number(String(counters.requests)),
            "calls": .object(JSONObject(Endpoint.allCases.map { .init($0.rawValue, .number(String(counters.calls[$0] ?? 0))) })),
            "statuses": .object(JSONObject(UsageStatus.allCases.map { .init($0.rawValue, .number(String(statuses[$0] ?? 0))) })),
            "accepted": .number(String(accepted)), "unauthorized": .number(String(counters.unauthorized)),
            "badRequests": .number(String(counters.badRequests)), "refusedRequests": .number(String(counters.refused)),
            "faults": [
                "failed": .number(String(counters.failed)), "droppedBeforeProcessing": .number(String(counters.droppedBeforeProcessing)),
                "droppedAfterRecording": .number(String(counters.droppedAfterRecording)), "delayed": .number(String(counters.delayed)),
                "configuration": configuration.json,
            ],
        ]
    }
}
