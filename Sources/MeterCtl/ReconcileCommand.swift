import Daemon
import Foundation
import Reconciliation
import Wire

/// `meterctl reconcile`: one reconciliation pass now, our accepted ledger (meter-query) against
/// the marketplace's usage events, per usage day, resource and dimension. The submitter runs the
/// same pass periodically (docs/OPERATING.md).
enum ReconcileCommand {
    static let from = Option(
        "from", .value("DAY"), "the first usage day (UTC), such as 2024-03-01", fallback: .computed("a week before --to"))
    static let to = Option(
        "to", .value("DAY"), "the last usage day, included",
        fallback: .computed("the last day that ended 26 hours of log time ago (the marketplace takes usage up to 24 hours late)"))
    static let marketplaceURL = Option(
        "marketplace-url", .value("URL"), "the metering service (credentials from AZURE_METERING_MARKETPLACE_*)",
        environment: "METERING_MARKETPLACE_URL",
        fallback: .computed("the stack's emulator (run/emulator.addr), as meterctl up gives the submitter"))

    static let command = Command(
        name: "reconcile",
        summary: "compare what we recorded accepted with the marketplace's usage events, per day, resource and dimension",
        details: """
            Reads the accepted ledger from meter-query and GET /api/usageEvents from the marketplace (a token
            from the same service principal or managed identity as meter-submitter), and lists every day,
            resource and dimension where they differ: usage the marketplace lacks or holds beyond ours,
            other quantities, or a marketplace status of Rejected or Mismatch. Exits 1 when any differ.
            """,
        options: [from, to, marketplaceURL, .json, .home, .querySocket],
        examples: ["meterctl reconcile --from 2024-03-01 --to 2024-03-07", "meterctl reconcile --json"],
        run: { try run($0) })

    static func run(_ invocation: Invocation) throws {
        let reconciler = Reconciler(
            access: try access(home: invocation.home, environment: invocation.environment, url: invocation.given(marketplaceURL)),
            querySocket: invocation.path(.querySocket)!)
        let day = Timestamp.microsecondsPerDay
        var last: Timestamp
        if let text = invocation.value(to) {
            last = try Self.day(text, "--to")
        } else {
            guard let time = try reconciler.queryTime(),
                let settled = Reconciler.settledDays(asOf: time, settleHours: 26, lookbackDays: 7)
            else { throw MeterCtl.Failure("meter-query's log has no complete usage day yet; give --from and --to") }
            last = settled.to.adding(microseconds: -day)
        }
        let first = try invocation.value(from).map { try Self.day($0, "--from") } ?? last.adding(microseconds: -6 * day)
        guard first <= last else { throw UsageError("--from must not be after --to") }
        let report = try reconciler.run(from: first, to: last.adding(microseconds: day))
        if invocation.flag(.json) {
            MeterCtl.printJSON(report.json())
        } else {
            print(text(report), terminator: "")
        }
        if !report.mismatches.isEmpty {
            throw MeterCtl.Failure("\(report.mismatches.count) mismatches with the marketplace")
        }
    }

    /// The report for people: a line of totals, then one line per mismatch.
    static func text(_ report: ReconciliationReport) -> String {
        let json = report.json()
        var out =
            "reconciled \(json["from"]?.stringValue ?? "?") to \(json["to"]?.stringValue ?? "?") (our ledger as of \(json["asOf"]?.stringValue ?? "?")): \(report.checked) (day, resource, dimension) compared, \(report.matched) agree (\(report.pending) not processed by the marketplace yet), \(report.mismatches.count) differ\n"
        for mismatch in report.mismatches { out += "  \(mismatch.kind.rawValue): \(mismatch.text)\n" }
        return out
    }

    static func day(_ text: String, _ flag: String) throws -> Timestamp {
        guard text.utf8.count == 10, let day = Timestamp(iso8601: text + "T00:00:00Z") else {
            throw UsageError("\(flag) takes a UTC date such as 2024-03-01, not \"\(text)\"")
        }
        return day
    }

    /// The marketplace and its credentials: `url` or the environment's, or else the emulator of
    /// the stack at `home`.
    static func access(home: String, environment: [String: String], url: String?) throws -> MarketplaceAccess {
        var environment = environment
        if let url { environment["METERING_MARKETPLACE_URL"] = url }
        if environment["METERING_MARKETPLACE_URL"]?.isEmpty != false {
            environment["METERING_MARKETPLACE_URL"] = nil
            let addressFile = home + "/run/emulator.addr"
            guard
                let address = (try? String(contentsOfFile: addressFile, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines),
                address.hasPrefix("http")
            else {
                throw MeterCtl.Failure(
                    "no marketplace: set METERING_MARKETPLACE_URL (or --marketplace-url), or run the stack's emulator (\(addressFile))")
            }
            environment = Up.marketplaceEnvironment(environment, emulator: address)
        }
        var settings = try Settings(arguments: [], environment: environment)
        return try MarketplaceAccess(settings: &settings)
    }
}
