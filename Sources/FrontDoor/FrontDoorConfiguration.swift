import Daemon
import FrontDoorKit
import Metrics
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// How `meter-frontdoor` runs: from flags and `METERING_*` variables (DESIGN.md §6.1).
struct FrontDoorConfiguration {
    /// Where Prometheus metrics are served (`METERING_METRICS_ADDR`), nil when off.
    var metrics: MetricsAddress?
    /// Where requests arrive: loopback TCP (a reverse proxy terminates TLS in front), or a Unix
    /// socket the proxy connects to.
    enum Listen: Equatable, CustomStringConvertible {
        case tcp(host: String, port: Int)
        case unix(path: String)

        var description: String {
            switch self {
            case .tcp(let host, let port): return "\(host):\(port)"
            case .unix(let path): return "unix:\(path)"
            }
        }
    }

    var home: String
    var listen: Listen
    var ingestSocket: String
    var credentials: String
    var maximumSkewSeconds: Int
    var rate: Double
    var burst: Int
    var maximumEvents: Int
    var maximumBodyBytes: Int
    var nonceCapacity: Int
    var maximumConnections: Int

    /// Where the bound address is written, for tests and scripts.
    var addressFile: String { home + "/run/frontdoor.addr" }

    static let usage = """
        meter-frontdoor: the HTTP front door for managed applications calling home. Takes the
        client messages of meter-ingest (SubscriptionPurchased, UsageReported, SubscriptionDeleted)
        in signed requests, checks each against the credential's bound resources, and appends them
        on meter-ingest's client socket. TLS is terminated by a reverse proxy in front of it
        (deploy/nginx/metering-frontdoor.conf); see docs/FRONTDOOR.md.

        Settings (flag, environment variable, default):
          --home             METERING_HOME                      ./.metering
          --listen           METERING_FRONTDOOR_LISTEN          127.0.0.1:8091 (HOST:PORT with an IPv4 host,
                                                                port 0: ephemeral; or unix:PATH)
          --ingest-socket    METERING_INGEST_SOCKET             $METERING_HOME/run/ingest.sock
          --credentials      METERING_FRONTDOOR_CREDENTIALS     $METERING_HOME/data/frontdoor/credentials.json
          --max-skew         METERING_FRONTDOOR_MAX_SKEW        300 (seconds a request's timestamp may be off)
          --rate             METERING_FRONTDOOR_RATE            5 (requests a second per credential, sustained)
          --burst            METERING_FRONTDOOR_BURST           20 (requests per credential at once)
          --max-events       METERING_FRONTDOOR_MAX_EVENTS      100 (messages per request)
          --max-body-bytes   METERING_FRONTDOOR_MAX_BODY_BYTES  1048576
          --nonce-capacity   METERING_FRONTDOOR_NONCE_CAPACITY  1000000 (nonces remembered at once)
          --max-connections  METERING_FRONTDOOR_MAX_CONNECTIONS 256
        \(MetricsAddress.usageLine)

        The bound address is printed and written to $METERING_HOME/run/frontdoor.addr
        (http://HOST:PORT or unix:PATH). The credential file is re-read when it changes
        (meterctl credentials create|list|revoke).

        Endpoints:
          POST /v1/messages   a JSON array of 1 to --max-events messages (or one message), signed
                              with X-Metering-Credential, -Timestamp, -Nonce and -Signature
          GET  /v1/health     {"status":"ok"} (no credential needed)
        """

    init(settings: inout Settings) throws(SettingsError) {
        home = settings.home()
        listen = try Self.listen(settings.string("listen", "METERING_FRONTDOOR_LISTEN", default: "127.0.0.1:8091"))
        ingestSocket = Settings.absolute(settings.string("ingest-socket", "METERING_INGEST_SOCKET", default: home + "/run/ingest.sock"))
        credentials = Settings.absolute(
            settings.string("credentials", "METERING_FRONTDOOR_CREDENTIALS", default: CredentialStore.defaultPath(home: home)))
        maximumSkewSeconds = try settings.integer("max-skew", "METERING_FRONTDOOR_MAX_SKEW", default: 300, range: 1...3600)
        let rateText = settings.string("rate", "METERING_FRONTDOOR_RATE", default: "5")
        guard let rate = Double(rateText), rate.isFinite, rate >= 0.001, rate <= 1_000_000 else {
            throw SettingsError(
                "invalid METERING_FRONTDOOR_RATE (--rate)=\"\(rateText)\": expected requests a second per credential, from 0.001 to 1000000"
            )
        }
        self.rate = rate
        burst = try settings.integer("burst", "METERING_FRONTDOOR_BURST", default: 20, range: 1...1_000_000)
        maximumEvents = try settings.integer("max-events", "METERING_FRONTDOOR_MAX_EVENTS", default: 100, range: 1...10_000)
        maximumBodyBytes = try settings.integer(
            "max-body-bytes", "METERING_FRONTDOOR_MAX_BODY_BYTES", default: 1 << 20, range: 1024...(16 << 20))
        nonceCapacity = try settings.integer(
            "nonce-capacity", "METERING_FRONTDOOR_NONCE_CAPACITY", default: 1_000_000, range: 1...100_000_000)
        maximumConnections = try settings.integer(
            "max-connections", "METERING_FRONTDOOR_MAX_CONNECTIONS", default: 256, range: 1...10_000)
        metrics = try MetricsAddress.setting(&settings)
        try settings.rejectUnknownFlags()
    }

    /// `HOST:PORT` (an IPv4 host) or `unix:PATH`.
    static func listen(_ text: String) throws(SettingsError) -> Listen {
        if text.hasPrefix("unix:") {
            let path = String(text.dropFirst(5))
            guard !path.isEmpty, path.utf8.count < 108 else {
                throw SettingsError("invalid METERING_FRONTDOOR_LISTEN=\"\(text)\": unix: needs a socket path of at most 107 bytes")
            }
            return .unix(path: Settings.absolute(path))
        }
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65_535).contains(port)
        else {
            throw SettingsError("invalid METERING_FRONTDOOR_LISTEN=\"\(text)\": expected HOST:PORT such as 127.0.0.1:8091, or unix:PATH")
        }
        let host = String(text[..<colon])
        var probe = in_addr()
        guard inet_pton(AF_INET, host, &probe) == 1 else {
            throw SettingsError("invalid METERING_FRONTDOOR_LISTEN=\"\(text)\": \"\(host)\" is not an IPv4 address such as 127.0.0.1")
        }
        return .tcp(host: host, port: port)
    }
}
