/// Reads an `append` request straight from its bytes, without building a JSON tree for the
/// messages it can read alone: usage reports whose members are the ones the format defines, with
/// plain strings (no escapes) and a number for the quantity. Each such message is validated as
/// `Message.decode` validates it and written in its canonical form (`CanonicalJSON`) in the same
/// pass. Every other message goes through the general parser and decoder, one by one.
///
/// It never decides anything the general path would decide otherwise: whatever it does not
/// recognise completely — another op, a byte-order mark, an escape, a repeated key, a value out of
/// range, anything malformed — makes it answer nil (for the request) or take the general path
/// (for one message), and the general path gives the answer and its error message. The property
/// tests compare both paths on random and hostile input.
public enum AppendFastPath {
    /// Runs two pieces of work at the same time and returns when both are done (the caller's
    /// threads: this module starts none). Each piece touches only its own state.
    public typealias Fork = (_ first: () -> Void, _ second: () -> Void) -> Void

    /// From this many bytes of events on, a request read with a `Fork` is read in two halves at once.
    public static let forkFromBytes = 64 << 10

    /// The request decoded, or nil when the general path must read it. With `fork`, a large
    /// request's events are read in two halves at once: the second half starts at a guess of where
    /// an event begins in the middle, which the first half's reading confirms (else the second
    /// half's result is dropped and the first goes on alone), so the answer is always the one
    /// reading in order gives. `forkFrom` (bytes of events) is lowered by tests only.
    public static func read(
        _ frame: [UInt8], maximumDepth: Int = JSONParser.defaultMaximumDepth, fork: Fork? = nil, forkFrom: Int = forkFromBytes
    ) -> AppendBatch? {
        frame.withUnsafeBufferPointer { bytes in
            var reader = FastMessageReader(bytes: bytes, maximumDepth: maximumDepth)
            reader.fork = fork
            reader.forkFrom = forkFrom
            return reader.request()
        }
    }

    /// One message read alone by the fast path, or nil (tests compare it with the general path).
    public static func readUsage(_ message: [UInt8]) -> ValidatedEvent? {
        message.withUnsafeBufferPointer { bytes in
            var reader = FastMessageReader(bytes: bytes, maximumDepth: JSONParser.defaultMaximumDepth)
            reader.skipWhitespace()
            guard let event = reader.usage(), reader.atEndAfterWhitespace else { return nil }
            return event
        }
    }

}

/// The byte-level reader both fast paths share: strings without escapes, numbers with the JSON
/// grammar, usage reports; everything it does not recognise completely is a nil.
struct FastMessageReader {
    let bytes: UnsafeBufferPointer<UInt8>
    let maximumDepth: Int
    var index = 0
    /// The quantity of the usage report being read, as text (kept from one report to the next).
    var quantityText: [UInt8] = []
    /// The properties of the usage report being read (`Value.hasProperties`), kept from one
    /// report to the next so that reading them allocates nothing.
    var propertyRanges: [(key: Range<Int>, value: Range<Int>)] = []
    /// The properties of recent records of a `follow` answer, by their bytes (`recentProperties`),
    /// and which of them the next new one replaces.
    var propertiesSeen: [(span: Range<Int>, properties: [String: String])] = []
    var propertiesReplaced = 0
    var enqueuedMemo = TimeMemo()
    var timestampMemo = TimeMemo()
    /// Reads a large list of events in two halves at once (`AppendFastPath.read`).
    var fork: AppendFastPath.Fork?
    var forkFrom = AppendFastPath.forkFromBytes

    init(bytes: UnsafeBufferPointer<UInt8>, maximumDepth: Int) {
        self.bytes = bytes
        self.maximumDepth = maximumDepth
        quantityText.reserveCapacity(48)
    }

    var atEndAfterWhitespace: Bool {
        mutating get {
            skipWhitespace()
            return index == bytes.count
        }
    }

    mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    mutating func expect(_ byte: UInt8) -> Bool {
        skipWhitespace()
        guard index < bytes.count, bytes[index] == byte else { return false }
        index += 1
        return true
    }

    /// A string without escapes or control characters, valid UTF-8: its bytes (without the
    /// quotes), or nil.
    mutating func plainString() -> Range<Int>? {
        skipWhitespace()
        guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { return nil }
        index += 1
        return stringBody()
    }

