import Crypto
import Foundation
import Transport
import Wire

/// `meterctl token`: mints a run-rate access token for one subscription, as an ISV's backend
/// would (docs/RUNRATE-PAGE.md), with the secret `meter-query` verifies against. It refuses a
/// subscription meter-query does not hold, and a missing secret file unless told to create it:
/// either is the sign of a wrong METERING_HOME, and a token from a new secret is refused by the
/// running page.
enum TokenCommand {
    static let defaultLifetime: Int64 = 3600

    static let ttl = Option(
        "ttl", .value("SECONDS"), "how long the token is valid, at most 31 days", fallback: .value(String(defaultLifetime)))
    static let url = Option("url", .value("BASE"), "also print the page's link BASE/#token=... (BASE: run/query-http.addr)")
    static let secretFile = Option(
        AccessTokenSecret.fileFlag, .value("FILE"), "the secret meter-query checks tokens with",
        environment: AccessTokenSecret.fileVariable,
        fallback: .inHome("secrets/query-token.key"))
    static let createSecret = Option(
        "create-secret", .flag, "create the secret file when there is none (meter-query creates it on its first start)")
    static let noCheck = Option("no-check", .flag, "mint without asking meter-query whether it holds the subscription")

    static let command = Command(
        name: "token", summary: "a signed, expiring link to one subscription's run-rate page",
        details: """
            The token names one subscription, which meter-query must hold (it refuses otherwise; --no-check
            skips asking). The secret is meter-query's: a missing secret file means the wrong METERING_HOME
            or a stack that never ran its page, and is refused unless --create-secret.
            """,
        options: [.resourceId, .resourceUri, ttl, url, createSecret, noCheck, .home, secretFile, .querySocket],
        examples: ["meterctl token --resource-id sub-1 --url \"$(cat \"$METERING_HOME/run/query-http.addr\")\""],
        run: { try run($0) })

    static func run(_ invocation: Invocation) throws {
        let subject: AccessToken.Subject
        switch (invocation.value(.resourceId), invocation.value(.resourceUri)) {
        case (let id?, nil): subject = .resourceId(id)
        case (nil, let uri?): subject = .resourceUri(uri)
        case (.some, .some): throw UsageError("a token names one subscription: give --resource-id or --resource-uri, not both")
        case (nil, nil): throw UsageError("'meterctl token' needs --resource-id ID or --resource-uri URI; see meterctl token --help")
        }
        guard AccessToken.isValidSubjectName(subject.name) else {
            throw UsageError(
                "--\(subject.kind == "resourceId" ? "resource-id" : "resource-uri") must be a non-empty name without control characters")
        }
        let text = invocation.value(ttl) ?? String(defaultLifetime)
        guard let lifetime = Int64(text), (1...AccessToken.maximumLifetimeSeconds).contains(lifetime) else {
            throw UsageError("--ttl must be whole seconds from 1 to \(AccessToken.maximumLifetimeSeconds) (31 days), got \"\(text)\"")
        }
        var base = invocation.value(url)
        if let url = base {
            guard url.hasPrefix("http://") || url.hasPrefix("https://"), !url.contains("#") else {
                throw UsageError("--url must be the page's base URL, such as http://127.0.0.1:8090, got \"\(url)\"")
            }
            base = url.hasSuffix("/") ? url : url + "/"
        }
        let path = invocation.path(secretFile)!
        if !FileManager.default.fileExists(atPath: path) && !invocation.flag(createSecret) {
            throw MeterCtl.Failure(
                "no token secret at \(path): is METERING_HOME (\(invocation.home)) the stack's? meter-query creates the secret on its first start; --create-secret makes one here, but a running page will refuse its tokens"
            )
        }
        if !invocation.flag(noCheck) { try checkHeld(subject, query: invocation.path(.querySocket)!) }
        let secret = try AccessTokenSecret.loadOrCreate(path: path)
        let now = AccessToken.wallClock()
        let token = AccessToken(subject: subject, issuedAt: now, expiresAt: now + lifetime).signed(with: secret)
        print(token)
        if let base { print("\(base)#token=\(token)") }
        FileHandle.standardError.write(
            Data("meterctl: token for \(subject), valid until \(Timestamp(seconds: now + lifetime).iso8601)\n".utf8))
    }

    /// Fails unless meter-query holds the subscription (a token for one it never heard of opens
    /// a page that only says "not found").
    static func checkHeld(_ subject: AccessToken.Subject, query: String) throws {
        let client: UnixClient
        do {
            client = try UnixClient(path: query)
        } catch {
            throw MeterCtl.Failure(
                "cannot ask meter-query at \(query) whether it holds \(subject) (\(error)); is METERING_HOME right? --no-check mints anyway"
            )
        }
        do {
            _ = try client.call(Request(op: "runrate", fields: JSONObject([.init(subject.kind, .string(subject.name))])))
        } catch .server(let error) where error.code == .notFound {
            throw MeterCtl.Failure("meter-query holds no subscription \(subject): it was never bought (or was deleted); no token minted")
        } catch {
            throw MeterCtl.Failure("meter-query did not answer whether it holds \(subject): \(error)")
        }
    }
}
