import Foundation

/// Reads segment summaries with their keys, in order, on a Dispatch worker, a few ahead of the
/// thread that takes them: a rebuild of the idempotency index decodes the next segment's keys
/// while it inserts the keys of this one, and holds only the few read ahead.
final class SummaryReadAhead: @unchecked Sendable {
    /// How many summaries are read and not yet taken, at most.
    static let window = 2

    private let paths: [String]
    /// A condition, not a `Mutex`: both sides wait here.
    private let condition = NSCondition()
    // Guarded by `condition`: what was read and not taken (nil: unreadable), by position in
    // `paths`; how many were taken; whether the reading stops.
    private var read: [Int: SegmentSummary?] = [:]
    private var taken = 0
    private var stopped = false
    private var reading = false

    init(paths: [String]) {
        self.paths = paths
        guard !paths.isEmpty else { return }
        reading = true
        DispatchQueue.global().async { self.readAll() }
    }

    private func readAll() {
        condition.lock()
        for position in paths.indices {
            while !stopped && position - taken >= Self.window { condition.wait() }
            if stopped { break }
            condition.unlock()
            let summary = SegmentSummary.read(path: paths[position], keys: true)
            condition.lock()
            read[position] = .some(summary)
            condition.broadcast()
        }
        reading = false
        condition.broadcast()
        condition.unlock()
    }

    /// The summary at `position` (taken in order, each once), nil when it could not be read.
    func take(_ position: Int) -> SegmentSummary? {
        condition.lock()
        defer { condition.unlock() }
        precondition(position == taken && position < paths.count, "summaries are taken in order, each once")
        while read[position] == nil { condition.wait() }
        taken = position + 1
        condition.broadcast()
        return read.removeValue(forKey: position) ?? nil
    }

    /// Stops reading ahead and waits for the read under way (none is taken after).
    func stop() {
        condition.lock()
        stopped = true
        condition.broadcast()
        while reading { condition.wait() }
        read.removeAll()
        condition.unlock()
    }
}