    /// The rest of a plain string whose opening quote was just read: its bytes up to the closing
    /// quote (the index then after it), or nil.
    mutating func stringBody() -> Range<Int>? {
        let start = index
        var position = start
        var highBit = false
        let count = bytes.count
        guard let base = UnsafeRawPointer(bytes.baseAddress) else { return nil }
        // Eight bytes at a time: a quote, a backslash, a control character or a high bit in any
        // of them is flagged (the classic "has a byte less than / equal to" tricks). A flag can
        // be false only above a true one, so the lowest flag is the first special byte.
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highs: UInt64 = 0x8080_8080_8080_8080
        while true {
            #if _endian(little)
                while position + 8 <= count {
                    let word = base.loadUnaligned(fromByteOffset: position, as: UInt64.self)
                    let quote = word ^ (ones &* 0x22)
                    let backslash = word ^ (ones &* 0x5C)
                    let special =
                        (((quote &- ones) & ~quote) | ((backslash &- ones) & ~backslash) | ((word &- ones &* 0x20) & ~word) | word)
                        & highs
                    if special != 0 {
                        position += special.trailingZeroBitCount >> 3
                        break
                    }
                    position += 8
                }
            #endif
            guard position < count else { return nil }
            let byte = bytes[position]
            if byte == UInt8(ascii: "\"") {
                if highBit, String(validating: UnsafeBufferPointer(rebasing: bytes[start..<position]), as: UTF8.self) == nil {
                    return nil
                }
                index = position + 1
                return start..<position
            }
            if byte == UInt8(ascii: "\\") || byte < 0x20 { return nil }
            if byte >= 0x80 { highBit = true }
            position += 1
        }
    }

    /// Whether the bytes at the index are `text` exactly (no whitespace skipped); if so the index
    /// moves past them.
    @inline(__always)
    mutating func literal(_ text: StaticString) -> Bool {
        let length = text.utf8CodeUnitCount
        guard bytes.count - index >= length, let base = bytes.baseAddress else { return false }
        let here = UnsafeRawPointer(base + index)
        let expected = UnsafeRawPointer(text.utf8Start)
        var offset = 0
        while offset + 8 <= length {
            guard
                here.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
                    == expected.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
            else { return false }
            offset += 8
        }
        while offset < length {
            guard here.load(fromByteOffset: offset, as: UInt8.self) == expected.load(fromByteOffset: offset, as: UInt8.self) else {
                return false
            }
            offset += 1
        }
        index += length
        return true
    }

    /// A time text read before, and its value: records of one commit group share their time, and a
    /// sender's batch usually its timestamp, so most times are compared, not parsed.
    struct TimeMemo {
        var text: Range<Int>?
        var time: Timestamp?
    }

    /// The time in `range`, parsed or remembered from the same text just before.
    func time(_ range: Range<Int>, memo: inout TimeMemo) -> Timestamp? {
        if let text = memo.text, text.count == range.count, bytes[text].elementsEqual(bytes[range]) { return memo.time }
        let time = Timestamp.parse(iso8601: UnsafeBufferPointer(rebasing: bytes[range]))
        memo = TimeMemo(text: range, time: time)
        return time
    }

    func equals(_ range: Range<Int>, _ literal: StaticString) -> Bool {
        guard range.count == literal.utf8CodeUnitCount else { return false }
        let start = literal.utf8Start
        for offset in 0..<range.count where bytes[range.lowerBound + offset] != start[offset] { return false }
        return true
    }

    func text(_ range: Range<Int>) -> String { String(decoding: UnsafeBufferPointer(rebasing: bytes[range]), as: UTF8.self) }

    /// A JSON number with the parser's grammar: its bytes, or nil.
    mutating func number() -> Range<Int>? {
        skipWhitespace()
        let start = index
        var position = index
        func digit(_ at: Int) -> Bool { at < bytes.count && bytes[at] >= UInt8(ascii: "0") && bytes[at] <= UInt8(ascii: "9") }
        if position < bytes.count && bytes[position] == UInt8(ascii: "-") { position += 1 }
        guard digit(position) else { return nil }
        if bytes[position] == UInt8(ascii: "0") {
            position += 1
            if digit(position) { return nil }
        } else {
            while digit(position) { position += 1 }
        }
        if position < bytes.count && bytes[position] == UInt8(ascii: ".") {
            position += 1
            guard digit(position) else { return nil }
            while digit(position) { position += 1 }
        }
        if position < bytes.count && (bytes[position] == UInt8(ascii: "e") || bytes[position] == UInt8(ascii: "E")) {
            position += 1
            if position < bytes.count && (bytes[position] == UInt8(ascii: "+") || bytes[position] == UInt8(ascii: "-")) {
                position += 1
            }
            guard digit(position) else { return nil }
            while digit(position) { position += 1 }
        }
        index = position
        return start..<position
    }

