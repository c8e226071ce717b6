import AdapterKit
import Crypto
import Daemon
import Foundation
import Metrics
import Wire

/// How `meter-query` runs: from flags and `METERING_*` variables (DESIGN.md §6.1).
struct QueryConfiguration {
    /// Where Prometheus metrics are served (`METERING_METRICS_ADDR`), nil when off.
    var metrics: MetricsAddress?
    var home: String
    var ingestSocket: String
    var socket: String
    var dataDirectory: String
    var snapshotEveryRecords: Int
    var snapshotEverySeconds: Int
    var snapshotsKept: Int
    var maximumFrameBytes: Int
    var maximumWatchers: Int
    /// The read-only HTTP endpoint's address (the customer run-rate page), or nil when it is off.
    var http: (host: String, port: Int)?
    /// Where the run-rate page's token secret lives (read only when `http` is on).
    var tokenSecretFile: String
    /// The usage API's address (billing adapters), or nil when it is off.
    var adapterHTTP: (host: String, port: Int)?
    /// The billing adapters' credential file (read only when `adapterHTTP` is on).
    var adapterCredentials: String
    /// Days of log time a usage record stays readable after its hour closed.
    var usageRetentionDays: Int

    /// Where the usage API's bound address is written, for tests and scripts.
    var adapterAddressFile: String { home + "/run/query-adapters.addr" }

    static let usage = """
        meter-query: read models of the metering log (run-rate, usage records, audit, ledger).

        Settings (flag, environment variable, default):
          --home               METERING_HOME                     ./.metering
          --ingest-socket      METERING_INGEST_SOCKET            $METERING_HOME/run/ingest.sock
          --socket             METERING_QUERY_SOCKET             $METERING_HOME/run/query.sock
          --data               METERING_QUERY_DATA               $METERING_HOME/data/query
          --snapshot-records   METERING_QUERY_SNAPSHOT_RECORDS   100000 (records between snapshots)
          --snapshot-seconds   METERING_QUERY_SNAPSHOT_SECONDS   3600 (log time between snapshots)
          --snapshots-kept     METERING_QUERY_SNAPSHOTS_KEPT     3
          --max-watchers       METERING_QUERY_MAX_WATCHERS       1024 (open `watch` streams)
          --max-frame-bytes    METERING_MAX_FRAME_BYTES          16777216
          --http               METERING_QUERY_HTTP               off, or HOST:PORT (e.g. 127.0.0.1:8090): the run-rate page
          --token-secret-file  METERING_QUERY_TOKEN_SECRET_FILE  $METERING_HOME/secrets/query-token.key
        \(MetricsAddress.usageLine)
          --adapter-http       METERING_QUERY_ADAPTER_HTTP       off, or HOST:PORT (e.g. 127.0.0.1:8092): the usage API for billing adapters
          --adapter-credentials METERING_ADAPTER_CREDENTIALS     $METERING_HOME/data/adapters/credentials.json (meterctl adapters)
          --usage-retention-days METERING_QUERY_USAGE_RETENTION_DAYS 40 (log days a usage record stays readable)

        Under systemd the socket comes from the .socket unit (FileDescriptorName=query). Each replica
        folds every partition of the log into its own data directory.
        """

    init(settings: inout Settings) throws(SettingsError) {
        home = settings.home()
        ingestSocket = Settings.absolute(settings.string("ingest-socket", "METERING_INGEST_SOCKET", default: home + "/run/ingest.sock"))
        socket = Settings.absolute(settings.string("socket", "METERING_QUERY_SOCKET", default: home + "/run/query.sock"))
        dataDirectory = Settings.absolute(settings.string("data", "METERING_QUERY_DATA", default: home + "/data/query"))
        snapshotEveryRecords = try settings.integer(
            "snapshot-records", "METERING_QUERY_SNAPSHOT_RECORDS", default: 100_000, range: 1...100_000_000)
        snapshotEverySeconds = try settings.integer(
            "snapshot-seconds", "METERING_QUERY_SNAPSHOT_SECONDS", default: 3600, range: 1...31_536_000)
        snapshotsKept = try settings.integer("snapshots-kept", "METERING_QUERY_SNAPSHOTS_KEPT", default: 3, range: 1...100)
        maximumWatchers = try settings.integer("max-watchers", "METERING_QUERY_MAX_WATCHERS", default: 1024, range: 0...100_000)
        maximumFrameBytes = try settings.integer(
            "max-frame-bytes", "METERING_MAX_FRAME_BYTES", default: FrameEncoder.defaultMaximumFrameLength, range: 1024...(256 << 20))
        http = try Self.address(settings.string("http", "METERING_QUERY_HTTP", default: "off"), "METERING_QUERY_HTTP", example: 8090)
        tokenSecretFile = AccessTokenSecret.path(&settings, home: home)
        metrics = try MetricsAddress.setting(&settings)
        adapterHTTP = try Self.address(
            settings.string("adapter-http", "METERING_QUERY_ADAPTER_HTTP", default: "off"), "METERING_QUERY_ADAPTER_HTTP", example: 8092)
        adapterCredentials = Settings.absolute(
            settings.string("adapter-credentials", AdapterCredentialStore.variable, default: AdapterCredentialStore.defaultPath(home: home))
        )
        usageRetentionDays = try settings.integer(
            "usage-retention-days", "METERING_QUERY_USAGE_RETENTION_DAYS", default: 40, range: 1...3650)
        try settings.rejectUnknownFlags()
    }

    /// `off` (nil) or `HOST:PORT`.
    static func address(_ text: String, _ variable: String, example: Int) throws(SettingsError) -> (host: String, port: Int)? {
        guard text != "off" else { return nil }
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port),
            !text[..<colon].isEmpty
        else {
            throw SettingsError("invalid \(variable)=\"\(text)\": expected \"off\" or HOST:PORT such as 127.0.0.1:\(example)")
        }
        return (String(text[..<colon]), port)
    }
}
