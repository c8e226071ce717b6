import Daemon
import Foundation
import FrontDoorKit
import HTTP
import Metrics
import Transport
import Wire

/// Serves the front door's endpoints: authenticates each request, checks each message against
/// the credential, and appends what passes on ingest's client socket.
final class FrontDoorHandler: HTTPHandler {
    let configuration: FrontDoorConfiguration
    let credentials: CredentialDirectory
    let nonces: NonceCache
    let limiter: RateLimiter

    /// The path messages are posted to; it is part of the signed text.
    static let messagesPath = "/v1/messages"

    init(configuration: FrontDoorConfiguration, credentials: CredentialDirectory) {
        self.configuration = configuration
        self.credentials = credentials
        self.nonces = NonceCache(capacity: configuration.nonceCapacity, retention: Int64(2 * configuration.maximumSkewSeconds))
        self.limiter = RateLimiter(rate: configuration.rate, burst: configuration.burst)
    }

    /// A request refused as a whole: the answer, and what the log says about it.
    struct Refusal: Error {
        var status: Int
        var code: String
        var message: String
        var retryAfter: Int?
        var credential: String?

        init(_ status: Int, _ code: String, _ message: String, retryAfter: Int? = nil, credential: String? = nil) {
            self.status = status
            self.code = code
            self.message = message
            self.retryAfter = retryAfter
            self.credential = credential
        }

        var response: HTTPResponse {
            var response = FrontDoorHandler.error(status, code: code, message: message)
            if let retryAfter { response.add("Retry-After", String(retryAfter)) }
            return response
        }
    }

    func handle(_ request: HTTPRequest) -> HTTPReply {
        switch request.path {
        case Self.messagesPath:
            guard request.method == "POST" else {
                return refuse(Refusal(405, "method_not_allowed", "\(Self.messagesPath) takes POST"), request, allow: "POST")
            }
            do {
                return .respond(try submit(request))
            } catch {
                return refuse(error, request)
            }
        case "/v1/health":
            guard request.method == "GET" || request.method == "HEAD" else {
                return refuse(Refusal(405, "method_not_allowed", "/v1/health takes GET"), request, allow: "GET, HEAD")
            }
            return .respond(.json(200, ["status": "ok"]))
        default:
            return refuse(Refusal(404, "not_found", "no such endpoint; messages are posted to \(Self.messagesPath)"), request)
        }
    }

    func refused(_ status: Int, reason: String) {
        frontDoorMetrics.refusedRequests.labels("http_\(status)").add()
        Log.notice("refused \(status) before reading a request: \(reason)")
    }

    /// Authenticates, checks and forwards one batch.
    private func submit(_ request: HTTPRequest) throws(Refusal) -> HTTPResponse {
        let credential = try authenticate(request)
        let messages: [JSONValue]
        switch Submission.messages(request.body, maximumEvents: configuration.maximumEvents) {
        case .success(let parsed): messages = parsed
        case .failure(let refusal):
            throw Refusal(refusal.code == "too_many_events" ? 413 : 400, refusal.code, refusal.message, credential: credential.id)
        }
        var prepared: [Result<JSONValue, WireError>] = []
        var refusedCount = 0
        for message in messages {
            let outcome = Submission.prepare(message, for: credential)
            if case .failure(let error) = outcome {
                refusedCount += 1
                frontDoorMetrics.refusedEvents.labels(error.code.rawValue).add()
                Log.notice(
                    "refused event: \(error.code): \(error.message) credential=\(credential.id) client=\(client(of: request))"
                )
            }
            prepared.append(outcome)
        }
        let forwarded = prepared.compactMap { try? $0.get() }
        var ingestResults: [JSONValue] = []
        if !forwarded.isEmpty { ingestResults = try append(forwarded, credential: credential.id) }
        var results: [JSONValue] = []
        var counts = ["accepted": 0, "duplicate": 0, "rejected": 0]
        var next = 0
        for (index, outcome) in prepared.enumerated() {
            var result: JSONObject
            switch outcome {
            case .success:
                result = ingestResults[next].objectValue ?? JSONObject()
                next += 1
            case .failure(let error):
                result = JSONObject([.init("status", "rejected"), .init("error", error.json)])
            }
            if let id = messages[index]["id"], id != .null { result.members.insert(.init("id", id), at: 0) }
            let status = result["status"]?.stringValue ?? "rejected"
            counts[status, default: 0] += 1
            results.append(.object(result))
        }
        Log.debug(
            "credential \(credential.id): \(messages.count) messages, \(counts["accepted"]!) accepted, \(counts["duplicate"]!) duplicate, \(counts["rejected"]!) rejected (\(refusedCount) by the front door)"
        )
        return .json(
            200,
            .object(
                JSONObject([
                    .init("accepted", .number(String(counts["accepted"]!))), .init("duplicate", .number(String(counts["duplicate"]!))),
                    .init("rejected", .number(String(counts["rejected"]!))), .init("results", .array(results)),
                ])))
    }

