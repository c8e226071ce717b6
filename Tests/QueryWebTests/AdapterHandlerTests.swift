import AdapterKit
import Foundation
import HTTP
import QueryWeb
import StackTestSupport
import Synchronization
import Testing
import Wire

/// A stub read model for the usage API: records what it was asked, answers canned pages.
final class StubAdapterBackend: AdapterBackend {
    let asked = Mutex<[String]>([])
    /// Ids below it have aged out.
    let firstId: Int

    init(firstId: Int = 0) { self.firstId = firstId }

    private func ask(_ text: String) { asked.withLock { $0.append(text) } }

    static func scope(_ names: Set<String>?) -> String { names.map { $0.sorted().joined(separator: ",") } ?? "all" }

    func usage(from start: Int, size: Int, names: Set<String>?) throws(AdapterProblem) -> JSONObject {
        ask("usage \(start) \(size) \(Self.scope(names))")
        guard start >= firstId else {
            throw AdapterProblem(AdapterProblem.expiredCode, "aged out", details: [.init("firstId", .number(String(firstId)))])
        }
        let records: [JSONValue] = [
            [
                "id": .number(String(start)), "partition": 1, "subscription": "sub-a", "resourceId": "sub-a", "planId": "plan, \"gold\"",
                "meterName": "email", "dimension": "=cmd()", "hour": "2024-03-01T10:00:00Z", "quantity": .number("110.5"),
                "billed": .number("10.5"), "status": "accepted",
            ]
        ]
        return JSONObject([
            .init("records", .array(records)), .init("nextId", .number(String(start + 1))), .init("firstId", .number(String(firstId))),
            .init("total", .number(String(start + 1))),
        ])
    }

    func subscriptions(after: String?, max: Int, names: Set<String>?) throws(AdapterProblem) -> JSONObject {
        ask("subscriptions \(after ?? "-") \(max) \(Self.scope(names))")
        return JSONObject(["subscriptions": [], "total": 0, "next": .null])
    }

    func plans(names: Set<String>?) throws(AdapterProblem) -> JSONObject {
        ask("plans \(Self.scope(names))")
        return JSONObject(["plans": []])
    }

    func submissions(cursor: String?, size: Int, status: String?, names: Set<String>?) throws(AdapterProblem) -> JSONObject {
        ask("submissions \(cursor ?? "-") \(size) \(status ?? "-") \(Self.scope(names))")
        return JSONObject(["records": [], "cursor": "0-0"])
    }

    func events(_ name: ResourceName, from: Timestamp?, to: Timestamp?, after: Int?, max: Int) throws(AdapterProblem) -> JSONObject {
        ask("events \(name) \(from?.iso8601 ?? "-") \(to?.iso8601 ?? "-") \(after.map(String.init) ?? "-") \(max)")
        return JSONObject(["records": [], "next": .null])
    }
}

/// The usage API's handler over real HTTP with a real credential file and a stub read model.
@Suite("The usage API for billing adapters")
struct AdapterHandlerTests {
    /// 2024-07-10T00:00:00Z.
    static let now = Timestamp(seconds: 1_720_569_600)

    final class Server {
        let home = StackHome()
        let store: AdapterCredentialStore
        let backend: StubAdapterBackend
        let server: HTTPServer

        init(firstId: Int = 0) throws {
            store = AdapterCredentialStore(path: home.path + "/adapters/credentials.json")
            backend = StubAdapterBackend(firstId: firstId)
            let handler = AdapterHTTPHandler(
                credentials: try AdapterCredentialDirectory(store: store), backend: backend, now: { AdapterHandlerTests.now })
            server = try HTTPServer(host: "127.0.0.1", port: 0, limits: HTTPServer.Limits(), handler: handler)
            server.start()
        }

        deinit { server.stop(waitingUpTo: 2) }

        /// A new credential in the file, and its key.
        func key(subscriptions: [String]? = nil, expires: Timestamp? = nil) throws -> AdapterKey {
            let key = AdapterKey.generate()
            try store.update { credentials in
                credentials.append(
                    AdapterCredential(
                        key: key, name: "test", subscriptions: subscriptions,
                        created: AdapterHandlerTests.now.adding(microseconds: -1_000_000),
                        expires: expires))
            }
            return key
        }

