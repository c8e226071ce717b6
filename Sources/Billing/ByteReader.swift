package import Wire

/// Reads what `ByteWriter` wrote, never trusting it: every read checks the bytes left, every count
/// is checked against them before anything is reserved (each element takes a byte at least), and
/// every string index against the table, so truncated, damaged or hostile bytes throw
/// `SnapshotError` instead of trapping or allocating what they claim.
package struct ByteReader {
    private let bytes: ArraySlice<UInt8>
    private var offset: Int
    /// The string table, each string decoded once.
    private var table: [String] = []

    /// The times a snapshot can hold: the years ISO 8601 text has four digits for, as in JSON snapshots.
    static let times = Timestamp(year: 0, month: 1, day: 1).microseconds..<Timestamp(year: 10_000, month: 1, day: 1).microseconds

    /// A reader of `bytes`, which must start with `magic` and the string table.
    package init(_ bytes: ArraySlice<UInt8>, magic: [UInt8]) throws(SnapshotError) {
        self.bytes = bytes
        offset = bytes.startIndex
        guard bytes.starts(with: magic) else { throw SnapshotError("binary snapshot: not a billing state of this format") }
        offset += magic.count
        let strings = try count()
        table.reserveCapacity(strings)
        for _ in 0..<strings {
            let length = try count()
            let start = offset
            offset += length
            guard let text = String(validating: bytes[start..<offset], as: UTF8.self) else {
                throw failure("a string that is not UTF-8", at: start)
            }
            table.append(text)
        }
    }

    /// Whether every byte was read.
    package var isAtEnd: Bool { offset == bytes.endIndex }

    /// A `SnapshotError` naming the byte offset (from the start of the snapshot) and the problem.
    package func failure(_ problem: String, at position: Int? = nil) -> SnapshotError {
        SnapshotError("binary snapshot: \(problem) at byte \((position ?? offset) - bytes.startIndex)")
    }

    private mutating func take(_ count: Int) throws(SnapshotError) -> Int {
        guard bytes.endIndex - offset >= count else { throw failure("truncated") }
        defer { offset += count }
        return offset
    }

    package mutating func byte() throws(SnapshotError) -> UInt8 { bytes[try take(1)] }

    /// A byte that must be 0 or 1.
    package mutating func flag() throws(SnapshotError) -> Bool {
        switch try byte() {
        case 0: return false
        case 1: return true
        default: throw failure("a flag that is neither 0 nor 1", at: offset - 1)
        }
    }

    /// A LEB128 varint of at most 64 bits.
    package mutating func varint() throws(SnapshotError) -> UInt64 {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let next = try byte()
            guard shift < 63 || next <= 1 else { throw failure("a varint beyond 64 bits", at: offset - 1) }
            value |= UInt64(next & 0x7F) << shift
            if next < 0x80 { return value }
            shift += 7
        }
    }

    /// A zigzag-encoded signed integer.
    package mutating func int() throws(SnapshotError) -> Int {
        let raw = try varint()
        return Int(Int64(bitPattern: raw >> 1) ^ -Int64(bitPattern: raw & 1))
    }

    /// A number of elements that take `minimumBytes` each at least: refused when the bytes left
    /// cannot hold them, so what is reserved for them stays in proportion to the input.
    package mutating func count(minimumBytes: Int = 1) throws(SnapshotError) -> Int {
        let value = try varint()
        guard value <= UInt64((bytes.endIndex - offset) / minimumBytes) else {
            throw failure("a count of \(value) with fewer bytes left")
        }
        return Int(value)
    }

    package mutating func int64() throws(SnapshotError) -> Int64 {
        let start = try take(8)
        var value: UInt64 = 0
        for index in (start..<start + 8).reversed() { value = value << 8 | UInt64(bytes[index]) }
        return Int64(bitPattern: value)
    }

    /// A time within the years snapshots hold.
    package mutating func timestamp() throws(SnapshotError) -> Timestamp {
        let microseconds = try int64()
        guard Self.times.contains(microseconds) else { throw failure("a time out of range", at: offset - 8) }
        return Timestamp(microseconds: microseconds)
    }

    /// A quantity (never negative in a state).
    package mutating func quantity() throws(SnapshotError) -> Quantity {
        let start = try take(16)
        var value: UInt128 = 0
        for index in (start..<start + 16).reversed() { value = value << 8 | UInt128(bytes[index]) }
        return try SnapshotReader.checked(Quantity(units: Int128(bitPattern: value))) { failure("a quantity", at: start) }
    }

    /// A string from the table.
    package mutating func string() throws(SnapshotError) -> String {
        let index = try varint()
        guard index < UInt64(table.count) else { throw failure("string \(index) of a table of \(table.count)") }
        return table[Int(index)]
    }

    /// A string that must not be empty (names, plans, dimensions).
    package mutating func name() throws(SnapshotError) -> String {
        let text = try string()
        guard !text.isEmpty else { throw failure("an empty name") }
        return text
    }

    /// A value when its flag says it is there.
    package mutating func optional<Value>(_ read: (inout ByteReader) throws(SnapshotError) -> Value) throws(SnapshotError) -> Value? {
        try flag() ? try read(&self) : nil
    }

    /// A count, then as many elements, each of `minimumBytes` at least.
    package mutating func list<Element>(minimumBytes: Int, _ read: (inout ByteReader, Int) throws(SnapshotError) -> Element)
        throws(SnapshotError) -> [Element]
    {
        let count = try count(minimumBytes: minimumBytes)
        var elements: [Element] = []
        elements.reserveCapacity(count)
        for index in 0..<count { elements.append(try read(&self, index)) }
        return elements
    }

    /// One of `cases`, by its position.
    package mutating func choice<Case>(_ cases: [Case], _ what: String) throws(SnapshotError) -> Case {
        let index = try byte()
        guard Int(index) < cases.count else { throw failure("an unknown \(what) \(index)", at: offset - 1) }
        return cases[Int(index)]
    }
}
