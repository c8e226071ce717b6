// libFuzzer entry point for the decoders of untrusted input: the frame decoder, the JSON parser and
// writer, the request envelope, the message decoder, access-token verification (the run-rate page)
// and HTTP request heads (the emulator, the page, the front door). Built by scripts/fuzz from their
// sources (no I/O on these paths), with -sanitize=fuzzer,address.

/// The secret tokens are checked against: a forged token must never verify.
let fuzzSecret = try! AccessTokenSecret(bytes: Array(repeating: 7, count: 32))

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

    /// Two readings of an append agree: same id, same events, byte for byte and digest for digest.
    func expectSame(_ left: AppendBatch, _ right: AppendBatch, _ what: String) {
        precondition(left.id == right.id && left.events.count == right.events.count, "\(what): the appends differ")
        for (one, other) in zip(left.events, right.events) {
            switch (one, other) {
            case (.success(let a), .success(let b)):
                precondition(
                    a.payload == b.payload && a.payloadDigest == b.payloadDigest && a.keyDigest == b.keyDigest, "\(what): payloads differ")
                precondition(a.idempotencyKey == b.idempotencyKey && a.resource == b.resource && a.type == b.type, "\(what): fields differ")
            case (.failure(let a), .failure(let b)): precondition(a == b, "\(what): errors differ")
            default: preconditionFailure("\(what): one accepted what the other refused")
            }
        }
    }
    // Appends on the fast path read exactly as on the general one, or not at all; read in two
    // halves, exactly as in order.
    for frame in frames + [bytes] {
        // Read in two halves (the second first), it reads as in order, or fails where that fails.
        let halves = AppendFastPath.read(
            frame,
            fork: { first, second in
                second(); first()
            }, forkFrom: 0)
        guard let fast = AppendFastPath.read(frame) else {
            precondition(halves == nil, "read in two halves, an append was read that in order is not")
            continue
        }
        guard let halves else { preconditionFailure("read in two halves, an append was refused that in order is read") }
        expectSame(halves, fast, "read in two halves and in order")
        guard case .success(let request) = Request.decode(frame), case .success(let general) = AppendBatch.from(request) else {
            preconditionFailure("the fast path read an append the general path refuses")
        }
        expectSame(fast, general, "fast and general paths")
    }
    // Follow answers on the fast path read what the general parser and decoder read, or nothing.
    for frame in frames + [bytes] {
        guard let fast = RecordFrameReader.read(frame) else { continue }
        guard let json = try? JSONParser.parse(frame), let records = json["records"]?.arrayValue, records.count == fast.records.count
        else { preconditionFailure("the fast path read a follow answer the general parser refuses") }
        for (read, record) in zip(fast.records, records) {
            precondition(read.partition == record["partition"]?.intValue, "partitions differ")
            if case .success(let message) = read.message, let event = record["event"] {
                precondition(Message.decode(event) == .success(message), "messages differ")
            }
        }
    }
    if let value = try? JSONParser.parse(bytes) {
        let canonical = CanonicalJSON.bytes(value)
        guard let again = try? JSONParser.parse(canonical) else { preconditionFailure("canonical JSON does not parse") }
        precondition(CanonicalJSON.bytes(again) == canonical, "canonical JSON is not a fixed point")
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
    // Access tokens: arbitrary text is refused or verifies to a subject, and only a token signed
    // with the secret verifies (the fuzzer cannot forge HMAC-SHA-256).
    if let text = String(validating: bytes, as: UTF8.self) {
        if let token = try? AccessToken.verify(text, secret: fuzzSecret, now: 0) {
            precondition(token.signed(with: fuzzSecret) == text, "a token verified that was not signed with the secret")
        }
    }

    // HTTP request heads, with a small body limit: parse or refuse, never trap.
    _ = try? HTTPRequestHead.parse(bytes[...], maximumBodyBytes: 1024)
    return 0
}
