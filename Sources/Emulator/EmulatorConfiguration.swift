import Daemon
import Foundation
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// How `meter-marketplace-emulator` runs: from flags and `METERING_*` variables (DESIGN.md §6.1).
struct EmulatorConfiguration {
    /// Where the emulator's business clock comes from.
    enum ClockMode: String, CaseIterable, Sendable {
        /// The system clock.
        case system
        /// Starts at 1970-01-01T00:00:00Z and moves only by `POST /emulator/clock`.
        case manual
        /// meter-ingest's clock, read from its client socket before each validation.
        case ingest
    }

    var home: String
    var host: String
    var port: Int
    var clock: ClockMode
    var ingestSocket: String
    var requiresAuthorization: Bool
    /// The only client secret the token endpoint accepts; any secret when nil. Never logged.
    var clientSecret: String?
    /// Seconds an issued token stays valid (Entra ID: 3599); short in tests of token refresh.
    var tokenLifetime: Int
    var unknownResources: Set<String>
    var unknownDimensions: Set<String>
    var maximumConnections: Int
    /// What `usageEvents` names the offer.
    var offerId: String
    /// The Azure subscription `usageEvents` gives a SaaS resource (a managed application's is in its URI).
    var azureSubscriptionId: String

    /// Where the bound address is written, for tests and scripts.
    var addressFile: String { home + "/run/emulator.addr" }

    static let usage = """
        meter-marketplace-emulator: a local stand-in for the Azure Marketplace Metering Service
        (batchUsageEvent, usageEvent, usageEvents) and its client-credentials token endpoint, with
        the same rules: 1 to 25 items a batch, hour-aligned effectiveStartTime, a 24-hour window
        against its clock, first write wins (Duplicate with the accepted message).

        Settings (flag, environment variable, default):
          --home                METERING_HOME                        ./.metering
          --host                METERING_EMULATOR_HOST               127.0.0.1 (an IPv4 address)
          --port                METERING_EMULATOR_PORT               8790 (0: an ephemeral port)
          --clock               METERING_EMULATOR_CLOCK              system | manual | ingest
          --ingest-socket       METERING_INGEST_SOCKET               $METERING_HOME/run/ingest.sock (for --clock ingest)
          --no-auth             METERING_EMULATOR_NO_AUTH            off (1: no bearer token needed)
          --client-secret       METERING_EMULATOR_CLIENT_SECRET      any (set: the only secret the token endpoint accepts)
          --token-lifetime      METERING_EMULATOR_TOKEN_LIFETIME     3599 (seconds a token is valid)
          --unknown-resources   METERING_EMULATOR_UNKNOWN_RESOURCES  none (comma-separated: answered ResourceNotFound)
          --unknown-dimensions  METERING_EMULATOR_UNKNOWN_DIMENSIONS none (comma-separated: answered InvalidDimension)
          --max-connections     METERING_EMULATOR_MAX_CONNECTIONS    256
          --offer-id            METERING_EMULATOR_OFFER_ID           metering-emulator-offer (usageEvents' offerId)
          --azure-subscription-id METERING_EMULATOR_AZURE_SUBSCRIPTION_ID 00000000-0000-0000-0000-000000000000 (of SaaS resources)

        The bound address is printed and written to $METERING_HOME/run/emulator.addr as
        http://HOST:PORT. The manual clock starts at 1970-01-01T00:00:00Z.

        Metering API (a bearer token unless --no-auth):
          POST /api/batchUsageEvent?api-version=2018-08-31   {"request":[1 to 25 items]}
          POST /api/usageEvent?api-version=2018-08-31        one item: 200 Accepted, 409 Duplicate, 400 otherwise
          GET  /api/usageEvents?usageStartDate=..&usageEndDate=..&offerId=&planId=&dimension=&azureSubscriptionId=&reconStatus=
               per day, resource and dimension: submitted and processed quantities, reconStatus
               (days before the clock's are Accepted, the clock's day Submitted)
        Tokens (client credentials, resource or scope 20e940b3-4c77-4b0b-9a53-9e16a1b010a7):
          POST /{tenant}/oauth2/token, POST /{tenant}/oauth2/v2.0/token
          GET  /metadata/identity/oauth2/token?resource=..   (managed identity; header Metadata: true)
        Control (for tests and demos):
          GET  /emulator/ledger   GET /emulator/stats   GET|POST /emulator/clock {"time":".."}
          GET|POST /emulator/faults {"failRate":0.3,"status":503,"dropRate":0.1,"dropMode":"both","delayMs":0,"seed":42}
          GET|POST /emulator/reconciliation {"resourceId":"..","dimension":"..","usageDate":"2024-03-01",
               "submittedQuantity":5,"processedQuantity":4,"reconStatus":"Mismatch"}: plants what usageEvents reports
        """

