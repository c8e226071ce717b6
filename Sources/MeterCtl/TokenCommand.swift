import Foundation
import Wire

/// `meterctl token`: mints a run-rate access token for one subscription, as an ISV's backend
/// would (docs/RUNRATE-PAGE.md), with the secret `meter-query` verifies against.
enum TokenCommand {
    static let defaultLifetime: Int64 = 3600

    static func run(_ raw: [String]) throws {
        var arguments = try MeterCtl.Arguments(raw, switches: [])
        let subject: AccessToken.Subject
        switch (arguments.value("resource-id"), arguments.value("resource-uri")) {
        case (let id?, nil): subject = .resourceId(id)
        case (nil, let uri?): subject = .resourceUri(uri)
        case (.some, .some): throw MeterCtl.Failure("a token names one subscription: give --resource-id or --resource-uri, not both")
        case (nil, nil): throw MeterCtl.Failure("token needs --resource-id ID or --resource-uri URI")
        }
        guard AccessToken.isValidSubjectName(subject.name) else {
            throw MeterCtl.Failure(
                "--\(subject.kind == "resourceId" ? "resource-id" : "resource-uri") must be a non-empty name without control characters")
        }
        var lifetime = defaultLifetime
        if let text = arguments.value("ttl") {
            guard let seconds = Int64(text), (1...AccessToken.maximumLifetimeSeconds).contains(seconds) else {
                throw MeterCtl.Failure(
                    "--ttl must be whole seconds from 1 to \(AccessToken.maximumLifetimeSeconds) (31 days), got \"\(text)\"")
            }
            lifetime = seconds
        }
        var base = arguments.value("url")
        if let url = base {
            guard url.hasPrefix("http://") || url.hasPrefix("https://"), !url.contains("#") else {
                throw MeterCtl.Failure("--url must be the page's base URL, such as http://127.0.0.1:8090, got \"\(url)\"")
            }
            base = url.hasSuffix("/") ? url : url + "/"
        }
        var forwarded: [String] = []
        for name in ["home", AccessTokenSecret.fileFlag] {
            if let value = arguments.value(name) { forwarded += ["--\(name)", value] }
        }
        try arguments.rejectUnused()
        guard arguments.words.isEmpty else { throw MeterCtl.Failure("unexpected argument \"\(arguments.words[0])\"") }
        var settings = try Settings(arguments: forwarded)
        let home = settings.home()
        let secret = try AccessTokenSecret.loadOrCreate(path: AccessTokenSecret.path(&settings, home: home))
        let now = AccessToken.wallClock()
        let token = AccessToken(subject: subject, issuedAt: now, expiresAt: now + lifetime).signed(with: secret)
        print(token)
        if let base { print("\(base)#token=\(token)") }
        FileHandle.standardError.write(
            Data("meterctl: token for \(subject), valid until \(Timestamp(seconds: now + lifetime).iso8601)\n".utf8))
    }
}
