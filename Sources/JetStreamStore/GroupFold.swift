/// How a reader of the stream turns its messages into commit groups. Pure: fed with messages in
/// stream order, it returns each group once all its chunks are in.
///
/// A commit group larger than a NATS message is published as chunks `0/n … n-1/n`, chunk `k`
/// with `Nats-Expected-Last-Sequence` set to chunk `k-1`'s sequence, so a complete group's chunks
/// are always consecutive in the stream. A group interrupted by another message (its writer lost
/// the race, or died) can therefore never complete: it is dropped by every reader alike, and its
/// writer decides its events again.
public struct GroupFold: Sendable {
    /// One message of a group, as published.
    public struct Chunk: Sendable, Hashable {
        public var streamSequence: UInt64
        public var group: String
        public var index: Int
        public var count: Int
        public var payload: [UInt8]

        public init(streamSequence: UInt64, group: String, index: Int, count: Int, payload: [UInt8]) {
            self.streamSequence = streamSequence
            self.group = group
            self.index = index
            self.count = count
            self.payload = payload
        }
    }

    private var pending: [Chunk] = []
    /// Groups dropped so far because another message came between their chunks.
    public private(set) var abandoned = 0

    public init() {}

    /// Whether a group is waiting for more chunks.
    public var isWaiting: Bool { !pending.isEmpty }

    /// Takes the next message of the stream; returns the group it completes, if any.
    public mutating func take(_ chunk: Chunk) -> [Chunk]? {
        if let first = pending.first {
            if chunk.group == first.group && chunk.index == pending.count && chunk.count == first.count {
                pending.append(chunk)
            } else {
                abandoned += 1
                pending = []
                if chunk.index == 0 { pending = [chunk] }
            }
        } else if chunk.index == 0 {
            pending = [chunk]
        }
        // A chunk k > 0 with nothing pending is the rest of a group already dropped.
        guard let first = pending.first, pending.count == first.count else { return nil }
        defer { pending = [] }
        return pending
    }

    /// Takes a message that is not a chunk (it ends any group waiting).
    public mutating func interrupt() {
        if !pending.isEmpty { abandoned += 1 }
        pending = []
    }

    /// Parses `k/n` as a chunk's position; nil when malformed.
    public static func position(_ text: String) -> (index: Int, count: Int)? {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let index = Int(parts[0]), let count = Int(parts[1]), count >= 1, count <= 1 << 20, index >= 0,
            index < count
        else { return nil }
        return (index, count)
    }
}
