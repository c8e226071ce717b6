import Crypto
import Wire

/// Where a file source is: which file (by device and inode, so a rotation is recognized), how far
/// into it, and what the last bytes read were (so a truncated-and-refilled or replaced file is
/// recognized even when its inode and size say nothing).
struct FilePosition: Sendable, Equatable {
    var device: UInt64
    var inode: UInt64
    /// Bytes consumed: always at a line boundary, unless `discarding`.
    var offset: Int
    /// Lines consumed, for messages that point at a line.
    var line: Int
    /// Up to `tailLength` bytes just before `offset`: several lines, because the end of a log line
    /// is often the same in every line (`..."status":200}`) while its start (the time) is not.
    var tail: [UInt8]
    /// The CSV header of this file, once read.
    var header: [String]?
    /// Inside a line too long to keep.
    var discarding: Bool

    static let tailLength = 4096

    /// Moves past `bytes` (just read at `offset`).
    mutating func advance(over bytes: ArraySlice<UInt8>, newlines: Int) {
        offset += bytes.count
        line += newlines
        if bytes.count >= Self.tailLength {
            tail = Array(bytes.suffix(Self.tailLength))
        } else {
            tail = Array((tail + bytes).suffix(Self.tailLength))
        }
    }
}

/// A line that could not be counted, kept as an example for operators.
struct MalformedExample: Sendable, Equatable {
    /// Where: `line 17 of /var/log/gw/access.log` or `run at 2024-05-01T13:00:00Z, line 3`.
    var at: String
    var reason: String
    /// The line's first bytes.
    var text: String
}

/// A meter's counters.
struct MeterCounters: Sendable, Equatable {
    var counted = 0
    var skipped = 0
    var malformed = 0
    var late = 0
    var events = 0
    var quantity = Quantity.zero
}

/// What a source has done since its watermark was created; persisted with the position so the
/// counts stay true across restarts (a line re-read after a crash is counted once).
struct SourceCounters: Sendable, Equatable {
    var read = 0
    var counted = 0
    var skipped = 0
    var malformed = 0
    var late = 0
    var rotations = 0
    var truncations = 0
    var runs = 0
    var accepted = 0
    var duplicates = 0
    var rejected = 0
    var meters: [String: MeterCounters] = [:]
    /// The latest malformed lines, at most `examplesKept`.
    var examples: [MalformedExample] = []
    /// Events ingest refused for good and lines that may have been missed, latest first out.
    var problems: [String] = []

    static let examplesKept = 5

    mutating func noteMalformed(_ example: MalformedExample) {
        examples.append(example)
        if examples.count > Self.examplesKept { examples.removeFirst(examples.count - Self.examplesKept) }
    }

    mutating func noteProblem(_ text: String) {
        problems.append(text)
        if problems.count > Self.examplesKept { problems.removeFirst(problems.count - Self.examplesKept) }
    }
}

/// Everything a source must not forget: its position, its open hours, the events decided but not
/// yet acknowledged by ingest (the outbox), and its counters. Written atomically as one document,
/// so the position and the sums always agree.
struct SourceState: Sendable, Equatable {
    enum Kind: String, Sendable, Equatable {
        case file
        case command
    }

    var source: String
    var kind: Kind
    /// File sources: nil until the file was first opened.
    var file: FilePosition?
    /// Command sources: the end of the last run's window whose output is counted.
    var since: Timestamp?
    var accumulator = HourlyAccumulator()
    /// Events closed and persisted, not yet acknowledged by ingest: sent again at start-up.
    var outbox: [JSONValue] = []
    var counters = SourceCounters()

    init(source: String, kind: Kind) {
        self.source = source
        self.kind = kind
    }

    static let format = 1

    /// A watermark that cannot be read: which member and why.
    struct DecodingError: Error, Equatable, CustomStringConvertible {
        var path: String
        var reason: String
        var description: String { "\(path): \(reason)" }
    }
}

