import Foundation
public import Wire

/// A connection in memory: requests go in as frame payloads, the frames a handler sends are kept
/// to read back. Handlers are tested with it from bytes, without processes or sockets, as they
/// run under the server: one request at a time, `done` ending each.
///
/// Its output has no high-water mark (`waitForOutputSpace` answers at once) unless one is set,
/// so a test can also hold a stream back and check that it waits.
public final class MemoryConnection: Connection, @unchecked Sendable {
    public let listener: String
    public let peer: PeerCredentials
    /// A condition variable, not just a lock: tests wait on it for frames and finished requests,
    /// and a held-back stream waits on it for output space.
    private let condition = NSCondition()
    // Guarded by `condition`.
    private var frames: [[UInt8]] = []
    private var taken = 0
    private var closed = false
    private var streaming = false
    private var finished = 0
    private var closeHandlers: [@Sendable () -> Void] = []
    private var heldBack = false

    /// A connection as if it arrived on the listener named `listener`.
    public init(listener: String, peer: PeerCredentials = PeerCredentials(pid: 0, uid: 0, gid: 0)) {
        self.listener = listener
        self.peer = peer
    }

    public var isClosed: Bool { condition.withLock { closed } }

    /// Whether the current request was marked as a stream.
    public var isStreaming: Bool { condition.withLock { streaming } }

    public func markStreaming() { condition.withLock { streaming = true } }

    public func onClose(_ handler: @escaping @Sendable () -> Void) {
        let runNow = condition.withLock { () -> Bool in
            if closed { return true }
            closeHandlers.append(handler)
            return false
        }
        if runNow { handler() }
    }

    public func send(_ payload: [UInt8]) {
        condition.withLock {
            guard !closed else { return }
            frames.append(payload)
            condition.broadcast()
        }
    }

    /// While `holdBack` is true, `waitForOutputSpace` blocks as if the peer read nothing.
    public func holdOutput(_ holdBack: Bool) {
        condition.withLock {
            heldBack = holdBack
            condition.broadcast()
        }
    }

    public func waitForOutputSpace() -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while heldBack && !closed { condition.wait() }
        return !closed
    }

    public func close() {
        let handlers = condition.withLock { () -> [@Sendable () -> Void] in
            guard !closed else { return [] }
            closed = true
            condition.broadcast()
            defer { closeHandlers = [] }
            return closeHandlers
        }
        for handler in handlers { handler() }
    }

    /// Hands `payload` to `handler` as the server would, and waits (up to `timeout` seconds)
    /// until the handler called `done`. False when it did not in time (a stream, or a hang).
    @discardableResult
    public func request(
        _ payload: [UInt8], to handler: some RequestHandler, maximumDepth: Int = JSONParser.defaultMaximumDepth, timeout: Double = 10
    ) -> Bool {
        let before = condition.withLock { finished }
        handler.serve(frame: payload, on: self, maximumDepth: maximumDepth) { [self] in
            condition.withLock {
                finished += 1
                condition.broadcast()
            }
        }
        let deadline = Date(timeIntervalSinceNow: timeout)
        condition.lock()
        defer { condition.unlock() }
        while finished == before {
            if !condition.wait(until: deadline) { return false }
        }
        return true
    }

    /// `request` with a JSON request, answered with the first frame it sent, parsed (nil when it
    /// sent none in time).
    public func call(_ request: Request, to handler: some RequestHandler, timeout: Double = 10) -> JSONValue? {
        let first = condition.withLock { frames.count }
        _ = self.request(request.bytes, to: handler, timeout: timeout)
        return next(after: first, timeout: timeout)
    }

    /// The frames sent so far that no `take` has returned yet.
    public func take() -> [[UInt8]] {
        condition.withLock {
            defer { taken = frames.count }
            return Array(frames[taken...])
        }
    }

    /// Waits (up to `timeout` seconds) until `count` frames have been sent in all, and returns
    /// them all; fewer when the time ran out.
    public func waitForFrames(_ count: Int, timeout: Double = 10) -> [[UInt8]] {
        let deadline = Date(timeIntervalSinceNow: timeout)
        condition.lock()
        defer { condition.unlock() }
        while frames.count < count {
            if !condition.wait(until: deadline) { break }
        }
        return frames
    }

    private func next(after index: Int, timeout: Double) -> JSONValue? {
        let frames = waitForFrames(index + 1, timeout: timeout)
        guard frames.count > index else { return nil }
        condition.withLock { taken = max(taken, index + 1) }
        return try? JSONParser.parse(frames[index])
    }
}
