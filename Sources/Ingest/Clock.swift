import Foundation
import Synchronization
import Wire

/// Ingest's business clock (DESIGN.md §4.1): the system clock, or a manual clock that moves only
/// by `advance-clock` (tests, demos, backfills) and never backwards.
final class Clock: Sendable {
    enum Mode: Sendable {
        case system
        case manual
    }

    let mode: Mode
    private let manualTime: Mutex<Timestamp>

    init(mode: Mode, start: Timestamp) {
        self.mode = mode
        self.manualTime = Mutex(start)
    }

    var now: Timestamp {
        switch mode {
        case .system: return Timestamp(microseconds: Int64(Date().timeIntervalSince1970 * 1_000_000))
        case .manual: return manualTime.withLock { $0 }
        }
    }

    /// Moves the manual clock to `time`; fails when that is in the past.
    func advance(to time: Timestamp) -> Result<Timestamp, WireError> {
        manualTime.withLock { current in
            guard time >= current else {
                return .failure(
                    WireError(.conflict, "the clock is at \(current.iso8601); it never moves backwards (asked for \(time.iso8601))"))
            }
            current = time
            return .success(time)
        }
    }
}
