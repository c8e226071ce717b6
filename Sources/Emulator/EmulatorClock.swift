import Foundation
import HTTP
import Synchronization
import Transport
import Wire

/// The emulator's business clock: what "now" means for the 24-hour window and `messageTime`.
final class EmulatorClock: Sendable {
    typealias Mode = EmulatorConfiguration.ClockMode

    let mode: Mode
    /// meter-ingest's client socket, asked for its time in `ingest` mode.
    let ingestSocket: String
    private let manualTime = Mutex(Timestamp.epoch)

    init(mode: Mode, ingestSocket: String) {
        self.mode = mode
        self.ingestSocket = ingestSocket
    }

    /// The time now. In `ingest` mode this asks meter-ingest, so it fails (503: the caller may
    /// retry) when ingest does not answer.
    func now() throws(HTTPError) -> Timestamp {
        switch mode {
        case .system: return Self.systemTime()
        case .manual: return manualTime.withLock { $0 }
        case .ingest: return try ingestTime()
        }
    }

    /// Moves the manual clock to `time`; never backwards (409), and only in `manual` mode.
    func set(to time: Timestamp) throws(HTTPError) -> Timestamp {
        guard mode == .manual else {
            let source = mode == .ingest ? "follows meter-ingest (advance ingest's clock instead)" : "is the system clock"
            throw HTTPError(409, "the emulator's clock \(source); start it with --clock manual to set it")
        }
        return try manualTime.withLock { (current: inout Timestamp) throws(HTTPError) -> Timestamp in
            guard time >= current else {
                throw HTTPError(409, "the clock is at \(current.iso8601); it never moves backwards (asked for \(time.iso8601))")
            }
            current = time
            return time
        }
    }

    static func systemTime() -> Timestamp {
        Timestamp(microseconds: Int64(Date().timeIntervalSince1970 * 1_000_000))
    }

    private func ingestTime() throws(HTTPError) -> Timestamp {
        let answer: JSONObject
        do {
            let client = try UnixClient(path: ingestSocket)
            // A hung ingest must fail this call, not hang the submitter's connection forever.
            client.setReceiveTimeout(seconds: 5)
            answer = try client.call("status")
        } catch {
            throw HTTPError(503, "cannot read meter-ingest's clock from \(ingestSocket): \(error)")
        }
        guard let text = answer["time"]?.stringValue, let time = Timestamp(iso8601: text) else {
            throw HTTPError(503, "meter-ingest's status at \(ingestSocket) has no \"time\"")
        }
        return time
    }
}