    /// The request's credential, once its headers, signature, nonce and rate all pass.
    private func authenticate(_ request: HTTPRequest) throws(Refusal) -> Credential {
        guard let id = request.header(RequestSignature.credentialHeader) else {
            throw Refusal(
                401, "unauthenticated", "missing \(RequestSignature.credentialHeader): every request is signed (docs/FRONTDOOR.md)")
        }
        guard Credential.isWellFormedId(id) else {
            throw Refusal(401, "unauthenticated", "\(RequestSignature.credentialHeader) is not a credential id (fdc_ and 16 hex digits)")
        }
        guard let timestampText = request.header(RequestSignature.timestampHeader), let timestamp = RequestSignature.seconds(timestampText)
        else {
            throw Refusal(
                401, "unauthenticated", "missing or malformed \(RequestSignature.timestampHeader): whole seconds since 1970 (UTC)",
                credential: id)
        }
        guard let nonce = request.header(RequestSignature.nonceHeader), RequestSignature.isWellFormedNonce(nonce) else {
            throw Refusal(
                401, "unauthenticated", "missing or malformed \(RequestSignature.nonceHeader): 16 to 128 characters of A-Z a-z 0-9 - _",
                credential: id)
        }
        guard let signature = request.header(RequestSignature.signatureHeader) else {
            throw Refusal(401, "unauthenticated", "missing \(RequestSignature.signatureHeader)", credential: id)
        }
        guard request.query.isEmpty else {
            throw Refusal(400, "bad_request", "\(Self.messagesPath) takes no query parameters", credential: id)
        }
        let found: Credential?
        do {
            found = try credentials.credential(id)
        } catch {
            throw Refusal(503, "unavailable", "the credential store cannot be read; retry later", retryAfter: 5, credential: id)
        }
        guard let credential = found else { throw Refusal(401, "unknown_credential", "no credential \(id)", credential: id) }
        let wallClock = Date().timeIntervalSince1970
        let now = Int64(wallClock)
        switch credential.status(at: Timestamp(microseconds: Int64(wallClock * 1_000_000))) {
        case .revoked:
            throw Refusal(401, "credential_revoked", "credential \(id) was revoked at \(credential.revoked!.iso8601)", credential: id)
        case .expired:
            throw Refusal(401, "credential_expired", "credential \(id) expired at \(credential.expires!.iso8601)", credential: id)
        case .active:
            break
        }
        let skew = Int64(configuration.maximumSkewSeconds)
        guard abs(now - timestamp) <= skew else {
            throw Refusal(
                401, "stale_request",
                "\(RequestSignature.timestampHeader) \(timestamp) is \(abs(now - timestamp)) s from the server's clock (\(now)); at most \(skew) s are allowed: sign each attempt anew and keep the clock synchronized",
                credential: id)
        }
        guard let key = credential.verificationKey,
            RequestSignature.isValid(
                signature: signature, key: key, method: request.method, path: request.path, timestamp: timestampText, nonce: nonce,
                body: request.body)
        else {
            throw Refusal(401, "bad_signature", "the signature does not match the request (method, path, headers or body)", credential: id)
        }
        switch nonces.use(credential: id, nonce: nonce, now: now) {
        case .fresh: break
        case .replayed:
            throw Refusal(
                401, "replayed_request", "nonce already used: this request was seen before; sign each attempt anew", credential: id)
        case .full:
            throw Refusal(503, "unavailable", "too many requests in flight to remember; retry shortly", retryAfter: 1, credential: id)
        }
        let monotonic = Double(DispatchTime.now().uptimeNanoseconds) / 1e9
        if case .limited(let retryAfter) = limiter.take(id, now: monotonic) {
            throw Refusal(
                429, "rate_limited",
                "credential \(id) is limited to \(configuration.rate) requests a second (bursts of \(configuration.burst)); retry after \(retryAfter) s",
                retryAfter: retryAfter, credential: id)
        }
        return credential
    }

