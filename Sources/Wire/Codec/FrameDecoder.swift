/// Splits a byte stream into frames: a 4-byte unsigned big-endian length N, then N bytes of payload.
///
/// A two-state machine in the manner of SwiftNIO's `LengthFieldBasedFrameDecoder`, with two
/// differences: a length of 0 or above `maximumFrameLength` is rejected as soon as the header is
/// read (nothing is allocated for a hostile length; a client of our own daemons may choose to
/// reserve the announced length of a large frame), and bytes left over at end of stream are an
/// error rather than silently dropped. It does no I/O, so it is tested with byte arrays.
public struct FrameDecoder: Sendable {
    /// Why the stream cannot be decoded any further.
    public enum Failure: Error, Hashable, Sendable {
        /// The header announced a length of zero.
        case emptyFrame
        /// The header announced more bytes than the configured maximum.
        case frameTooLarge(length: UInt32, maximum: Int)
        /// The stream ended inside a frame (`have` of `need` bytes of header or payload).
        case truncated(have: Int, need: Int)
    }

    private enum State {
        case waitingForHeader
        case waitingForFrame(length: Int)
        case failed(Failure)
    }

    /// The largest payload accepted, in bytes.
    public let maximumFrameLength: Int
    /// Whether a large frame is gathered in an array of its announced length from its header on.
    public let reservesAnnouncedLength: Bool
    private var state: State = .waitingForHeader
    private var buffer: [UInt8] = []
    private var readIndex = 0
    /// The large frame being gathered in its own array (`reservesAnnouncedLength`), if any: an
    /// array of the frame's full length whose first `assembled` bytes have arrived.
    private var assembling: [UInt8]?
    private var assembled = 0

    /// Frames from this length on are gathered in their own array when `reservesAnnouncedLength`.
    static let assemblingLength = 1 << 16

    /// A decoder of frames up to `maximumFrameLength` bytes. With `reservesAnnouncedLength`, a
    /// large frame's array is allocated at its announced length as soon as its header is read, and
    /// its bytes go straight there: no copy from a buffer, no growing. For a peer trusted with
    /// that (a client of our own daemons, whose answers reach megabytes); a server keeps the
    /// default, so a header alone reserves nothing.
    public init(maximumFrameLength: Int = FrameEncoder.defaultMaximumFrameLength, reservesAnnouncedLength: Bool = false) {
        precondition(maximumFrameLength > 0 && maximumFrameLength <= Int(UInt32.max))
        self.maximumFrameLength = maximumFrameLength
        self.reservesAnnouncedLength = reservesAnnouncedLength
    }

    /// Bytes received but not yet returned as frames.
    public var bufferedByteCount: Int { buffer.count - readIndex + (assembling == nil ? 0 : assembled) }

    /// Bytes of room the decoder holds (for tests of its memory).
    var reservedByteCount: Int { buffer.capacity + (assembling?.capacity ?? 0) }

    /// Adds received bytes and returns every frame they complete, in order.
    ///
    /// After a failure the decoder stays failed: the connection must be closed.
    public mutating func decode(_ bytes: some Collection<UInt8>) throws(Failure) -> [[UInt8]] {
        if case .failed(let failure) = state { throw failure }
        var frames: [[UInt8]] = []
        if let read = bytes.withContiguousStorageIfAvailable({ assemble(from: $0, into: &frames) }) {
            buffer.append(contentsOf: UnsafeBufferPointer(rebasing: read))
        } else {
            let copy = Array(bytes)
            copy.withUnsafeBufferPointer { buffer.append(contentsOf: UnsafeBufferPointer(rebasing: assemble(from: $0, into: &frames))) }
        }
        while true {
            switch state {
            case .failed(let failure):
                throw failure
            case .waitingForHeader:
                guard buffer.count - readIndex >= 4 else { compact(); return frames }
                let length =
                    UInt32(buffer[readIndex]) << 24 | UInt32(buffer[readIndex + 1]) << 16
                    | UInt32(buffer[readIndex + 2]) << 8 | UInt32(buffer[readIndex + 3])
                if length == 0 {
                    state = .failed(.emptyFrame)
                } else if UInt64(length) > UInt64(maximumFrameLength) {
                    state = .failed(.frameTooLarge(length: length, maximum: maximumFrameLength))
                } else {
                    readIndex += 4
                    state = .waitingForFrame(length: Int(length))
                }
            case .waitingForFrame(let length):
                guard buffer.count - readIndex >= length else {
                    if reservesAnnouncedLength && length >= Self.assemblingLength && assembling == nil {
                        // Its full length at once, not zeroed: every byte is written before the
                        // frame is handed out (`assembled` counts them).
                        let have = buffer.count - readIndex
                        let frame = [UInt8](unsafeUninitializedCapacity: length) { room, initialized in
                            buffer.withUnsafeBufferPointer { buffered in
                                _ = room.initialize(from: UnsafeBufferPointer(rebasing: buffered[readIndex...]))
                            }
                            initialized = length
                        }
                        readIndex = buffer.count
                        assembling = frame
                        assembled = have
                    }
                    compact()
                    return frames
                }
                frames.append(Array(buffer[readIndex..<readIndex + length]))
                readIndex += length
                state = .waitingForHeader
            }
        }
    }