        func get(_ target: String, key: String? = nil, method: String = "GET", headers: [String: String] = [:]) throws
            -> TestHTTPClient.Response
        {
            var headers = headers
            if let key { headers["Authorization"] = "Bearer \(key)" }
            return try TestHTTPClient(port: server.port).request(method, target, headers: headers)
        }

        var asked: [String] { backend.asked.withLock { $0 } }
    }

    @Test("a key for every subscription pages usage as JSON; the paging figures are in the body and the headers")
    func usageAsJSON() throws {
        let server = try Server()
        let key = try server.key()
        let response = try server.get("/v1/usage?startId=7&batchSize=50", key: key.text)
        #expect(response.status == 200)
        #expect(response.headers["content-type"] == "application/json; charset=utf-8")
        #expect(response.headers["cache-control"] == "no-store")
        #expect(response.json?["records"]?.arrayValue?.first?["id"] == 7)
        #expect(response.json?["nextId"] == 8)
        #expect(response.headers["x-next-id"] == "8")
        #expect(response.headers["x-first-id"] == "0")
        #expect(response.headers["x-total"] == "8")
        #expect(server.asked == ["usage 7 50 all"])
        _ = try server.get("/v1/usage", key: key.text)
        #expect(server.asked.last == "usage 0 100 all", "startId 0 and batchSize 100 by default")
    }

