public import Foundation

/// How far reading the stream at start has come, for the log: a stream of millions of messages
/// takes minutes to read, and an operator should see it move rather than a silent process. Pure:
/// it is told each message read and the time, and gives a line at most every `interval`.
public struct StreamReadingProgress: Sendable {
    /// The stream's name, as the lines name it.
    public let stream: String
    /// The sequence of the stream's last message when reading started: what "of" counts to.
    public let last: UInt64
    public let interval: TimeInterval
    private let started: Date
    private var nextLine: Date

    public init(stream: String, last: UInt64, interval: TimeInterval = 5, started: Date) {
        self.stream = stream
        self.last = last
        self.interval = interval
        self.started = started
        nextLine = started.addingTimeInterval(interval)
    }

    /// The line to log now that message `sequence` was read, if `interval` has passed since the
    /// start or the last line.
    public mutating func read(_ sequence: UInt64, now: Date) -> String? {
        guard now >= nextLine else { return nil }
        nextLine = now.addingTimeInterval(interval)
        let percent = last == 0 ? 100 : min(100, Int(sequence * 100 / last))
        let elapsed = Int(now.timeIntervalSince(started).rounded())
        return "reading the stream \(stream): message \(sequence) of \(last) (\(percent)%) after \(elapsed) s"
    }
}
