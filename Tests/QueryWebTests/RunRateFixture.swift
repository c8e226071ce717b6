import Crypto
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

/// The run-rate objects of the stub read model (DESIGN.md §3.4's shape, with each meter's series).
enum RunRateFixture {
    /// Subscription A: a simple meter in overage, an unlimited one, a waterfall meter and a gauge.
    static func readModel(_ name: ResourceName) -> Result<JSONObject, WireError> {
        switch name {
        case RunRateServer.subscriptionA.resourceName: return .success(object(name, consumed: 1250))
        case RunRateServer.subscriptionB.resourceName: return .success(object(name, consumed: 7))
        case RunRateServer.warmingUp.resourceName: return .failure(WireError(.unavailable, "the read model is catching up with the log"))
        default: return .failure(WireError(.notFound, "no subscription \(name)"))
        }
    }

    /// `asOf` of every object: 2024-07-10T11:59:58Z, 10.5 days (less 2 seconds) before the
    /// period's end (the page counts the days left from the log time the figures are valid at,
    /// not from the browser's clock).
    static let asOf = "2024-07-10T11:59:58Z"

    /// More digits than a double holds: the page must show them all.
    static let storageConsumed = "1234567.123456789012345678"

    /// The largest quantity, which saturated figures show.
    static let largest = "170141183460469231731.687303715884105727"

    /// A run-rate object for the period 2024-06-21 to 2024-07-21. `email`'s days add up to
    /// `consumed`; with `prices`, the meters carry display prices; with `saturated`, `email`'s
    /// projection and pending quantity passed the largest quantity.
    static func object(_ name: ResourceName, consumed: Int, prices: Bool = false, saturated: Bool = false) -> JSONObject {
        var object = JSONObject(["ok": true])
        if let id = name.resourceId { object["resourceId"] = .string(id) }
        if let uri = name.resourceUri { object["resourceUri"] = .string(uri) }
        object["planId"] = "gold"
        object["asOf"] = .string(asOf)
        object["period"] = ["start": "2024-06-21T00:00:00Z", "end": "2024-07-21T00:00:00Z", "index": 0]
        object["deleted"] = false
        let overage = max(0, consumed - 1000)
        var email = JSONObject([
            "meterName": "email", "kind": "sum", "dimension": "email-overage", "included": 1000, "consumed": .number(String(consumed)),
            "remaining": .number(String(max(0, 1000 - consumed))), "overage": .number(String(overage)), "openHourOverage": 50,
            "projected": 1800, "marketplace": ["pending": 50, "accepted": 200, "rejected": 0, "expiredRebilled": 0, "conflicts": 0],
            "series": series(
                "day", [("2024-06-22", "250"), ("2024-07-01", "400"), ("2024-07-09", "500"), ("2024-07-10", String(consumed - 1150))]),
        ])
        if saturated {
            email["projected"] = .number(largest)
            email["saturated"] = ["projected"]
            email["marketplace"] = [
                "pending": .number(largest), "accepted": 200, "rejected": 0, "expiredRebilled": 0, "conflicts": 0, "saturated": ["pending"],
            ]
        }
        var egress = JSONObject([
            "meterName": "egress", "kind": "waterfall", "dimension": "egress_tier_2", "included": 100, "consumed": 15000,
            "remaining": 0, "overage": 14900, "openHourOverage": 400, "projected": 20000,
            "marketplace": ["pending": 400, "accepted": 11000, "rejected": 500, "expiredRebilled": 0, "conflicts": 1],
            "tiers": [
                ["dimension": "egress_tier_1", "threshold": 100, "from": 100, "consumed": 10000],
                ["dimension": "egress_tier_2", "threshold": 10000, "from": 10100, "consumed": 4900],
                ["dimension": "egress_tier_3", "threshold": 40000, "from": 50100, "consumed": 0],
            ],
            "series": series("day", [("2024-06-25", "5000"), ("2024-07-03", "6000"), ("2024-07-08", "4000")]),
        ])
        if prices {
            email["price"] = ["currency": "USD", "perUnit": .number("0.02")]
            let tiers = egress["tiers"]?.arrayValue ?? []
            egress["tiers"] = .array(
                zip(tiers, ["0.01", "0.008", "0.005"]).map { tier, price in
                    guard case .object(var object) = tier else { return tier }
                    object["price"] = ["currency": "USD", "perUnit": .number(price)]
                    return .object(object)
                })
        }
        object["meters"] = [
            .object(email),
            [
                "meterName": "storage", "kind": "sum", "dimension": "storage-gb", "included": "Infinite",
                "consumed": .number(storageConsumed), "remaining": "Infinite", "overage": 0, "openHourOverage": 0, "projected": 1900000,
                "marketplace": ["pending": 0, "accepted": 0, "rejected": 0, "expiredRebilled": 0, "conflicts": 0],
                "series": series("day", [("2024-07-02", "1234000"), ("2024-07-10", "567.123456789012345678")]),
            ],
            .object(egress),
            [
                "meterName": "seats", "kind": "max", "dimension": "seats", "included": 5, "consumed": 7, "remaining": 0, "overage": 2,
                "openHourOverage": 0, "projected": 7,
                "marketplace": ["pending": 0, "accepted": 0, "rejected": 0, "expiredRebilled": 0, "conflicts": 0],
                "series": series("day", [("2024-06-21", "3"), ("2024-07-04", "7"), ("2024-07-10", "6")]),
            ],
        ]
        return object
    }

    static func series(_ step: String, _ points: [(String, String)]) -> JSONValue {
        ["step": .string(step), "points": .array(points.map { ["start": .string($0.0), "quantity": .number($0.1)] })]
    }
}
