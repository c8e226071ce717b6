package import Wire

/// Builds a binary snapshot: little-endian fixed-width integers, LEB128 varints, and strings as
/// indexes into a table written once in front of the body, so a name repeated across 100,000s of
/// subscriptions and items costs its bytes once (and decodes once, into one shared string).
///
/// Pure: it only appends to arrays. `ByteReader` reads what it writes.
package struct ByteWriter {
    private var body: [UInt8] = []
    private var table: [String] = []
    private var indexes: [String: Int] = [:]

    package init(capacity: Int = 0) { body.reserveCapacity(capacity) }

    /// `magic`, the string table, then the body.
    package func finished(magic: [UInt8]) -> [UInt8] {
        var head = ByteWriter()
        head.body = magic
        head.varint(UInt64(table.count))
        for text in table {
            var text = text
            text.withUTF8 { utf8 in
                head.varint(UInt64(utf8.count))
                head.body.append(contentsOf: utf8)
            }
        }
        head.body.reserveCapacity(head.body.count + body.count)
        head.body.append(contentsOf: body)
        return head.body
    }

    package mutating func byte(_ value: UInt8) { body.append(value) }

    package mutating func flag(_ value: Bool) { body.append(value ? 1 : 0) }

    /// An unsigned LEB128 varint: 7 bits a byte, low bits first.
    package mutating func varint(_ value: UInt64) {
        var rest = value
        while rest >= 0x80 {
            body.append(UInt8(truncatingIfNeeded: rest) | 0x80)
            rest >>= 7
        }
        body.append(UInt8(rest))
    }

    /// A signed integer, zigzag-encoded so small negative numbers stay short.
    package mutating func int(_ value: Int) { varint(UInt64(bitPattern: Int64(value) << 1 ^ Int64(value) >> 63)) }

    package mutating func count(_ value: Int) { varint(UInt64(value)) }

    package mutating func int64(_ value: Int64) {
        withUnsafeBytes(of: value.littleEndian) { body.append(contentsOf: $0) }
    }

    package mutating func timestamp(_ time: Timestamp) { int64(time.microseconds) }

    /// A quantity as its 16 bytes of units.
    package mutating func quantity(_ quantity: Quantity) {
        withUnsafeBytes(of: quantity.units.littleEndian) { body.append(contentsOf: $0) }
    }

    /// A string, as its index in the table.
    package mutating func string(_ text: String) {
        if let index = indexes[text] {
            varint(UInt64(index))
        } else {
            indexes[text] = table.count
            varint(UInt64(table.count))
            table.append(text)
        }
    }

    /// Whether the value is there (a flag), then the value.
    package mutating func optional<Value>(_ value: Value?, _ write: (inout ByteWriter, Value) -> Void) {
        flag(value != nil)
        if let value { write(&self, value) }
    }

    /// The number of elements, then each.
    package mutating func list<Element>(_ elements: some Collection<Element>, _ write: (inout ByteWriter, Element) -> Void) {
        count(elements.count)
        for element in elements { write(&self, element) }
    }
}
