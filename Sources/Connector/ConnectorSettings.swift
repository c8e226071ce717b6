import Daemon
import Foundation
import Metrics
import Wire

/// How `meter-connector` runs: from flags and `METERING_*` variables; what it reads is in the
/// configuration file they name.
struct ConnectorSettings {
    /// Where Prometheus metrics are served (`METERING_METRICS_ADDR`), nil when off.
    var metrics: MetricsAddress?
    /// What "now" is when deciding that an hour's grace has passed.
    enum Clock: String, CaseIterable {
        /// meter-ingest's business clock (its `status` time): the clock that bills, manual in tests.
        case ingest
        /// This host's clock.
        case system
    }

    /// Test hooks that kill the process (SIGKILL) at an exact point of an emission.
    enum Failpoint: String, CaseIterable {
        /// After the outbox is persisted, before it is sent to ingest.
        case beforeAppend = "before-append"
        /// After ingest acknowledged an append, before the acknowledgement is persisted.
        case afterAppend = "after-append"
    }

    var home: String
    var ingestSocket: String
    var configPath: String
    var stateDirectory: String
    var statusPath: String
    var clock: Clock
    var failpoint: Failpoint?

    static let usage = """
        meter-connector: turns records of log files and commands (API-gateway access logs, job logs)
        into UsageReported events per meter, subscription and hour, appended to meter-ingest.
        docs/CONNECTORS.md describes the configuration file.

        Settings (flag, environment variable, default):
          --home         METERING_HOME                 ./.metering
          --socket       METERING_INGEST_SOCKET        $METERING_HOME/run/ingest.sock
          --config       METERING_CONNECTOR_CONFIG     $METERING_HOME/connector.json
          --state        METERING_CONNECTOR_STATE      $METERING_HOME/data/connector (watermarks)
          --status-file  METERING_CONNECTOR_STATUS     $METERING_HOME/run/connector.status.json
          --clock        METERING_CONNECTOR_CLOCK      ingest (meter-ingest's business clock) or system
          --failpoint    METERING_CONNECTOR_FAILPOINT  (tests only) before-append or after-append: SIGKILL itself there
        \(MetricsAddress.usageLine)
        """

    init(settings: inout Settings) throws(SettingsError) {
        home = settings.home()
        ingestSocket = Settings.absolute(settings.string("socket", "METERING_INGEST_SOCKET", default: home + "/run/ingest.sock"))
        configPath = Settings.absolute(settings.string("config", "METERING_CONNECTOR_CONFIG", default: home + "/connector.json"))
        stateDirectory = Settings.absolute(settings.string("state", "METERING_CONNECTOR_STATE", default: home + "/data/connector"))
        statusPath = Settings.absolute(
            settings.string("status-file", "METERING_CONNECTOR_STATUS", default: home + "/run/connector.status.json"))
        clock = try settings.choice("clock", "METERING_CONNECTOR_CLOCK", default: Clock.ingest)
        if settings.isGiven("failpoint", "METERING_CONNECTOR_FAILPOINT") {
            failpoint = try settings.choice("failpoint", "METERING_CONNECTOR_FAILPOINT", default: Failpoint.beforeAppend)
        }
        metrics = try MetricsAddress.setting(&settings)
        try settings.rejectUnknownFlags()
    }

    /// Reads and checks the configuration file; the error names the file and the member.
    func loadConfig() throws(SettingsError) -> ConnectorConfig {
        guard let data = FileManager.default.contents(atPath: configPath) else {
            throw SettingsError(
                "cannot read the connector configuration \(configPath) (METERING_CONNECTOR_CONFIG): \(String(cString: strerror(errno)))")
        }
        guard let text = String(data: data, encoding: .utf8) else { throw SettingsError("\(configPath): not UTF-8 text") }
        do {
            return try ConnectorConfig.parse(text)
        } catch {
            throw SettingsError("\(configPath): \(error)")
        }
    }
}