    /// The byte range of the next value, skipped by its structure only (the general parser
    /// checks it when it matters), or nil when it does not even have a structure.
    mutating func skipValue() -> Range<Int>? {
        skipWhitespace()
        let start = index
        var depth = 0
        repeat {
            guard index < bytes.count else { return nil }
            switch bytes[index] {
            case UInt8(ascii: "\""):
                index += 1
                while index < bytes.count && bytes[index] != UInt8(ascii: "\"") {
                    if bytes[index] == UInt8(ascii: "\\") { index += 1 }
                    index += 1
                }
                guard index < bytes.count else { return nil }
                index += 1
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                depth += 1
                guard depth <= maximumDepth else { return nil }
                index += 1
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                guard depth > 0 else { return nil }
                depth -= 1
                index += 1
            default:
                if depth > 0 {
                    index += 1
                } else {
                    // A number or a literal: up to the next delimiter.
                    while index < bytes.count {
                        switch bytes[index] {
                        case UInt8(ascii: ","), UInt8(ascii: "]"), UInt8(ascii: "}"), 0x20, 0x09, 0x0A, 0x0D: break
                        default:
                            index += 1
                            continue
                        }
                        break
                    }
                }
            }
        } while depth > 0
        return index > start ? start..<index : nil
    }

    // MARK: the request

    mutating func request() -> AppendBatch? {
        if bytes.count >= 3 && bytes[0] == 0xEF && bytes[1] == 0xBB && bytes[2] == 0xBF { return nil }
        guard expect(UInt8(ascii: "{")) else { return nil }
        var sawOp = false
        var id: JSONValue?
        var events: [Result<ValidatedEvent, WireError>]?
        var keys: [Range<Int>] = []
        if expect(UInt8(ascii: "}")) { return nil }
        repeat {
            guard let key = plainString() else { return nil }
            for earlier in keys where bytes[earlier].elementsEqual(bytes[key]) { return nil }
            keys.append(key)
            guard expect(UInt8(ascii: ":")) else { return nil }
            if equals(key, "op") {
                guard let op = plainString(), equals(op, "append") else { return nil }
                sawOp = true
            } else if equals(key, "events") {
                guard let read = eventList() else { return nil }
                events = read
            } else {
                // `id` (echoed as it is) and members nobody reads: checked by the general parser.
                guard let range = skipValue(),
                    let value = try? JSONParser.parse(UnsafeBufferPointer(rebasing: bytes[range]), maximumDepth: maximumDepth - 1)
                else { return nil }
                if equals(key, "id") { id = value }
            }
        } while expect(UInt8(ascii: ","))
        guard expect(UInt8(ascii: "}")), atEndAfterWhitespace, sawOp, let events else { return nil }
        return AppendBatch(id: id, events: events)
    }

    mutating func eventList() -> [Result<ValidatedEvent, WireError>]? {
        guard expect(UInt8(ascii: "[")) else { return nil }
        var events: [Result<ValidatedEvent, WireError>] = []
        if expect(UInt8(ascii: "]")) { return events }
        var listGoesOn = true
        if let fork, bytes.count - index >= forkFrom, let split = guessedElementStart() {
            var second: (events: [Result<ValidatedEvent, WireError>], end: Int)?
            var reachedSplit = false
            var unreadable = false
            let maximumDepth = self.maximumDepth
            let bytes = self.bytes
            fork(
                {
                    while true {
                        guard element(into: &events) else {
                            unreadable = true
                            return
                        }
                        guard expect(UInt8(ascii: ",")) else {
                            listGoesOn = false
                            return
                        }
                        skipWhitespace()
                        if index >= split {
                            reachedSplit = index == split
                            return
                        }
                    }
                },
                {
                    var reader = FastMessageReader(bytes: bytes, maximumDepth: maximumDepth)
                    reader.index = split
                    if let rest = reader.elementsToEnd() { second = (rest, reader.index) }
                })
            if unreadable { return nil }
            if reachedSplit, var second {
                // Moved, not copied: a copy retained each event's strings and payload again.
                events.reserveCapacity(events.count + second.events.count)
                for position in second.events.indices { events.append(AppendBatch.take(&second.events[position])) }
                index = second.end
                return events
            }
            // The guess was not where an event starts, or the second half could not be read from
            // there: the first half goes on alone from where it stopped (an event's start).
        }
        if listGoesOn {
            repeat {
                guard element(into: &events) else { return nil }
            } while expect(UInt8(ascii: ","))
        }
        guard expect(UInt8(ascii: "]")) else { return nil }
        return events
    }

    /// The list's events from the index (where one starts) up to and including its closing `]`.
    mutating func elementsToEnd() -> [Result<ValidatedEvent, WireError>]? {
        var events: [Result<ValidatedEvent, WireError>] = []
        repeat {
            guard element(into: &events) else { return nil }
        } while expect(UInt8(ascii: ","))
        guard expect(UInt8(ascii: "]")) else { return nil }
        return events
    }

