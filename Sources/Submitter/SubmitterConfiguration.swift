import Daemon
import Foundation
import Metrics
import Reconciliation
import Wire

/// How `meter-submitter` runs: from flags and `METERING_*` / `AZURE_METERING_*` variables.
struct SubmitterConfiguration {
    /// Where Prometheus metrics are served (`METERING_METRICS_ADDR`), nil when off.
    var metrics: MetricsAddress?
    var home: String
    var aggregatorSockets: [String]
    var ingestAdminSocket: String
    /// The metering service and how to get its tokens.
    var marketplace: MarketplaceAccess
    var marketplaceURL: URL { marketplace.baseURL }
    var credentials: MarketplaceAccess.Credentials { marketplace.credentials }
    var interval: Double
    var requestTimeout: Double
    var maximumBackoff: Double
    /// meter-query's socket, for the accepted ledger the reconciliation compares.
    var querySocket: String
    /// Seconds between reconciliation passes; 0: none.
    var reconcileInterval: Int
    /// How many complete days each pass compares.
    var reconcileDays: Int
    /// A day is complete once the log time is this many hours past its end.
    var reconcileSettleHours: Int

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
          --query-socket         METERING_QUERY_SOCKET              $METERING_HOME/run/query.sock (the accepted ledger)
          --reconcile-interval   METERING_RECONCILE_INTERVAL        3600 (seconds between reconciliation passes; 0: none)
          --reconcile-days       METERING_RECONCILE_DAYS            7 (complete usage days each pass compares)
          --reconcile-settle-hours METERING_RECONCILE_SETTLE_HOURS  26 (log hours after a day's end before it is complete)
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
        marketplace = try MarketplaceAccess(settings: &settings)
        interval = Double(try settings.integer("interval-ms", "METERING_SUBMIT_INTERVAL_MS", default: -1, range: -1...3_600_000)) / 1000
        if interval < 0 {
            interval = Double(try settings.integer("interval", "METERING_SUBMIT_INTERVAL", default: 10, range: 1...86_400))
        } else {
            interval = max(interval, 0.01)
        }
        requestTimeout = Double(try settings.integer("timeout", "METERING_SUBMIT_TIMEOUT", default: 30, range: 1...600))
        maximumBackoff = Double(try settings.integer("max-backoff", "METERING_SUBMIT_MAX_BACKOFF", default: 300, range: 1...3600))
        metrics = try MetricsAddress.setting(&settings)
        querySocket = Settings.absolute(settings.string("query-socket", "METERING_QUERY_SOCKET", default: home + "/run/query.sock"))
        reconcileInterval = try settings.integer("reconcile-interval", "METERING_RECONCILE_INTERVAL", default: 3600, range: 0...604_800)
        reconcileDays = try settings.integer("reconcile-days", "METERING_RECONCILE_DAYS", default: 7, range: 1...90)
        reconcileSettleHours = try settings.integer(
            "reconcile-settle-hours", "METERING_RECONCILE_SETTLE_HOURS", default: 26, range: 0...240)
        try settings.rejectUnknownFlags()
    }
}
