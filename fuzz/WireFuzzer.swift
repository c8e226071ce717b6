// libFuzzer entry point for the pure wire codecs: the frame decoder, the JSON parser and writer,
// the request envelope and the message decoder. Built by scripts/fuzz together with the sources of
// Sources/Wire/Codec and Sources/Wire/Messages (no I/O there), with -sanitize=fuzzer,address.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzWire(_ start: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: start, count: count))

    // Frames, fed in two reads split where the first byte says: frames must not depend on reads.
    var decoder = FrameDecoder(maximumFrameLength: 1 << 16)
    let split = bytes.isEmpty ? 0 : Int(bytes[0]) % (bytes.count + 1)
    var frames: [[UInt8]] = []
    if let first = try? decoder.decode(bytes[..<split]), let second = try? decoder.decode(bytes[split...]) {
        frames = first + second
        var whole = FrameDecoder(maximumFrameLength: 1 << 16)
        if let all = try? whole.decode(bytes) {
            precondition(all == frames, "frames depend on how the bytes were read")
        }
    }
    for frame in frames { _ = Request.decode(frame) }

    // JSON: whatever parses must write back to a document that parses to the same value.
    if let value = try? JSONParser.parse(bytes) {
        let written = JSONWriter.bytes(value)
        guard let again = try? JSONParser.parse(written) else { preconditionFailure("written JSON does not parse") }
        precondition(again == value, "JSON round trip changed the value")
        _ = Message.decode(value)
        _ = Request.decode(bytes)
    }

    // Quantities and timestamps from arbitrary text.
    if let text = String(validating: bytes, as: UTF8.self), text.utf8.count < 64 {
        if case .success(let quantity) = Quantity.parse(text) {
            precondition(Quantity(exactly: quantity.description) == quantity, "quantity text round trip")
        }
        if let time = Timestamp(iso8601: text) {
            precondition(Timestamp(iso8601: time.iso8601) == time, "timestamp round trip")
        }
    }
    return 0
}