    /// Reads the event at the index into `events`: on the fast path when it can, else with the
    /// general parser and decoder. False when the bytes are not JSON.
    mutating func element(into events: inout [Result<ValidatedEvent, WireError>]) -> Bool {
        skipWhitespace()
        let start = index
        if let event = usage() {
            events.append(.success(event))
            return true
        }
        // Not one the fast path reads alone: the general parser and decoder, as before.
        index = start
        guard let range = skipValue(),
            let json = try? JSONParser.parse(UnsafeBufferPointer(rebasing: bytes[range]), maximumDepth: maximumDepth - 2)
        else { return false }
        events.append(ValidatedEvent.decode(json))
        return true
    }

    /// A guess of where an event of the list starts, near the middle of what is left: the `{` of
    /// the first `},{` there (which a string may hold too: the caller confirms it).
    func guessedElementStart() -> Int? {
        var position = index + (bytes.count - index) / 2
        let limit = min(bytes.count - 1, position + 32 << 10)
        while position < limit {
            if bytes[position] == UInt8(ascii: ",") && bytes[position - 1] == UInt8(ascii: "}") && bytes[position + 1] == UInt8(ascii: "{")
            {
                return position + 1
            }
            position += 1
        }
        return nil
    }

    // MARK: one usage report

    /// The parts of a `UsageReported` message (its id and value), or nil (the index is then
    /// wherever reading stopped: the caller rewinds).
    mutating func usageParts() -> (id: Range<Int>?, value: Value)? {
        guard expect(UInt8(ascii: "{")) else { return nil }
        var type: Range<Int>?
        var id: Range<Int>?
        var value: Value?
        repeat {
            guard let key = plainString(), expect(UInt8(ascii: ":")) else { return nil }
            if equals(key, "type") {
                guard type == nil, let read = plainString(), equals(read, "UsageReported") else { return nil }
                type = read
            } else if equals(key, "id") {
                guard id == nil, let read = plainString(), !read.isEmpty, read.count <= Message.maximumIdLength else { return nil }
                id = read
            } else if equals(key, "value") {
                guard value == nil, let read = usageValue() else { return nil }
                value = read
            } else {
                return nil
            }
        } while expect(UInt8(ascii: ","))
        guard expect(UInt8(ascii: "}")), type != nil, let value else { return nil }
        return (id, value)
    }

    /// A `UsageReported` message read as the billing fold takes it, or nil.
    mutating func usageMessage() -> Message? {
        guard let (id, value) = usageParts() else { return nil }
        let time = value.time
        var properties: [String: String] = [:]
        if value.hasProperties {
            for property in propertyRanges { properties[text(property.key)] = text(property.value) }
        }
        let usage = UsageReported(
            resource: ResourceName(resourceId: value.resourceId.map(text), resourceUri: value.resourceUri.map(text)), timestamp: time,
            meterName: text(value.meterName), quantity: value.quantity, properties: properties)
        return Message(id: id.map(text), body: .usageReported(usage))
    }

    /// A `UsageReported` message read and written canonically, or nil (the index is then
    /// wherever reading stopped: the caller rewinds). The canonical form is written once, into a
    /// payload of its exact length; the event keeps where its key and names are in it instead of
    /// strings of its own.
    mutating func usage() -> ValidatedEvent? {
        guard let (id, value) = usageParts() else { return nil }
        let bytes = bytes
        if value.hasProperties { propertyRanges.sort { bytes[$0.key].lexicographicallyPrecedes(bytes[$1.key]) } }
        quantityText.removeAll(keepingCapacity: true)
        value.quantity.appendDescription(to: &quantityText)
        return propertyRanges.withUnsafeBufferPointer { properties in
            quantityText.withUnsafeBufferPointer { quantity in
                let properties = value.hasProperties ? properties : UnsafeBufferPointer(start: nil, count: 0)
                var counter = ByteCounter()
                Self.writeUsage(bytes, id: id, value, properties: properties, quantity: quantity, into: &counter)
                var marks = CanonicalUsageMarks()
                let payload = [UInt8](unsafeUninitializedCapacity: counter.count) { buffer, initialized in
                    var filler = ByteFiller(base: buffer.baseAddress!)
                    marks = Self.writeUsage(bytes, id: id, value, properties: properties, quantity: quantity, into: &filler)
                    initialized = filler.count
                }
                // The digests: of the key, and of the canonical form without the sender's own
                // time (`PayloadDigest.ofMessage`).
                var digests: (key: PayloadDigest, payload: PayloadDigest)?
                if let key = marks.key {
                    digests = payload.withUnsafeBytes {
                        (
                            PayloadDigest.hash(UnsafeRawBufferPointer(rebasing: $0[key])),
                            PayloadDigest.hash(
                                UnsafeRawBufferPointer(rebasing: $0[..<marks.timestamp.lowerBound]),
                                UnsafeRawBufferPointer(rebasing: $0[marks.timestamp.upperBound...]))
                        )
                    }
                }
                return ValidatedEvent(
                    usagePayload: payload, key: marks.key, resourceId: marks.resourceId, resourceUri: marks.resourceUri,
                    eventTime: value.time, keyDigest: digests?.key, payloadDigest: digests?.payload)
            }
        }
    }

