import Daemon
import Foundation
import Reconciliation
import Synchronization
import Wire

/// The submitter's periodic reconciliation: every `METERING_RECONCILE_INTERVAL` seconds, the last
/// `METERING_RECONCILE_DAYS` complete usage days of our accepted ledger against the marketplace's
/// usage events. The latest outcome is part of the submitter's status (`reconciliation`) and is
/// written whole to `$METERING_HOME/run/reconciliation.json`: where operators, metrics and
/// notifications read mismatches from.
final class ReconciliationPass: Sendable {
    let configuration: SubmitterConfiguration
    private let reconciler: Reconciler
    private let outcome = Mutex(Outcome())

    /// The latest pass's result, as the status shows it.
    private struct Outcome {
        var report: ReconciliationReport?
        var lastError: String?
        var lastAttempt: Date?
        var note: String?
    }

    /// At most this many mismatches are listed in the status (the report file has them all).
    static let listed = 20

    init(configuration: SubmitterConfiguration) {
        self.configuration = configuration
        reconciler = Reconciler(
            access: configuration.marketplace, querySocket: configuration.querySocket, timeout: configuration.requestTimeout)
    }

    var reportPath: String { configuration.home + "/run/reconciliation.json" }

    /// One pass now; its report, or nil when no day is complete yet or a side cannot be read.
    @discardableResult
    func run() -> ReconciliationReport? {
        outcome.withLock { $0.lastAttempt = Date() }
        do {
            guard let time = try reconciler.queryTime(),
                let (from, to) = Reconciler.settledDays(
                    asOf: time, settleHours: configuration.reconcileSettleHours, lookbackDays: configuration.reconcileDays)
            else {
                outcome.withLock { outcome in
                    outcome.note = "no complete usage day yet"
                    outcome.lastError = nil
                }
                return nil
            }
            let report = try reconciler.run(from: from, to: to)
            outcome.withLock { outcome in
                outcome.report = report
                outcome.lastError = nil
                outcome.note = nil
            }
            writeReport(report)
            if report.mismatches.isEmpty {
                Log.info(
                    "reconciliation \(report.json()["from"]?.stringValue ?? "")..\(report.json()["to"]?.stringValue ?? ""): \(report.checked) days, resources and dimensions agree with the marketplace (\(report.pending) not processed by it yet)"
                )
            } else {
                Log.warning(
                    "reconciliation found \(report.mismatches.count) mismatches with the marketplace; the first: \(report.mismatches[0].text) (all in \(reportPath))"
                )
            }
            return report
        } catch {
            outcome.withLock { $0.lastError = "\(error)" }
            Log.warning("reconciliation with the marketplace failed: \(error); will retry at the next pass")
            return nil
        }
    }

    /// Passes every interval until `isRunning` says stop, the first soon after start; `after`
    /// runs after each (the submitter rewrites its status).
    func serve(while isRunning: () -> Bool, after: () -> Void) {
        guard configuration.reconcileInterval > 0 else { return }
        var wait = min(Double(configuration.reconcileInterval), 5)
        while isRunning() {
            var waited = 0.0
            while waited < wait && isRunning() {
                Thread.sleep(forTimeInterval: min(0.1, wait - waited))
                waited += 0.1
            }
            guard isRunning() else { return }
            run()
            after()
            wait = Double(configuration.reconcileInterval)
        }
    }

    /// The status member: `state` (`off`, `waiting`, `ok`, `mismatches`, `failing`), the latest
    /// report with its first mismatches, and the last error.
    var statusJSON: JSONValue {
        guard configuration.reconcileInterval > 0 else { return ["state": "off"] }
        let (report, lastError, lastAttempt, note) = outcome.withLock { ($0.report, $0.lastError, $0.lastAttempt, $0.note) }
        var members: [JSONObject.Member] = []
        let state: String
        if lastError != nil {
            state = "failing"
        } else if let report {
            state = report.mismatches.isEmpty ? "ok" : "mismatches"
        } else {
            state = "waiting"
        }
        members.append(.init("state", .string(state)))
        members.append(.init("lastAttempt", Submitter.time(lastAttempt)))
        if let report { members += report.json(limit: Self.listed).objectValue?.members ?? [] }
        members.append(.init("lastError", lastError.map { .string($0) } ?? .null))
        if let note { members.append(.init("note", .string(note))) }
        members.append(.init("report", .string(reportPath)))
        return .object(JSONObject(members))
    }

    private func writeReport(_ report: ReconciliationReport) {
        let temporary = reportPath + ".tmp"
        if FileManager.default.createFile(atPath: temporary, contents: Data(JSONWriter.bytes(report.json()) + [0x0A])) {
            _ = rename(temporary, reportPath)
        }
    }
}
