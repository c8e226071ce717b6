import Foundation
import HTTP
import QueryWeb
import StackTestSupport
import Synchronization
import Wire

/// A `RunRateHTTPHandler` on 127.0.0.1, on a port of the kernel's choice, answering from a stub
/// run-rate read model, with tokens minted against its secret and clock.
final class RunRateServer {
    static let secret = try! AccessTokenSecret(bytes: Array("test-secret-of-at-least-thirty-two-bytes".utf8))
    /// The wall clock the server checks expiry against: 2024-07-10T00:00:00Z.
    static let now: Int64 = 1_720_569_600

    static let subscriptionA = AccessToken.Subject.resourceId("sub-a")
    static let subscriptionB = AccessToken.Subject.resourceUri(
        "/subscriptions/b/resourceGroups/rg/providers/Microsoft.Solutions/applications/b")
    static let unknown = AccessToken.Subject.resourceId("sub-unknown")
    static let warmingUp = AccessToken.Subject.resourceId("sub-warming-up")

    let server: HTTPServer
    /// The names the handler asked the read model for, in order.
    private let asked = Asked()

    private final class Asked: Sendable {
        let names = Mutex<[ResourceName]>([])
    }

    /// `answer` replaces the stub read model (for answers that change from call to call).
    init(answer: (@Sendable (ResourceName, Int) -> Result<JSONObject, WireError>)? = nil) throws {
        let asked = self.asked
        let handler = RunRateHTTPHandler(verifier: AccessTokenVerifier(secret: Self.secret, now: { Self.now })) { name in
            let call = asked.names.withLock {
                $0.append(name)
                return $0.count
            }
            return answer?(name, call) ?? RunRateFixture.readModel(name)
        }
        server = try HTTPServer(host: "127.0.0.1", port: 0, limits: HTTPServer.Limits(), handler: handler)
        server.start()
    }

    deinit { server.stop(waitingUpTo: 2) }

    var port: Int { server.port }
    var baseURL: String { "http://127.0.0.1:\(server.port)/" }
    /// What the read model was asked so far.
    var askedNames: [ResourceName] { asked.names.withLock { $0 } }

    static func token(
        _ subject: AccessToken.Subject = subscriptionA, scope: String = AccessToken.runRateScope, expiresIn: Int64 = 3600,
        secret: AccessTokenSecret = secret
    ) -> String {
        AccessToken(subject: subject, scope: scope, issuedAt: now - 60, expiresAt: now + expiresIn).signed(with: secret)
    }

    /// One request on a fresh connection.
    func request(_ target: String, method: String = "GET", token: String? = nil, headers: [String: String] = [:]) throws
        -> TestHTTPClient.Response
    {
        var headers = headers
        if let token { headers["Authorization"] = "Bearer \(token)" }
        return try TestHTTPClient(port: server.port).request(method, target, headers: headers)
    }
}

/// The run-rate objects of the stub read model (DESIGN.md §3.4's shape).
enum RunRateFixture {
    /// Subscription A: a simple meter in overage, an unlimited one, and a waterfall meter.
    static func readModel(_ name: ResourceName) -> Result<JSONObject, WireError> {
        switch name {
        case RunRateServer.subscriptionA.resourceName: return .success(object(name, consumed: 1250))
        case RunRateServer.subscriptionB.resourceName: return .success(object(name, consumed: 7))
        case RunRateServer.warmingUp.resourceName: return .failure(WireError(.unavailable, "the read model is catching up with the log"))
        default: return .failure(WireError(.notFound, "no subscription \(name)"))
        }
    }

    /// `asOf` of every object: 2024-07-10T11:59:58Z.
    static let asOf = "2024-07-10T11:59:58Z"

    /// A run-rate object whose 30-day period ends `daysLeft` days after `asOf` (the page counts
    /// the days left from the log time the figures are valid at, not from the browser's clock).
    static func object(_ name: ResourceName, consumed: Int, daysLeft: Double = 10.5) -> JSONObject {
        let end = Timestamp(iso8601: asOf)!.adding(microseconds: Int64(daysLeft * 86_400_000_000))
        let start = end.adding(microseconds: -30 * Timestamp.microsecondsPerDay)
        var object = JSONObject(["ok": true])
        if let id = name.resourceId { object["resourceId"] = .string(id) }
        if let uri = name.resourceUri { object["resourceUri"] = .string(uri) }
        object["planId"] = "gold"
        object["asOf"] = .string(asOf)
        object["period"] = ["start": .string(start.iso8601), "end": .string(end.iso8601)]
        let overage = max(0, consumed - 1000)
        object["meters"] = [
            [
                "meterName": "email", "dimension": "email-overage", "included": 1000, "consumed": .number(String(consumed)),
                "remaining": .number(String(max(0, 1000 - consumed))), "overage": .number(String(overage)), "openHourOverage": 50,
                "projected": 1800, "marketplace": ["pending": 50, "accepted": 200, "rejected": 0, "conflicts": 0],
            ],
            [
                "meterName": "storage", "dimension": "storage-gb", "included": "Infinite", "consumed": .number("321.5"),
                "remaining": "Infinite", "overage": 0, "openHourOverage": 0, "projected": 600,
                "marketplace": ["pending": 0, "accepted": 0, "rejected": 0, "conflicts": 0],
            ],
            [
                "meterName": "egress", "dimension": "egress_tier_2", "included": 100, "consumed": 12000, "remaining": 0,
                "overage": 11900, "openHourOverage": 400, "projected": 20000,
                "marketplace": ["pending": 400, "accepted": 11000, "rejected": 500, "conflicts": 1],
                "tiers": [
                    ["dimension": "egress_tier_1", "threshold": 100, "consumed": 9900],
                    ["dimension": "egress_tier_2", "threshold": 10000, "consumed": 2000],
                    ["dimension": "egress_tier_3", "threshold": 40000, "consumed": 0],
                ],
            ],
        ]
        return object
    }
}
