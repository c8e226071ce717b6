import Daemon
import Foundation
import Metrics
import Wire

/// How `meter-submitter` runs: from flags and `METERING_*` / `AZURE_METERING_*` variables.
struct SubmitterConfiguration {
    /// Where Prometheus metrics are served (`METERING_METRICS_ADDR`), nil when off.
    var metrics: MetricsAddress?
    /// How the submitter gets its bearer token.
    enum Credentials: CustomStringConvertible {
        /// A service principal (SaaS): client credentials against Microsoft Entra ID.
        case servicePrincipal(tenant: String, clientId: String, secret: String, tokenURL: URL)
        /// The managed identity of the host (managed applications): IMDS, or App Service's
        /// `IDENTITY_ENDPOINT`/`IDENTITY_HEADER`.
        case managedIdentity

        /// Never shows the secret.
        var description: String {
            switch self {
            case .servicePrincipal(let tenant, let clientId, _, let tokenURL):
                return "service principal \(clientId) of tenant \(tenant) via \(tokenURL.absoluteString)"
            case .managedIdentity: return "managed identity"
            }
        }
    }

    var home: String
    var aggregatorSockets: [String]
    var ingestAdminSocket: String
    var marketplaceURL: URL
    var credentials: Credentials
    var interval: Double
    var requestTimeout: Double
    var maximumBackoff: Double

    static let resource = "20e940b3-4c77-4b0b-9a53-9e16a1b010a7"

    static let usage = """
        meter-submitter: reports ready usage to the marketplace metering API, 25 items a batch, and
        appends every outcome to the log.

        Settings (flag, environment variable, default):
          --home                 METERING_HOME                      ./.metering
          --aggregator-sockets   METERING_AGGREGATOR_SOCKETS        $METERING_HOME/run/aggregator.sock (comma-separated: one per replica)
          --ingest-admin-socket  METERING_INGEST_ADMIN_SOCKET       $METERING_HOME/run/ingest-admin.sock
          --marketplace-url      METERING_MARKETPLACE_URL           https://marketplaceapi.microsoft.com
          --token-url            METERING_TOKEN_URL                 https://login.microsoftonline.com/<tenant>/oauth2/token
          --interval             METERING_SUBMIT_INTERVAL           10 (seconds between passes)
          --timeout              METERING_SUBMIT_TIMEOUT            30 (seconds per HTTP request)
          --max-backoff          METERING_SUBMIT_MAX_BACKOFF        300 (seconds)
        \(MetricsAddress.usageLine)
          AZURE_METERING_MARKETPLACE_TENANT_ID, _CLIENT_ID, _CLIENT_SECRET: a service principal
          (all three, or none for the managed identity).
        """

    init(settings: inout Settings) throws(SettingsError) {
        home = settings.home()
        let sockets = settings.string("aggregator-sockets", "METERING_AGGREGATOR_SOCKETS", default: home + "/run/aggregator.sock")
        aggregatorSockets = sockets.split(separator: ",").map { Settings.absolute(String($0).trimmingCharacters(in: .whitespaces)) }
        guard !aggregatorSockets.isEmpty else { throw SettingsError("METERING_AGGREGATOR_SOCKETS is empty") }
        ingestAdminSocket = Settings.absolute(
            settings.string("ingest-admin-socket", "METERING_INGEST_ADMIN_SOCKET", default: home + "/run/ingest-admin.sock"))
        let base = settings.string("marketplace-url", "METERING_MARKETPLACE_URL", default: "https://marketplaceapi.microsoft.com")
        guard let url = URL(string: base), let scheme = url.scheme, ["http", "https"].contains(scheme), url.host != nil else {
            throw SettingsError(
                "invalid METERING_MARKETPLACE_URL=\"\(base)\": expected an http(s) URL such as https://marketplaceapi.microsoft.com")
        }
        marketplaceURL = url
        let tenant = settings.optionalString("tenant-id", "AZURE_METERING_MARKETPLACE_TENANT_ID")
        let clientId = settings.optionalString("client-id", "AZURE_METERING_MARKETPLACE_CLIENT_ID")
        let secret = settings.optionalString("client-secret", "AZURE_METERING_MARKETPLACE_CLIENT_SECRET")
        switch (tenant, clientId, secret) {
        case (let tenant?, let clientId?, let secret?):
            let defaultTokenURL = "https://login.microsoftonline.com/\(tenant)/oauth2/token"
            let text = settings.string("token-url", "METERING_TOKEN_URL", default: defaultTokenURL)
            guard let tokenURL = URL(string: text), tokenURL.scheme != nil, tokenURL.host != nil else {
                throw SettingsError("invalid METERING_TOKEN_URL=\"\(text)\": expected an http(s) URL")
            }
            credentials = .servicePrincipal(tenant: tenant, clientId: clientId, secret: secret, tokenURL: tokenURL)
        case (nil, nil, nil):
            _ = settings.optionalString("token-url", "METERING_TOKEN_URL")
            credentials = .managedIdentity
        default:
            let given = [
                ("AZURE_METERING_MARKETPLACE_TENANT_ID", tenant), ("AZURE_METERING_MARKETPLACE_CLIENT_ID", clientId),
                ("AZURE_METERING_MARKETPLACE_CLIENT_SECRET", secret),
            ].filter { $0.1 != nil }.map(\.0)
            throw SettingsError(
                "a service principal needs all of AZURE_METERING_MARKETPLACE_TENANT_ID, _CLIENT_ID and _CLIENT_SECRET (only \(given.joined(separator: ", ")) given), or none of them for the managed identity"
            )
        }
        interval = Double(try settings.integer("interval-ms", "METERING_SUBMIT_INTERVAL_MS", default: -1, range: -1...3_600_000)) / 1000
        if interval < 0 {
            interval = Double(try settings.integer("interval", "METERING_SUBMIT_INTERVAL", default: 10, range: 1...86_400))
        } else {
            interval = max(interval, 0.01)
        }
        requestTimeout = Double(try settings.integer("timeout", "METERING_SUBMIT_TIMEOUT", default: 30, range: 1...600))
        maximumBackoff = Double(try settings.integer("max-backoff", "METERING_SUBMIT_MAX_BACKOFF", default: 300, range: 1...3600))
        metrics = try MetricsAddress.setting(&settings)
        try settings.rejectUnknownFlags()
    }
}
