import Crypto
import Foundation
import HTTP
import QueryWeb
import StackTestSupport
import Testing
import Transport
import Wire

/// `meterctl token`, the real executable: the tokens it prints verify with the secret the
/// run-rate handler loads, through the same load-or-create function.
@Suite("meterctl token")
struct TokenCommandTests {
    static func meterctl(_ arguments: [String], environment: [String: String] = [:]) throws -> TestCommand.Outcome {
        var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("METERING_") }
        for (key, value) in environment { env[key] = value }
        return try TestCommand.run(Binaries.path("meterctl"), ["token"] + arguments, environment: env, timeout: 20)
    }

    @Test("asked to, it creates the stack's secret, prints a token for the subscription and the page link, and the page's API accepts it")
    func mintsAndServes() throws {
        let home = StackHome()
        let run = try Self.meterctl([
            "--resource-id", "sub-a", "--ttl", "600", "--url", "http://127.0.0.1:8090", "--home", home.path, "--create-secret",
            "--no-check",
        ])
        #expect(run.status == 0, "\(run.errors)")
        let lines = run.output.split(separator: "\n").map(String.init)
        try #require(lines.count == 2, "\(run.output)")
        #expect(lines[1] == "http://127.0.0.1:8090/#token=\(lines[0])")
        #expect(run.errors.contains("valid until"))
        #expect(!run.errors.contains(lines[0]))

        let secret = try AccessTokenSecret.loadOrCreate(path: home.path + "/secrets/query-token.key")
        let token = try AccessToken.verify(lines[0], secret: secret, now: AccessToken.wallClock())
        #expect(token.subject == .resourceId("sub-a"))
        #expect(token.scope == AccessToken.runRateScope)
        #expect(token.expiresAt - token.issuedAt == 600)
        #expect(abs(token.issuedAt - AccessToken.wallClock()) < 60)

        let handler = RunRateHTTPHandler(verifier: AccessTokenVerifier(secret: secret), runrate: RunRateFixture.readModel)
        let server = try HTTPServer(host: "127.0.0.1", port: 0, limits: HTTPServer.Limits(), handler: handler)
        server.start()
        defer { server.stop(waitingUpTo: 2) }
        let response = try TestHTTPClient(port: server.port).request(
            "GET", "/api/runrate", headers: ["Authorization": "Bearer \(lines[0])"])
        #expect(response.status == 200)
    }

    @Test("the secret file named by METERING_QUERY_TOKEN_SECRET_FILE is used, and a resourceUri token lasts an hour by default")
    func secretFromEnvironment() throws {
        let home = StackHome()
        let path = home.path + "/isv.key"
        let secretText = "an-isv-chosen-secret-that-is-long-enough-for-hmac"
        try Data(secretText.utf8).write(to: URL(fileURLWithPath: path))
        let run = try Self.meterctl(
            ["--resource-uri", "/subscriptions/x/app", "--no-check"], environment: ["METERING_QUERY_TOKEN_SECRET_FILE": path])
        #expect(run.status == 0, "\(run.errors)")
        let text = run.output.trimmingCharacters(in: .newlines)
        let secret = try AccessTokenSecret(bytes: Array(secretText.utf8))
        let token = try AccessToken.verify(text, secret: secret, now: AccessToken.wallClock())
        #expect(token.subject == .resourceUri("/subscriptions/x/app"))
        #expect(token.expiresAt - token.issuedAt == 3600)
        #expect(!FileManager.default.fileExists(atPath: home.path + "/secrets"))
    }

    @Test(
        "bad requests fail with a message and print no token",
        arguments: [
            (["--ttl", "60"], "--resource-id"),
            (["--resource-id", "a", "--resource-uri", "b"], "not both"),
            (["--resource-id", "a", "--ttl", "0"], "--ttl"),
            (["--resource-id", "a", "--ttl", "2678401"], "31 days"),
            (["--resource-id", "a", "--ttl", "1h"], "--ttl"),
            (["--resource-id", "a", "--url", "127.0.0.1:8090"], "--url"),
            (["--resource-id", "a", "--lifetime", "5"], "unknown option --lifetime"),
            (["--resource-id", ""], "non-empty name"),
        ])
    func refusals(_ arguments: [String], _ message: String) throws {
        let home = StackHome()
        let run = try Self.meterctl(arguments + ["--home", home.path])
        #expect(run.status != 0)
        #expect(run.output.isEmpty)
        #expect(run.errors.contains(message), "\(run.errors)")
    }

    @Test("a secret file too short to be safe stops it with a message naming the file")
    func shortSecret() throws {
        let home = StackHome()
        let path = home.path + "/short.key"
        try Data("short\n".utf8).write(to: URL(fileURLWithPath: path))
        let run = try Self.meterctl(["--resource-id", "a", "--token-secret-file", path, "--no-check"])
        #expect(run.status == 64)
        #expect(run.output.isEmpty)
        #expect(run.errors.contains(path) && run.errors.contains("at least 32"), "\(run.errors)")
    }

    @Test("a home without the secret (a wrong METERING_HOME) is refused, naming the file, and no secret is made")
    func missingSecret() throws {
        let home = StackHome()
        let run = try Self.meterctl(["--resource-id", "sub-a", "--home", home.path, "--no-check"])
        #expect(run.status == 1)
        #expect(run.output.isEmpty)
        #expect(run.errors.contains("no token secret at \(home.path)/secrets/query-token.key"), "\(run.errors)")
        #expect(run.errors.contains("--create-secret"))
        #expect(!FileManager.default.fileExists(atPath: home.path + "/secrets"))
    }

    @Test("it mints only for a subscription meter-query holds, and says so when meter-query cannot be asked")
    func onlyHeldSubscriptions() throws {
        let home = StackHome()
        let ingest = try IngestProcess(home: home)
        // The page's HTTP side makes meter-query create the stack's secret.
        let query = try QueryProcess(home: home, environment: ["METERING_QUERY_HTTP": "127.0.0.1:0"])
        let purchase = try JSONParser.parse(
            #"{"type":"SubscriptionPurchased","value":{"subscription":{"resourceId":"bought","subscriptionStart":"2024-01-01T00:00:00Z","renewalInterval":"Monthly","plan":{"planId":"p","billingDimensions":{"m":{"type":"simple","dimension":"d"}}}}}}"#
        )
        _ = try ingest.client().call(appendRequest([purchase]))
        try query.waitUntilCaughtUp(with: ingest)
        let held = try Self.meterctl(["--resource-id", "bought", "--home", home.path])
        #expect(held.status == 0, "\(held.errors)")
        #expect(held.output.hasPrefix("v1."))
        let never = try Self.meterctl(["--resource-id", "never-bought", "--home", home.path])
        #expect(never.status == 1)
        #expect(never.output.isEmpty)
        #expect(never.errors.contains("meter-query holds no subscription resourceId never-bought"), "\(never.errors)")
        query.kill(SIGTERM)
        let unasked = try Self.meterctl(["--resource-id", "bought", "--home", home.path])
        #expect(unasked.status == 1)
        #expect(unasked.errors.contains("cannot ask meter-query") && unasked.errors.contains("--no-check"), "\(unasked.errors)")
    }
}
