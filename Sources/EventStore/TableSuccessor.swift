import Foundation
import SystemIO

/// The next, larger idempotency table, made on a background thread while the current one still
/// has room. Making a table means allocating its file's blocks and mapping every page, which is
/// the kernel zeroing up to hundreds of megabytes (134 to 292 ms for 4 M slots on the benchmark's
/// VM); made ahead, it no longer stops the commit whose key fills the current table, and growing
/// only moves the entries.
///
/// One table at a time: a request for another size while one is being made is ignored (growing
/// then makes its table itself, as it did before there was a successor).
final class TableSuccessor: @unchecked Sendable {
    private static let queue = DispatchQueue(label: "idempotency-table-successor", qos: .utility)
    /// A condition, not a `Mutex`: `take` waits here for a table being made.
    private let condition = NSCondition()
    // Guarded by `condition`.
    private var slots = 0
    private var making = false
    private var made: IdempotencyTable?
    /// `discard` was called while the table was being made: it is dropped once made.
    private var discarded = false

    /// Starts making a table of `slots` slots with `make` on a background thread, unless one of
    /// that size is made or being made already, or one of another size is being made.
    func prepare(slots: Int, make: @escaping @Sendable () throws(SystemError) -> IdempotencyTable) {
        condition.lock()
        defer { condition.unlock() }
        guard self.slots != slots, !making else { return }
        self.slots = slots
        making = true
        made = nil
        Self.queue.async { [self] in
            // A failure is not kept: growing then tries itself and reports why it could not.
            let table = try? make()
            condition.withLock {
                if discarded, let table {
                    Self.drop(table)
                } else {
                    made = table
                }
                discarded = false
                making = false
                condition.broadcast()
            }
        }
    }

    /// The table of `slots` slots made ahead, waiting for it while it is being made; nil when
    /// none of that size was started or making it failed. Either way the successor is empty after.
    func take(slots: Int) -> IdempotencyTable? {
        condition.lock()
        defer { condition.unlock() }
        while making { condition.wait() }
        let table = self.slots == slots ? made : nil
        self.slots = 0
        made = nil
        return table
    }

    /// Drops the table made ahead, or the one being made once it is (the load went back down: a
    /// sweep took keys out of the window), with its file.
    func discard() {
        condition.lock()
        defer { condition.unlock() }
        slots = 0
        if making {
            discarded = true
        } else if let made {
            Self.drop(made)
            self.made = nil
        }
    }

    /// A table made ahead and not used: its file (still at the path's `.new`) is removed and its
    /// memory unmapped, on the background thread.
    private static func drop(_ table: IdempotencyTable) {
        if let path = table.path { IdempotencyTable.discardLeftover(of: path) }
        release(table)
    }

    /// Drops `table` on the background thread: unmapping it and closing a file that was replaced
    /// (freeing its blocks) happen there.
    static func release(_ table: IdempotencyTable) {
        queue.async { withExtendedLifetime(table) {} }
    }

    /// Whether a table is being made or waits to be taken (for tests).
    var isPrepared: Bool { condition.withLock { slots != 0 } }
}
