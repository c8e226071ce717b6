// libFuzzer entry point for what the NATS client reads from a server: the protocol parser (INFO,
// MSG, HMSG with headers, PING, PONG, +OK, -ERR), header blocks, INFO's JSON and server URLs.
// Nothing may trap; how the bytes are split into reads must not change what is decoded; headers
// that parse and may be written read back the same. Built by scripts/fuzz from the NATS module's
// pure sources (no I/O on these paths) and Wire's codec, with -sanitize=fuzzer,address.

import NATS

/// Parses `bytes` in reads of the given lengths (cycled); nil when the parser refused them.
func parseInReads(_ bytes: [UInt8], lengths: [Int]) -> [NATSServerOperation]? {
    var parser = NATSParser(maximumControlLine: 512, maximumPayload: 1 << 16)
    var operations: [NATSServerOperation] = []
    var offset = 0
    var index = 0
    while offset < bytes.count {
        let length = max(1, lengths[index % lengths.count])
        index += 1
        let end = min(bytes.count, offset + length)
        guard let decoded = try? parser.parse(bytes[offset..<end]) else { return nil }
        operations += decoded
        offset = end
    }
    return operations
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzNATS(_ start: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: start, count: count))

    // Whole, split where the first byte says, and dripped in small reads: the same operations,
    // or refused every time.
    let whole = parseInReads(bytes, lengths: [bytes.count])
    let split = bytes.isEmpty ? 0 : Int(bytes[0]) % (bytes.count + 1)
    let halves = parseInReads(bytes, lengths: [split, bytes.count])
    let dripped = parseInReads(bytes, lengths: [1, 7, 3])
    precondition(whole == halves && whole == dripped, "operations depend on how the bytes were read")

    for operation in whole ?? [] {
        switch operation {
        case .info(let json): _ = try? NATSServerInfo.decode(json)
        case .message(let message):
            if let headers = message.headers, headers.fields.allSatisfy({ NATSHeaders.isValid(name: $0.name, value: $0.value) }),
                !headers.statusDescription.contains("\r"), !headers.statusDescription.contains("\n")
            {
                guard let again = try? NATSHeaders.parse(headers.bytes[...]) else { preconditionFailure("written headers do not parse") }
                precondition(again.fields.count == headers.fields.count && again.status == headers.status, "header round trip")
            }
        default: break
        }
    }

    // A header block on its own.
    if let headers = try? NATSHeaders.parse(bytes[...]) { _ = headers["Nats-Msg-Id"] }

    // Server URLs: parse or refuse; a parsed one prints without its credentials.
    if let text = String(validating: bytes, as: UTF8.self), text.utf8.count < 256 {
        if let address = NATSServerAddress(text) {
            precondition(!address.description.contains("@"), "an address printed its credentials")
        }
        _ = NATSServerAddress.list(text)
    }
    return 0
}