    /// Appends `events` on ingest's client socket; ingest's per-event results, in order.
    private func append(_ events: [JSONValue], credential: String) throws(Refusal) -> [JSONValue] {
        let response: JSONObject
        do {
            let client = try UnixClient(path: configuration.ingestSocket)
            // Ingest answers after an fsync; one that hangs must not hold the connection forever.
            client.setReceiveTimeout(seconds: 30)
            response = try client.call(Request(op: "append", fields: JSONObject(["events": .array(events)])))
        } catch .server(let error) {
            Log.error("meter-ingest refused an append from credential \(credential): \(error)")
            throw Refusal(502, "ingest_error", "meter-ingest refused the batch: \(error.message)", credential: credential)
        } catch {
            Log.warning("cannot append to meter-ingest at \(configuration.ingestSocket): \(error)")
            throw Refusal(
                503, "unavailable",
                "meter-ingest is not reachable; none, some or all messages may be recorded: retry with the same ids", retryAfter: 2,
                credential: credential)
        }
        guard let results = response["results"]?.arrayValue, results.count == events.count else {
            Log.error("meter-ingest answered an append of \(events.count) events without as many results")
            throw Refusal(
                502, "ingest_error", "meter-ingest answered without a result per message; retry with the same ids", credential: credential)
        }
        return results
    }

    /// Answers `refusal` and logs it with its reason (never a secret or a signature). Client text
    /// (the path, a resource name in the message) is logged as it is: `Log` escapes it.
    private func refuse(_ refusal: Refusal, _ request: HTTPRequest, allow: String? = nil) -> HTTPReply {
        frontDoorMetrics.refusedRequests.labels(refusal.code).add()
        Log.notice(
            "refused \(refusal.status) \(refusal.code): \(refusal.message) credential=\(refusal.credential ?? "-") client=\(client(of: request)) \(request.method) \(request.path)"
        )
        var response = refusal.response
        if let allow { response.add("Allow", allow) }
        return .respond(response)
    }

    /// The address the proxy saw (`X-Real-IP`), for logs; anything but an address is not echoed.
    private func client(of request: HTTPRequest) -> String {
        guard let address = request.header("x-real-ip") else { return "direct" }
        let allowed =
            address.utf8.count <= 45 && address.utf8.allSatisfy { $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: ":") || $0.isHexDigit }
        return allowed ? address : "?"
    }

    /// The front door's error shape: `{"error":{"code":..,"message":..}}`.
    static func error(_ status: Int, code: String, message: String) -> HTTPResponse {
        .json(status, ["error": .object(JSONObject([.init("code", .string(code)), .init("message", .string(message))]))])
    }
}

extension UInt8 {
    fileprivate var isHexDigit: Bool {
        (self >= UInt8(ascii: "0") && self <= UInt8(ascii: "9")) || (self >= UInt8(ascii: "a") && self <= UInt8(ascii: "f"))
            || (self >= UInt8(ascii: "A") && self <= UInt8(ascii: "F"))
    }
}
