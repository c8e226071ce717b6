import Wire

/// A connection's answers not sent yet, as frames (the 4-byte length, then the payload), in order.
///
/// Small frames are gathered in buffers of the queue's own; a large payload stays the array it was
/// handed in as, not copied, and goes out as one piece among several of one `sendmsg`. A follow
/// answer of thousands of records was copied before into the connection's buffer, then its unsent
/// rest to the front of that buffer each time the socket took part of it. It does no I/O, so it is
/// tested with byte arrays.
struct OutputQueue {
    /// Payloads from this size on are kept as they were handed in; smaller ones are copied into
    /// the queue's buffer, where one piece carries many of them.
    static let separatePayloadBytes = 16 << 10
    /// The most pieces handed to one write.
    static let maximumPieces = 8

    private var chunks: [[UInt8]] = []
    /// Whether each chunk is a buffer of the queue's own (else a payload as handed in).
    private var owned: [Bool] = []
    /// `chunks[first]` is the first with unsent bytes, `offset` of them sent already.
    private var first = 0
    private var offset = 0
    /// An emptied buffer of the queue's own, kept for the next frames (up to 1 MiB of room).
    private var spare: [UInt8] = []
    /// Bytes queued and not sent yet.
    private(set) var unsentBytes = 0

    var isEmpty: Bool { unsentBytes == 0 }

    /// Queues the frame carrying `payload` (which must not be longer than `UInt32.max`).
    mutating func append(frame payload: [UInt8]) {
        // Small frames go on at the end of the queue's own last buffer; a new one follows a payload.
        if owned.last != true {
            chunks.append(spare)
            owned.append(true)
            spare = []
        }
        if payload.count >= Self.separatePayloadBytes {
            FrameEncoder.appendHeader(length: payload.count, to: &chunks[chunks.count - 1])
            chunks.append(payload)
            owned.append(false)
        } else {
            FrameEncoder.append(payload, to: &chunks[chunks.count - 1])
        }
        unsentBytes += 4 + payload.count
    }

    /// Hands the first unsent bytes to `body` as up to `maximumPieces` pieces, in order, valid
    /// only during the call; `body` returns what it sent (then `markSent`), or an error.
    func withUnsentPieces<Result>(_ body: ([UnsafeRawBufferPointer]) -> Result) -> Result {
        var pieces: [UnsafeRawBufferPointer] = []
        pieces.reserveCapacity(Self.maximumPieces)
        return collect(from: first, into: &pieces, body)
    }

    /// Nests one `withUnsafeBytes` per chunk, so every piece is valid while `body` runs.
    private func collect<Result>(
        from index: Int, into pieces: inout [UnsafeRawBufferPointer], _ body: ([UnsafeRawBufferPointer]) -> Result
    ) -> Result {
        guard index < chunks.count, pieces.count < Self.maximumPieces else { return body(pieces) }
        return chunks[index].withUnsafeBytes { bytes in
            let piece = index == first ? UnsafeRawBufferPointer(rebasing: bytes[offset...]) : bytes
            if !piece.isEmpty { pieces.append(piece) }
            return collect(from: index + 1, into: &pieces, body)
        }
    }

    /// Drops the first `count` unsent bytes (at most all of them): they were sent.
    mutating func markSent(_ count: Int) {
        var left = min(max(0, count), unsentBytes)
        unsentBytes -= left
        while left > 0 {
            let rest = chunks[first].count - offset
            if left < rest {
                offset += left
                break
            }
            left -= rest
            // Released at once (a large payload is not kept until the queue empties); a buffer of
            // the queue's own is kept for the next frames when there is none yet.
            if owned[first] && spare.capacity == 0 && chunks[first].capacity <= 1 << 20 {
                swap(&spare, &chunks[first])
                spare.removeAll(keepingCapacity: true)
            } else {
                chunks[first] = []
            }
            first += 1
            offset = 0
        }
        if unsentBytes == 0 {
            chunks.removeAll(keepingCapacity: true)
            owned.removeAll(keepingCapacity: true)
            first = 0
            offset = 0
        } else if first >= 16 {
            chunks.removeFirst(first)
            owned.removeFirst(first)
            first = 0
        }
    }

    /// Drops everything queued (the connection closed).
    mutating func removeAll() {
        chunks = []
        owned = []
        spare = []
        first = 0
        offset = 0
        unsentBytes = 0
    }
}