    /// Where `writeUsage` put the key and names (their bytes, without quotes) and the timestamp
    /// member (from its comma to its closing quote: what the payload digest leaves out).
    struct CanonicalUsageMarks {
        var key: Range<Int>?
        var resourceId: Range<Int>?
        var resourceUri: Range<Int>?
        var timestamp: Range<Int> = 0..<0
    }

    /// Writes a usage report's canonical form: members sorted by key (id, type, value; meterName,
    /// properties, quantity, resourceId, resourceUri, timestamp), the quantity by its exact value,
    /// the strings' bytes as read (plain strings: no escapes). Run twice: to count, then to fill.
    @inline(__always)
    @discardableResult
    static func writeUsage<Sink: ByteSink>(
        _ bytes: UnsafeBufferPointer<UInt8>, id: Range<Int>?, _ value: Value,
        properties: UnsafeBufferPointer<(key: Range<Int>, value: Range<Int>)>,
        quantity: UnsafeBufferPointer<UInt8>, into sink: inout Sink
    ) -> CanonicalUsageMarks {
        var marks = CanonicalUsageMarks()
        func string(_ range: Range<Int>) -> Range<Int> {
            let start = sink.count
            sink.put(UnsafeBufferPointer(rebasing: bytes[range]))
            return start..<sink.count
        }
        sink.put("{")
        if let id {
            sink.put(#""id":""#)
            marks.key = string(id)
            sink.put(#"","#)
        }
        sink.put(#""type":"UsageReported","value":{"meterName":""#)
        _ = string(value.meterName)
        sink.put(#"""#)
        if value.hasProperties {
            sink.put(#","properties":{"#)
            for position in properties.indices {
                if position > 0 { sink.put(",") }
                sink.put(#"""#)
                _ = string(properties[position].key)
                sink.put(#"":""#)
                _ = string(properties[position].value)
                sink.put(#"""#)
            }
            sink.put("}")
        }
        sink.put(#","quantity":"#)
        sink.put(quantity)
        if let resourceId = value.resourceId {
            sink.put(#","resourceId":""#)
            marks.resourceId = string(resourceId)
            sink.put(#"""#)
        }
        if let resourceUri = value.resourceUri {
            sink.put(#","resourceUri":""#)
            marks.resourceUri = string(resourceUri)
            sink.put(#"""#)
        }
        let timestampStart = sink.count
        sink.put(#","timestamp":""#)
        _ = string(value.timestamp)
        sink.put(#"""#)
        marks.timestamp = timestampStart..<sink.count
        sink.put("}}")
        return marks
    }

    struct Value {
        var resourceId: Range<Int>?
        var resourceUri: Range<Int>?
        var timestamp: Range<Int>
        /// `timestamp` read.
        var time: Timestamp
        var meterName: Range<Int>
        var quantity: Quantity
        /// A `properties` member was read: its entries are the reader's `propertyRanges`.
        var hasProperties: Bool
    }

    mutating func usageValue() -> Value? {
        guard expect(UInt8(ascii: "{")) else { return nil }
        var resourceId: Range<Int>?
        var resourceUri: Range<Int>?
        var timestamp: Range<Int>?
        var time: Timestamp?
        var meterName: Range<Int>?
        var quantity: Quantity?
        var hasProperties = false
        repeat {
            guard let key = plainString(), expect(UInt8(ascii: ":")) else { return nil }
            switch bytes[key].first {
            case UInt8(ascii: "r") where equals(key, "resourceId"):
                guard resourceId == nil, let read = plainString(), !read.isEmpty else { return nil }
                resourceId = read
            case UInt8(ascii: "r") where equals(key, "resourceUri"):
                guard resourceUri == nil, let read = plainString(), !read.isEmpty else { return nil }
                resourceUri = read
            case UInt8(ascii: "t") where equals(key, "timestamp"):
                guard timestamp == nil, let read = plainString(), let parsed = self.time(read, memo: &timestampMemo) else { return nil }
                timestamp = read
                time = parsed
            case UInt8(ascii: "m") where equals(key, "meterName"):
                guard meterName == nil, let read = plainString(), !read.isEmpty else { return nil }
                meterName = read
            case UInt8(ascii: "q") where equals(key, "quantity"):
                guard quantity == nil, let read = number(),
                    case .success(let parsed) = Quantity.parse(utf8: UnsafeBufferPointer(rebasing: bytes[read])), !parsed.isNegative
                else { return nil }
                quantity = parsed
            case UInt8(ascii: "p") where equals(key, "properties"):
                guard !hasProperties, propertyMap() else { return nil }
                hasProperties = true
            default:
                return nil
            }
        } while expect(UInt8(ascii: ","))
        guard expect(UInt8(ascii: "}")), resourceId != nil || resourceUri != nil, let timestamp, let time, let meterName, let quantity
        else {
            return nil
        }
        return Value(
            resourceId: resourceId, resourceUri: resourceUri, timestamp: timestamp, time: time, meterName: meterName, quantity: quantity,
            hasProperties: hasProperties)
    }

    /// Reads a map of plain strings into `propertyRanges`; false when it is not one (or repeats a key).
    mutating func propertyMap() -> Bool {
        propertyRanges.removeAll(keepingCapacity: true)
        guard expect(UInt8(ascii: "{")) else { return false }
        if expect(UInt8(ascii: "}")) { return true }
        repeat {
            guard let key = plainString(), expect(UInt8(ascii: ":")), let value = plainString() else { return false }
            for earlier in propertyRanges where bytes[earlier.key].elementsEqual(bytes[key]) { return false }
            propertyRanges.append((key, value))
        } while expect(UInt8(ascii: ","))
        return expect(UInt8(ascii: "}"))
    }
}

/// Reads the records of a `read`/`follow` answer of ingest straight from its bytes: the records'
/// positions and times, and their messages, usage reports in their canonical form without a JSON
/// tree and every other message through the general parser and decoder. An answer it does not
/// recognise completely (an error, another shape) is a nil: the caller reads it generally.
///
/// A record exactly as ingest writes it (its members in ingest's order, a usage report in its
/// canonical form) is read by comparing the fixed parts byte for byte; any other record, member
/// order or message is read member by member, as before.
public enum RecordFrameReader {
    /// One record of the answer.
    public struct Record: Sendable {
        public var partition: Int
        public var sequence: UInt64
        public var enqueuedTime: Timestamp
        public var message: Result<Message, MessageError>
    }

    /// The answer: its records, `next` and the log's identity.
    public struct Frame: Sendable {
        public var records: [Record]
        public var next: UInt64?
        public var log: String?
    }

    /// The answer read, or nil.
    public static func read(_ frame: [UInt8]) -> Frame? {
        var records: [Record] = []
        let end = read(
            frame,
            record: { partition, sequence, time, message in
                records.append(Record(partition: partition, sequence: sequence, enqueuedTime: time, message: .success(message)))
            },
            undecodable: { partition, sequence, time, error in
                records.append(Record(partition: partition, sequence: sequence, enqueuedTime: time, message: .failure(error)))
            })
        guard let end else { return nil }
        return Frame(records: records, next: end.next, log: end.log)
    }

    /// The answer read with each record's parts handed on as soon as they are read, in order:
    /// a decoded message to `record`, a message that does not decode to `undecodable`; then
    /// `next` and the log's identity. No record value is built in between, so the caller builds
    /// its own where it keeps it. A nil means the answer was not recognised completely: the
    /// records already handed over are to be dropped.
    public static func read(
        _ frame: [UInt8], record: (_ partition: Int, _ sequence: UInt64, _ enqueuedTime: Timestamp, _ message: consuming Message) -> Void,
        undecodable: (_ partition: Int, _ sequence: UInt64, _ enqueuedTime: Timestamp, _ error: MessageError) -> Void
    ) -> (next: UInt64?, log: String?)? {
        frame.withUnsafeBufferPointer { bytes in
            var reader = FastMessageReader(bytes: bytes, maximumDepth: JSONParser.defaultMaximumDepth)
            return reader.recordFrame(record: record, undecodable: undecodable)
        }
    }
}

extension FastMessageReader {
    /// A whole number without sign, fraction or exponent.
    mutating func unsigned() -> UInt64? {
        skipWhitespace()
        guard index < bytes.count, bytes[index] >= UInt8(ascii: "0") && bytes[index] <= UInt8(ascii: "9") else { return nil }
        var value: UInt64 = 0
        if bytes[index] == UInt8(ascii: "0") {
            index += 1
        } else {
            while index < bytes.count, bytes[index] >= UInt8(ascii: "0") && bytes[index] <= UInt8(ascii: "9") {
                let (times, overflow) = value.multipliedReportingOverflow(by: 10)
                guard !overflow else { return nil }
                let (sum, carry) = times.addingReportingOverflow(UInt64(bytes[index] - UInt8(ascii: "0")))
                guard !carry else { return nil }
                value = sum
                index += 1
            }
        }
        // A fraction, an exponent or another digit after a leading zero: not a whole number.
        if index < bytes.count {
            switch bytes[index] {
            case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "e"), UInt8(ascii: "E"): return nil
            default: break
            }
        }
        return value
    }

    mutating func recordFrame(
        record: (Int, UInt64, Timestamp, consuming Message) -> Void, undecodable: (Int, UInt64, Timestamp, MessageError) -> Void
    ) -> (next: UInt64?, log: String?)? {
        guard expect(UInt8(ascii: "{")) else { return nil }
        var ok = false
        var records = false
        var next: UInt64?
        var log: String?
        var keys: [Range<Int>] = []
        repeat {
            guard let key = plainString(), expect(UInt8(ascii: ":")) else { return nil }
            // A repeated key: the general parser refuses the answer, so this reader does too.
            for earlier in keys where bytes[earlier].elementsEqual(bytes[key]) { return nil }
            keys.append(key)
            if equals(key, "ok") {
                skipWhitespace()
                guard literal("true") else { return nil }
                ok = true
            } else if equals(key, "records") {
                guard !records, expect(UInt8(ascii: "[")) else { return nil }
                if !expect(UInt8(ascii: "]")) {
                    repeat {
                        skipWhitespace()
                        let start = index
                        if canonicalRecord(record) { continue }
                        index = start
                        guard self.record(record, undecodable) else { return nil }
                    } while expect(UInt8(ascii: ","))
                    guard expect(UInt8(ascii: "]")) else { return nil }
                }
                records = true
            } else if equals(key, "next") {
                guard let value = unsigned() else { return nil }
                next = value
            } else if equals(key, "log") {
                guard let value = plainString() else { return nil }
                log = text(value)
            } else {
                // `id` (echoed) and members nobody reads: checked by the general parser, so the
                // answer is read here only when it is JSON there.
                guard let range = skipValue(),
                    (try? JSONParser.parse(UnsafeBufferPointer(rebasing: bytes[range]), maximumDepth: maximumDepth - 1)) != nil
                else { return nil }
            }
        } while expect(UInt8(ascii: ","))
        guard expect(UInt8(ascii: "}")), atEndAfterWhitespace, ok, records else { return nil }
        return (next, log)
    }

    /// A record exactly as ingest writes it with a usage report in its canonical form, handed to
    /// `each`; false (the index anywhere: the caller rewinds) for anything else.
    mutating func canonicalRecord(_ each: (Int, UInt64, Timestamp, consuming Message) -> Void) -> Bool {
        guard literal(#"{"partition":"#), let partition = unsigned(), partition <= UInt64(Int.max), literal(#","sequence":"#),
            let sequence = unsigned(), literal(#","enqueuedTime":""#), let timeText = stringBody(),
            let time = self.time(timeText, memo: &enqueuedMemo), literal(#","event":"#), let message = canonicalUsage(), literal("}")
        else { return false }
        each(Int(partition), sequence, time, consume message)
        return true
    }

    /// A `UsageReported` message in its canonical form (members in their order, no whitespace),
    /// checked as `usageMessage` checks it, or nil (the index anywhere: the caller rewinds).
    mutating func canonicalUsage() -> Message? {
        guard literal("{") else { return nil }
        var id: String?
        if literal(#""id":""#) {
            guard let read = stringBody(), !read.isEmpty, read.count <= Message.maximumIdLength, literal(",") else { return nil }
            id = text(read)
        }
        guard literal(#""type":"UsageReported","value":{"meterName":""#), let meterName = stringBody(), !meterName.isEmpty
        else { return nil }
        var properties: [String: String] = [:]
        if literal(#","properties":{"#), !literal("}") {
            let start = index
            propertyRanges.removeAll(keepingCapacity: true)
            repeat {
                guard literal("\""), let key = stringBody(), literal(#":""#), let value = stringBody() else { return nil }
                propertyRanges.append((key, value))
            } while literal(",")
            guard literal("}") else { return nil }
            guard let read = recentProperties(start..<index) else { return nil }
            properties = read
        }
        guard literal(#","quantity":"#), let number = number(),
            case .success(let quantity) = Quantity.parse(utf8: UnsafeBufferPointer(rebasing: bytes[number])), !quantity.isNegative
        else { return nil }
        var resourceId: String?
        var resourceUri: String?
        if literal(#","resourceId":""#) {
            guard let read = stringBody(), !read.isEmpty else { return nil }
            resourceId = text(read)
        }
        if literal(#","resourceUri":""#) {
            guard let read = stringBody(), !read.isEmpty else { return nil }
            resourceUri = text(read)
        }
        guard resourceId != nil || resourceUri != nil, literal(#","timestamp":""#), let timestamp = stringBody(),
            let time = self.time(timestamp, memo: &timestampMemo), literal("}}")
        else { return nil }
        let usage = UsageReported(
            resource: ResourceName(resourceId: resourceId, resourceUri: resourceUri), timestamp: time, meterName: text(meterName),
            quantity: quantity, properties: properties)
        return Message(id: id, body: .usageReported(consume usage))
    }

    /// The properties whose entries (`propertyRanges`) were just read from the bytes `span`, their
    /// closing brace included: the dictionary of an earlier record of the answer with the very same
    /// bytes when there is one (the records of an answer mostly repeat a few), else a new one,
    /// kept for the next records. Nil when a key is repeated.
    mutating func recentProperties(_ span: Range<Int>) -> [String: String]? {
        for position in propertiesSeen.indices where bytes[propertiesSeen[position].span].elementsEqual(bytes[span]) {
            return propertiesSeen[position].properties
        }
        var made: [String: String] = [:]
        made.reserveCapacity(propertyRanges.count)
        for (key, value) in propertyRanges {
            guard made.updateValue(text(value), forKey: text(key)) == nil else { return nil }
        }
        if propertiesSeen.count < Self.propertiesKept {
            propertiesSeen.append((span, made))
        } else {
            propertiesSeen[propertiesReplaced] = (span, made)
            propertiesReplaced = (propertiesReplaced + 1) % Self.propertiesKept
        }
        return made
    }

    /// How many distinct sets of properties `recentProperties` keeps (compared byte for byte, in
    /// turn, before a new one is made).
    static let propertiesKept = 8

    /// A record with its members in any order, handed to `record` or `undecodable`; false when it
    /// is not one.
    mutating func record(
        _ record: (Int, UInt64, Timestamp, consuming Message) -> Void, _ undecodable: (Int, UInt64, Timestamp, MessageError) -> Void
    ) -> Bool {
        guard expect(UInt8(ascii: "{")) else { return false }
        var partition: UInt64?
        var sequence: UInt64?
        var time: Timestamp?
        var message: Result<Message, MessageError>?
        repeat {
            guard let key = plainString(), expect(UInt8(ascii: ":")) else { return false }
            if equals(key, "partition") {
                guard partition == nil, let value = unsigned() else { return false }
                partition = value
            } else if equals(key, "sequence") {
                guard sequence == nil, let value = unsigned() else { return false }
                sequence = value
            } else if equals(key, "enqueuedTime") {
                guard time == nil, let value = plainString() else { return false }
                time = self.time(value, memo: &enqueuedMemo)
            } else if equals(key, "event") {
                guard message == nil else { return false }
                skipWhitespace()
                let start = index
                if let usage = usageMessage() {
                    message = .success(usage)
                } else {
                    index = start
                    guard let range = skipValue(),
                        let json = try? JSONParser.parse(UnsafeBufferPointer(rebasing: bytes[range]), maximumDepth: maximumDepth - 3)
                    else { return false }
                    message = Message.decode(json)
                }
            } else {
                return false
            }
        } while expect(UInt8(ascii: ","))
        guard expect(UInt8(ascii: "}")), let partition, partition <= UInt64(Int.max), let sequence, let time, let message else {
            return false
        }
        switch message {
        case .success(let message): record(Int(partition), sequence, time, message)
        case .failure(let error): undecodable(Int(partition), sequence, time, error)
        }
        return true
    }
}

/// Where `FastMessageReader.writeUsage` writes: a counter of the bytes, or the payload itself.
protocol ByteSink {
    var count: Int { get }
    mutating func put(_ bytes: UnsafeBufferPointer<UInt8>)
}

extension ByteSink {
    @inline(__always)
    mutating func put(_ literal: StaticString) {
        put(UnsafeBufferPointer(start: literal.utf8Start, count: literal.utf8CodeUnitCount))
    }
}

/// Counts what would be written.
struct ByteCounter: ByteSink {
    var count = 0

    @inline(__always)
    mutating func put(_ bytes: UnsafeBufferPointer<UInt8>) { count += bytes.count }
}

/// Writes into memory with room for everything written (counted first by a `ByteCounter`).
struct ByteFiller: ByteSink {
    let base: UnsafeMutablePointer<UInt8>
    var count = 0

    @inline(__always)
    mutating func put(_ bytes: UnsafeBufferPointer<UInt8>) {
        guard let source = bytes.baseAddress else { return }
        (base + count).initialize(from: source, count: bytes.count)
        count += bytes.count
    }
}
