import Foundation
import Wire

/// One input record: a JSON object (a line of newline-delimited JSON) or a CSV row with its header.
///
/// Fields are read as text: a JSON string as is, a number as its literal (never through `Double`,
/// so `0.1` stays exact), a boolean as `true`/`false`. `null`, objects and arrays have no text.
enum Record: Sendable {
    case object(JSONObject)
    case row(CSVHeader, [String])

    /// The text of `field` (for JSON a dotted path into nested objects: `request.tenant`), or nil
    /// when the record has no such scalar field.
    func text(_ field: FieldPath) -> String? {
        switch self {
        case .object(let object):
            var current = JSONValue.object(object)
            for component in field.components {
                guard let next = current[component] else { return nil }
                current = next
            }
            switch current {
            case .string(let text): return text
            case .number(let literal): return literal
            case .bool(let flag): return flag ? "true" : "false"
            case .null, .object, .array: return nil
            }
        case .row(let header, let values):
            guard let index = header.index[field.name] else { return nil }
            return values[index]
        }
    }
}

/// The name of a record field: a CSV column, or a dotted path into a JSON object.
struct FieldPath: Sendable, Hashable, CustomStringConvertible {
    var name: String
    var components: [String]

    init(_ name: String) {
        self.name = name
        components = name.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
    }

    var description: String { name }
}

/// A CSV file's (or command run's) first line: the column names.
struct CSVHeader: Sendable, Equatable {
    var names: [String]
    var index: [String: Int]

    /// Reads a header line; names must be non-empty and unique.
    static func parse(_ line: some Collection<UInt8>, delimiter: UInt8) -> Result<CSVHeader, RecordError> {
        let names: [String]
        switch CSV.fields(line, delimiter: delimiter) {
        case .failure(let error): return .failure(RecordError("header line: \(error.reason)"))
        case .success(let fields): names = fields.map { $0.trimmingCharacters(in: .whitespaces) }
        }
        return make(names)
    }

    /// Stands for a header line that could not be read: no row under it is usable.
    static let unusable = CSVHeader(names: [], index: [:])

    /// A header from stored names (a watermark keeps the header of the file being read).
    static func make(_ names: [String]) -> Result<CSVHeader, RecordError> {
        var index: [String: Int] = [:]
        for (position, name) in names.enumerated() {
            guard !name.isEmpty else { return .failure(RecordError("header line: column \(position + 1) has no name")) }
            guard index[name] == nil else { return .failure(RecordError("header line: column \"\(name)\" appears twice")) }
            index[name] = position
        }
        return .success(CSVHeader(names: names, index: index))
    }
}

/// Why a line is not a usable record.
struct RecordError: Error, Equatable, Sendable, CustomStringConvertible {
    var reason: String
    init(_ reason: String) { self.reason = reason }
    var description: String { reason }
}

/// Turns lines into records, per the source's format.
enum RecordParser {
    /// One line of newline-delimited JSON: exactly one object.
    static func ndjson(_ line: some Collection<UInt8>) -> Result<Record, RecordError> {
        let value: JSONValue
        do {
            value = try JSONParser.parse(line, maximumDepth: 32)
        } catch {
            return .failure(RecordError("not JSON: \(error)"))
        }
        guard let object = value.objectValue else { return .failure(RecordError("a line must be a JSON object, got \(value.typeName)")) }
        return .success(.object(object))
    }

    /// One CSV row under `header`: as many fields as the header has names.
    static func csv(_ line: some Collection<UInt8>, header: CSVHeader, delimiter: UInt8) -> Result<Record, RecordError> {
        switch CSV.fields(line, delimiter: delimiter) {
        case .failure(let error): return .failure(error)
        case .success(let values):
            guard !header.names.isEmpty else { return .failure(RecordError("the header line of this file is unusable")) }
            guard values.count == header.names.count else {
                return .failure(RecordError("\(values.count) fields where the header names \(header.names.count)"))
            }
            return .success(.row(header, values))
        }
    }
}

/// RFC 4180 fields of one line: a field is plain text, or quoted (`"a, ""b"""`), in which case the
/// delimiter and doubled quotes may appear inside. Records never span lines here: a quote left
/// open at the end of the line is an error, not a continuation.
enum CSV {
    static func fields(_ line: some Collection<UInt8>, delimiter: UInt8) -> Result<[String], RecordError> {
        let bytes = Array(line)
        guard String(validating: bytes, as: UTF8.self) != nil else { return .failure(RecordError("not valid UTF-8")) }
        let quote = UInt8(ascii: "\"")
        var fields: [String] = []
        var field: [UInt8] = []
        var index = 0
        var atFieldStart = true
        while index <= bytes.count {
            if index == bytes.count {
                fields.append(String(decoding: field, as: UTF8.self))
                break
            }
            let byte = bytes[index]
            if atFieldStart && byte == quote {
                index += 1
                var closed = false
                while index < bytes.count {
                    if bytes[index] == quote {
                        if index + 1 < bytes.count && bytes[index + 1] == quote {
                            field.append(quote)
                            index += 2
                            continue
                        }
                        closed = true
                        index += 1
                        break
                    }
                    field.append(bytes[index])
                    index += 1
                }
                guard closed else { return .failure(RecordError("a quoted field is not closed on its line")) }
                guard index == bytes.count || bytes[index] == delimiter else {
                    return .failure(RecordError("text after a closing quote in field \(fields.count + 1)"))
                }
                atFieldStart = false
                continue
            }
            if byte == delimiter {
                fields.append(String(decoding: field, as: UTF8.self))
                field.removeAll(keepingCapacity: true)
                atFieldStart = true
            } else {
                field.append(byte)
                atFieldStart = false
            }
            index += 1
        }
        return .success(fields)
    }
}