extension SourceState {
    /// The watermark document.
    var json: JSONValue {
        var members: [JSONObject.Member] = [
            .init("format", .number(String(Self.format))), .init("source", .string(source)), .init("kind", .string(kind.rawValue)),
        ]
        if let file {
            var position: [JSONObject.Member] = [
                .init("device", .number(String(file.device))), .init("inode", .number(String(file.inode))),
                .init("offset", .number(String(file.offset))), .init("line", .number(String(file.line))),
                .init("tail", .string(ByteText.base64URL(file.tail))), .init("discarding", .bool(file.discarding)),
            ]
            if let header = file.header { position.append(.init("header", .array(header.map { .string($0) }))) }
            members.append(.init("file", .object(JSONObject(position))))
        }
        if let since { members.append(.init("since", .string(since.iso8601))) }
        members.append(.init("emittedBefore", accumulator.emittedBefore.map { .string($0.iso8601) } ?? .null))
        let open: [JSONValue] = accumulator.open.sorted { $0.key < $1.key }.map { key, bucket in
            [
                "hour": .string(key.hour.iso8601), "meter": .string(key.meter), "subscription": .string(key.subscription),
                "total": bucket.total.json, "records": .number(String(bucket.records)), "late": .number(String(bucket.late)),
            ]
        }
        members.append(.init("open", .array(open)))
        members.append(.init("outbox", .array(outbox)))
        members.append(.init("counters", counters.json))
        return .object(JSONObject(members))
    }

    /// Reads a watermark document; any damage is an error naming the member.
    init(json: JSONValue) throws(DecodingError) {
        let root = try Reader(json, "")
        guard try root.int("format") == Self.format else {
            throw DecodingError(path: "format", reason: "unknown watermark format (this connector writes \(Self.format))")
        }
        source = try root.string("source")
        guard let kind = Kind(rawValue: try root.string("kind")) else { throw DecodingError(path: "kind", reason: "not file or command") }
        self.kind = kind
        if let fileValue = root["file"] {
            let file = try Reader(fileValue, "file")
            guard let tail = ByteText.bytes(base64URL: try file.string("tail", allowEmpty: true)) else {
                throw DecodingError(path: "file.tail", reason: "not base64url")
            }
            var header: [String]?
            if let headerValue = file["header"] {
                guard let list = headerValue.arrayValue else { throw DecodingError(path: "file.header", reason: "not an array") }
                header = try list.map { (value: JSONValue) throws(DecodingError) -> String in
                    guard let text = value.stringValue else { throw DecodingError(path: "file.header", reason: "not strings") }
                    return text
                }
            }
            guard case .bool(let discarding)? = file["discarding"] else {
                throw DecodingError(path: "file.discarding", reason: "missing or not a boolean")
            }
            self.file = FilePosition(
                device: try file.unsigned("device"), inode: try file.unsigned("inode"), offset: try file.int("offset"),
                line: try file.int("line"), tail: tail, header: header, discarding: discarding)
        }
        if root["since"] != nil { since = try root.time("since") }
        if root["emittedBefore"] != .null { accumulator.emittedBefore = try root.time("emittedBefore") }
        for (index, value) in try root.array("open").enumerated() {
            let entry = try Reader(value, "open[\(index)]")
            let key = HourlyAccumulator.Key(
                hour: try entry.time("hour"), meter: try entry.string("meter"), subscription: try entry.string("subscription"))
            accumulator.open[key] = HourlyAccumulator.Bucket(
                total: try entry.quantity("total"), records: try entry.int("records"), late: try entry.int("late"))
        }
        outbox = try root.array("outbox")
        counters = try SourceCounters(json: root["counters"] ?? .null)
    }
}