    init(settings: inout Settings) throws(SettingsError) {
        home = settings.home()
        host = settings.string("host", "METERING_EMULATOR_HOST", default: "127.0.0.1")
        var probe = in_addr()
        guard inet_pton(AF_INET, host, &probe) == 1 else {
            throw SettingsError("invalid METERING_EMULATOR_HOST=\"\(host)\": expected an IPv4 address such as 127.0.0.1")
        }
        port = try settings.integer("port", "METERING_EMULATOR_PORT", default: 8790, range: 0...65_535)
        clock = try settings.choice("clock", "METERING_EMULATOR_CLOCK", default: ClockMode.system)
        ingestSocket = Settings.absolute(settings.string("ingest-socket", "METERING_INGEST_SOCKET", default: home + "/run/ingest.sock"))
        requiresAuthorization = !(try Self.flag(&settings, "no-auth", "METERING_EMULATOR_NO_AUTH"))
        clientSecret = settings.optionalString("client-secret", "METERING_EMULATOR_CLIENT_SECRET")
        tokenLifetime = try settings.integer("token-lifetime", "METERING_EMULATOR_TOKEN_LIFETIME", default: 3599, range: 1...86_400)
        unknownResources = Set(
            Self.list(settings.string("unknown-resources", "METERING_EMULATOR_UNKNOWN_RESOURCES", default: "")).map { $0.lowercased() })
        unknownDimensions = Self.list(settings.string("unknown-dimensions", "METERING_EMULATOR_UNKNOWN_DIMENSIONS", default: ""))
        maximumConnections = try settings.integer(
            "max-connections", "METERING_EMULATOR_MAX_CONNECTIONS", default: 256, range: 1...10_000)
        offerId = settings.string("offer-id", "METERING_EMULATOR_OFFER_ID", default: "metering-emulator-offer")
        azureSubscriptionId = settings.string(
            "azure-subscription-id", "METERING_EMULATOR_AZURE_SUBSCRIPTION_ID", default: "00000000-0000-0000-0000-000000000000")
        try settings.rejectUnknownFlags()
    }

    /// An on/off setting: `1`, `true`, `yes`, `on` or `0`, `false`, `no`, `off`.
    private static func flag(_ settings: inout Settings, _ flag: String, _ variable: String) throws(SettingsError) -> Bool {
        guard let text = settings.optionalString(flag, variable) else { return false }
        switch text.lowercased() {
        case "1", "true", "yes", "on": return true
        case "0", "false", "no", "off": return false
        default: throw SettingsError("invalid --\(flag) or \(variable)=\"\(text)\": expected 1 or 0 (true or false)")
        }
    }

    /// The non-empty names of a comma-separated list. Resources are lowercased by the caller:
    /// they compare case-insensitively (GUIDs and ARM ids), as in `UsageItem.slot`.
    private static func list(_ text: String) -> Set<String> {
        Set(text.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty })
    }

    /// The command line with bare on/off flags given a value, because `Settings` reads every flag
    /// as `--name value`: `--no-auth --port 0` must not take `--port` as the value of `--no-auth`.
    static func normalizedArguments(_ arguments: [String]) -> [String] {
        let switches: Set<String> = ["--no-auth"]
        var result: [String] = []
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            let next = index + 1 < arguments.count ? arguments[index + 1] : nil
            if switches.contains(argument), next.map({ $0.hasPrefix("--") }) ?? true {
                result.append(argument + "=1")
            } else {
                result.append(argument)
            }
            index += 1
        }
        return result
    }
}
