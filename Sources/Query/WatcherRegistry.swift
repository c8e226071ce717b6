import Foundation
import Synchronization
import Transport
import Wire

/// The open `watch` streams: each waits for its subscription to change and then sends the new
/// run-rate. Changes that come while a frame is still being sent are folded into the next frame, so
/// a slow reader gets the latest numbers, never a growing backlog.
final class WatcherRegistry: Sendable {
    private let state = Mutex(State())
    let maximum: Int

    private struct State {
        var watchers: [Int: [String: [Watcher]]] = [:]
        var count = 0
    }

    init(maximum: Int) { self.maximum = maximum }

    final class Watcher: @unchecked Sendable {
        let condition = NSCondition()
        var dirty = true
        var closed = false
    }

    var openCount: Int { state.withLock { $0.count } }

    /// Streams `render()` on `connection` now and whenever subscription `key` of `partition`
    /// changes, until the peer hangs up. False when the registry is full.
    func watch(partition: Int, key: String, connection: any Connection, render: @escaping @Sendable () -> [UInt8]) -> Bool {
        let watcher = Watcher()
        let added = state.withLock { state -> Bool in
            guard state.count < maximum else { return false }
            state.watchers[partition, default: [:]][key, default: []].append(watcher)
            state.count += 1
            return true
        }
        guard added else { return false }
        connection.markStreaming()
        connection.onClose { [self] in
            watcher.condition.withLock {
                watcher.closed = true
                watcher.condition.signal()
            }
            state.withLock { state in
                state.watchers[partition]?[key]?.removeAll { $0 === watcher }
                if state.watchers[partition]?[key]?.isEmpty == true { state.watchers[partition]?[key] = nil }
                state.count -= 1
            }
        }
        let thread = Thread {
            while true {
                let closed = watcher.condition.withLock { () -> Bool in
                    while !watcher.dirty && !watcher.closed { watcher.condition.wait() }
                    watcher.dirty = false
                    return watcher.closed
                }
                if closed || connection.isClosed { return }
                connection.send(render())
                guard connection.waitForOutputSpace() else { return }
            }
        }
        thread.name = "query-watch"
        thread.stackSize = 256 << 10
        thread.start()
        return true
    }

    /// Wakes the watchers of `keys` in `partition`.
    func changed(partition: Int, keys: Set<String>) {
        let woken = state.withLock { state -> [Watcher] in
            guard let byKey = state.watchers[partition] else { return [] }
            return keys.flatMap { byKey[$0] ?? [] }
        }
        for watcher in woken {
            watcher.condition.withLock {
                watcher.dirty = true
                watcher.condition.signal()
            }
        }
    }
}