extension SourceCounters {
    var json: JSONValue {
        let meterList: [JSONValue] = meters.sorted { $0.key < $1.key }.map { name, meter in
            [
                "name": .string(name), "counted": .number(String(meter.counted)), "skipped": .number(String(meter.skipped)),
                "malformed": .number(String(meter.malformed)), "late": .number(String(meter.late)),
                "events": .number(String(meter.events)), "quantity": meter.quantity.json,
            ]
        }
        return [
            "read": .number(String(read)), "counted": .number(String(counted)), "skipped": .number(String(skipped)),
            "malformed": .number(String(malformed)), "late": .number(String(late)), "rotations": .number(String(rotations)),
            "truncations": .number(String(truncations)), "runs": .number(String(runs)), "accepted": .number(String(accepted)),
            "duplicates": .number(String(duplicates)), "rejected": .number(String(rejected)), "meters": .array(meterList),
            "malformedExamples": .array(
                examples.map { ["at": .string($0.at), "reason": .string($0.reason), "text": .string($0.text)] }),
            "problems": .array(problems.map { .string($0) }),
        ]
    }

    init(json: JSONValue) throws(SourceState.DecodingError) {
        let root = try Reader(json, "counters")
        read = try root.int("read")
        counted = try root.int("counted")
        skipped = try root.int("skipped")
        malformed = try root.int("malformed")
        late = try root.int("late")
        rotations = try root.int("rotations")
        truncations = try root.int("truncations")
        runs = try root.int("runs")
        accepted = try root.int("accepted")
        duplicates = try root.int("duplicates")
        rejected = try root.int("rejected")
        for (index, value) in try root.array("meters").enumerated() {
            let meter = try Reader(value, "counters.meters[\(index)]")
            meters[try meter.string("name")] = MeterCounters(
                counted: try meter.int("counted"), skipped: try meter.int("skipped"), malformed: try meter.int("malformed"),
                late: try meter.int("late"), events: try meter.int("events"), quantity: try meter.quantity("quantity"))
        }
        for (index, value) in try root.array("malformedExamples").enumerated() {
            let example = try Reader(value, "counters.malformedExamples[\(index)]")
            examples.append(
                MalformedExample(
                    at: try example.string("at"), reason: try example.string("reason"), text: try example.string("text", allowEmpty: true)))
        }
        for value in try root.array("problems") {
            guard let text = value.stringValue else { throw SourceState.DecodingError(path: "counters.problems", reason: "not strings") }
            problems.append(text)
        }
    }
}

/// Typed member access for the watermark, failing with the member's path.
private struct Reader {
    let object: JSONObject
    let path: String

    init(_ value: JSONValue, _ path: String) throws(SourceState.DecodingError) {
        guard let object = value.objectValue else {
            throw SourceState.DecodingError(path: path.isEmpty ? "(document)" : path, reason: "not an object")
        }
        self.object = object
        self.path = path
    }

    subscript(key: String) -> JSONValue? { object[key] }

    private func fail(_ key: String, _ reason: String) -> SourceState.DecodingError {
        SourceState.DecodingError(path: path.isEmpty ? key : path + "." + key, reason: reason)
    }

    func string(_ key: String, allowEmpty: Bool = false) throws(SourceState.DecodingError) -> String {
        guard let text = object[key]?.stringValue, allowEmpty || !text.isEmpty else { throw fail(key, "missing or not a string") }
        return text
    }

    func int(_ key: String) throws(SourceState.DecodingError) -> Int {
        guard let number = object[key]?.intValue, number >= 0 else { throw fail(key, "missing or not a whole number ≥ 0") }
        return number
    }

    func unsigned(_ key: String) throws(SourceState.DecodingError) -> UInt64 {
        guard case .number(let text)? = object[key], let number = UInt64(text) else { throw fail(key, "missing or not a whole number ≥ 0") }
        return number
    }

    func time(_ key: String) throws(SourceState.DecodingError) -> Timestamp {
        guard let text = object[key]?.stringValue, let time = Timestamp(iso8601: text) else { throw fail(key, "missing or not a time") }
        return time
    }

    func quantity(_ key: String) throws(SourceState.DecodingError) -> Quantity {
        guard case .number(let text)? = object[key], let value = Quantity(exactly: text) else {
            throw fail(key, "missing or not an exact number")
        }
        return value
    }

    func array(_ key: String) throws(SourceState.DecodingError) -> [JSONValue] {
        guard let list = object[key]?.arrayValue else { throw fail(key, "missing or not an array") }
        return list
    }
}