    /// Puts the first of `bytes` into the frame being assembled, if any (appending it to
    /// `frames` when they complete it); the bytes after it.
    private mutating func assemble(
        from bytes: UnsafeBufferPointer<UInt8>, into frames: inout [[UInt8]]
    ) -> Slice<UnsafeBufferPointer<UInt8>> {
        // Taken out while it grows, so the array stays uniquely held and is never copied.
        guard case .waitingForFrame(let length) = state, var frame = assembling.take() else { return bytes[...] }
        let taken = min(length - assembled, bytes.count)
        frame.withUnsafeMutableBufferPointer { room in
            _ = UnsafeMutableBufferPointer(rebasing: room[assembled..<assembled + taken])
                .initialize(from: UnsafeBufferPointer(rebasing: bytes[..<taken]))
        }
        if let complete = gathered(taken, of: frame, length: length) { frames.append(complete) }
        return bytes[taken...]
    }

    /// Counts `count` more bytes of the gathered `frame` as arrived: the frame when that completes
    /// it (the decoder then waits for the next header), else nil (the frame kept, still gathering).
    private mutating func gathered(_ count: Int, of frame: consuming [UInt8], length: Int) -> [UInt8]? {
        assembled += count
        guard assembled == length else {
            assembling = frame
            return nil
        }
        state = .waitingForHeader
        return frame
    }

    /// While a large frame is being gathered in its own array (`reservesAnnouncedLength`): lets
    /// `receive` write the frame's missing bytes straight into it (at most that many, so nothing
    /// of the next frame), instead of into a buffer they would be copied from. `receive` returns
    /// how many bytes it wrote (0 or less: none, the decoder unchanged, for the caller to handle
    /// end of stream or an error). Nil when no frame is being gathered: the caller reads into a
    /// buffer of its own and hands it to `decode`. Else how many bytes were written and the frame
    /// when they completed it.
    public mutating func receiveIntoFrame(_ receive: (UnsafeMutableRawBufferPointer) -> Int) -> (count: Int, frame: [UInt8]?)? {
        guard case .waitingForFrame(let length) = state, var frame = assembling.take() else { return nil }
        let start = assembled
        let written = frame.withUnsafeMutableBytes { room in
            min(receive(UnsafeMutableRawBufferPointer(rebasing: room[start..<length])), length - start)
        }
        guard written > 0 else {
            assembling = frame
            return (written, nil)
        }
        return (written, gathered(written, of: frame, length: length))
    }

    /// Declares the end of the stream: leftover bytes are a truncated frame.
    public func finish() throws(Failure) {
        switch state {
        case .failed(let failure):
            throw failure
        case .waitingForHeader:
            let have = buffer.count - readIndex
            if have > 0 { throw .truncated(have: have, need: 4) }
        case .waitingForFrame(let length):
            throw .truncated(have: bufferedByteCount, need: length)
        }
    }

    private mutating func compact() {
        if readIndex == buffer.count {
            buffer.removeAll(keepingCapacity: buffer.capacity <= 1 << 16)
            readIndex = 0
        } else if readIndex > 1 << 16 && readIndex > buffer.count / 2 {
            buffer.removeFirst(readIndex)
            readIndex = 0
        }
    }
}

extension FrameDecoder.Failure: CustomStringConvertible {
    public var description: String {
        switch self {
        case .emptyFrame:
            return "frame length 0 (a frame carries one JSON object, at least 2 bytes)"
        case .frameTooLarge(let length, let maximum):
            return "frame length \(length) exceeds the maximum of \(maximum) bytes"
        case .truncated(let have, let need):
            return "stream ended inside a frame (\(have) of \(need) bytes)"
        }
    }
}

/// Writes frames: the 4-byte big-endian length, then the payload.
public enum FrameEncoder {
    /// 16 MiB, the default maximum payload of a frame.
    public static let defaultMaximumFrameLength = 16 << 20

    /// The frame carrying `payload` (which must not be empty nor longer than `UInt32.max`).
    public static func frame(_ payload: some Collection<UInt8>) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(payload.count + 4)
        append(payload, to: &out)
        return out
    }

    /// Appends the frame carrying `payload` to `out`.
    public static func append(_ payload: some Collection<UInt8>, to out: inout [UInt8]) {
        appendHeader(length: payload.count, to: &out)
        out.append(contentsOf: payload)
    }

    /// Appends the 4-byte header of a frame of `length` bytes to `out` (its payload goes after it,
    /// here or in a write of its own).
    public static func appendHeader(length: Int, to out: inout [UInt8]) {
        let length = UInt32(length)
        out.append(UInt8(length >> 24))
        out.append(UInt8(length >> 16 & 0xFF))
        out.append(UInt8(length >> 8 & 0xFF))
        out.append(UInt8(length & 0xFF))
    }
}