    @Test("usage as CSV on request: a header line, RFC 4180 quoting, and no cell a spreadsheet would run as a formula")
    func usageAsCSV() throws {
        let server = try Server()
        let key = try server.key()
        for request in [("/v1/usage?format=csv", [String: String]()), ("/v1/usage", ["Accept": "text/csv"])] {
            let response = try server.get(request.0, key: key.text, headers: request.1)
            #expect(response.status == 200)
            #expect(response.headers["content-type"] == "text/csv; charset=utf-8; header=present")
            #expect(response.headers["x-next-id"] == "1")
            let lines = response.text.components(separatedBy: "\r\n")
            #expect(
                lines.first == "id,partition,subscription,resourceId,resourceUri,planId,meterName,dimension,hour,quantity,billed,status")
            #expect(
                lines.dropFirst().first == #"0,1,sub-a,sub-a,,"plan, ""gold""",email,"'=cmd()",2024-03-01T10:00:00Z,110.5,10.5,accepted"#)
        }
        let json = try server.get("/v1/usage", key: key.text, headers: ["Accept": "application/json, text/csv"])
        #expect(json.headers["content-type"] == "application/json; charset=utf-8")
        #expect(try server.get("/v1/usage?format=xml", key: key.text).status == 400)
    }

    @Test(
        "a scoped key reads only its subscriptions: the read model is asked with its names, and events of another subscription are refused")
    func scopedKey() throws {
        let server = try Server()
        let key = try server.key(subscriptions: ["sub-a", "/subscriptions/x/app"])
        for target in ["/v1/usage", "/v1/subscriptions", "/v1/plans", "/v1/submissions?cursor=0-3&status=Accepted"] {
            #expect(try server.get(target, key: key.text).status == 200, "\(target)")
        }
        #expect(
            server.asked == [
                "usage 0 100 /subscriptions/x/app,sub-a", "subscriptions - 100 /subscriptions/x/app,sub-a",
                "plans /subscriptions/x/app,sub-a",
                "submissions 0-3 100 Accepted /subscriptions/x/app,sub-a",
            ])
        let other = try server.get("/v1/events?resourceId=sub-b", key: key.text)
        #expect(other.status == 403)
        #expect(other.json?["error"]?["code"] == "forbidden")
        let own = try server.get("/v1/events?resourceId=sub-a&from=2024-03-01T00:00:00Z&max=5&after=12", key: key.text)
        #expect(own.status == 200)
        #expect(server.asked.last == "events sub-a 2024-03-01T00:00:00Z - 12 5")
        #expect(server.asked.count == 5, "the refused request asked nothing")
    }

    @Test("no key, a malformed one, a wrong secret, an unknown, expired or revoked credential: 401 with the reason, nothing asked")
    func refusedKeys() throws {
        let server = try Server()
        let good = try server.key()
        let expired = try server.key(expires: Self.now)
        let revoked = try server.key()
        try server.store.update { credentials in
            let index = credentials.firstIndex { $0.id == revoked.id }!
            credentials[index].revoked = Self.now
            credentials[index].secretHash = nil
        }
        let wrongSecret = AdapterKey(id: good.id, secret: AdapterKey.generate().secret)
        let cases: [(String?, String?)] = [
            (nil, nil), ("not-a-key", "malformed"), (wrongSecret.text, "unknown_credential"),
            (AdapterKey.generate().text, "unknown_credential"), (expired.text, "credential_expired"), (revoked.text, "credential_revoked"),
        ]
        for (key, reason) in cases {
            let response = try server.get("/v1/usage", key: key)
            #expect(response.status == 401, "\(reason ?? "no key")")
            #expect(response.headers["www-authenticate"] == "Bearer realm=\"metering-usage\"")
            #expect(response.json?["error"]?["code"] == "unauthorized")
            #expect(response.json?["error"]?["reason"] == reason.map { .string($0) }, "\(reason ?? "no key")")
            #expect(!response.text.contains(good.secret))
        }
        let basic = try server.get("/v1/usage", headers: ["Authorization": "Basic dXNlcjpwYXNz"])
        #expect(basic.status == 401)
        #expect(server.asked.isEmpty)
        #expect(try server.get("/v1/usage", key: good.text).status == 200)
    }

    @Test(
        "an id that aged out is answered 410 expired with the first readable id; bad parameters 400; other methods 405; unknown paths 404")
    func refusals() throws {
        let server = try Server(firstId: 40)
        let key = try server.key()
        let expired = try server.get("/v1/usage?startId=3", key: key.text)
        #expect(expired.status == 410)
        #expect(expired.json?["error"]?["code"] == "expired")
        #expect(expired.json?["error"]?["firstId"] == 40)
        for target in [
            "/v1/usage?batchSize=0", "/v1/usage?batchSize=10001", "/v1/usage?startId=-1", "/v1/usage?startId=x",
            "/v1/subscriptions?max=0", "/v1/events", "/v1/events?resourceId=a&from=yesterday", "/v1/submissions?batchSize=abc",
        ] {
            let response = try server.get(target, key: key.text)
            #expect(response.status == 400, "\(target)")
            #expect(response.json?["error"]?["code"] == "bad_request", "\(target)")
        }
        let post = try server.get("/v1/usage", key: key.text, method: "POST")
        #expect(post.status == 405)
        #expect(post.headers["allow"] == "GET, HEAD")
        #expect(try server.get("/v1/nothing", key: key.text).status == 404)
        #expect(try server.get("/api/runrate", key: key.text).status == 404)
        #expect(try server.get("/v1/health").status == 200, "health needs no key")
    }

    @Test("a credential file that cannot be read refuses every request with 503, and serves again once fixed")
    func brokenFile() throws {
        let server = try Server()
        let key = try server.key()
        let good = try String(contentsOfFile: server.store.path, encoding: .utf8)
        try "{not json".write(toFile: server.store.path, atomically: true, encoding: .utf8)
        let refused = try server.get("/v1/usage", key: key.text)
        #expect(refused.status == 503)
        #expect(refused.json?["error"]?["code"] == "unavailable")
        try good.write(toFile: server.store.path, atomically: true, encoding: .utf8)
        #expect(try server.get("/v1/usage", key: key.text).status == 200)
    }

    @Test("the stored credential keeps the secret's SHA-256 only, in a file only its owner reads")
    func storedForm() throws {
        let server = try Server()
        let key = try server.key(subscriptions: ["sub-a"])
        let text = try String(contentsOfFile: server.store.path, encoding: .utf8)
        #expect(!text.contains(key.secret))
        #expect(text.contains(key.secretHash))
        let attributes = try FileManager.default.attributesOfItem(atPath: server.store.path)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        #expect(try server.store.load().first?.subscriptions == ["sub-a"])
        #expect(AdapterKey(text: key.text) == key)
        #expect(AdapterKey(text: "fdc_0123456789abcdef." + key.secret) == nil, "a front-door credential is not an adapter key")
    }
}
