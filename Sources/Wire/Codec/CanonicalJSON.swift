/// The one JSON form ingest stores every message in, and digests: compact (no white space),
/// object members sorted by key (byte order), numbers written as their exact decimal value where
/// they are one (`1.50` and `1.5` are the same quantity, written `1.5`; a number that is no
/// quantity keeps its text), strings re-escaped minimally (only `"`, `\\` and control characters;
/// `\u00e9` becomes `é`, `\/` becomes `/`). Times are strings and are kept as sent.
///
/// Two spellings of one message have one canonical form, so a resend is recognised whatever its
/// white space, member order or escapes, and followers can read the stored form on a fast path
/// that expects its layout.
public enum CanonicalJSON {
    /// The canonical bytes of `value`.
    public static func bytes(_ value: JSONValue) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        write(value, to: &out)
        return out
    }

    /// Appends the canonical bytes of `value` to `out`.
    public static func write(_ value: JSONValue, to out: inout [UInt8]) {
        switch value {
        case .number(let text):
            if let quantity = Quantity(exactly: text) {
                quantity.appendDescription(to: &out)
            } else {
                out.append(contentsOf: text.utf8)
            }
        case .array(let elements):
            out.append(UInt8(ascii: "["))
            for (position, element) in elements.enumerated() {
                if position > 0 { out.append(UInt8(ascii: ",")) }
                write(element, to: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let object):
            out.append(UInt8(ascii: "{"))
            var members = object.members
            // Most objects are small and many are already in order: check before sorting.
            if !zip(members, members.dropFirst()).allSatisfy({ $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }) {
                members.sort { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }
            }
            for (position, member) in members.enumerated() {
                if position > 0 { out.append(UInt8(ascii: ",")) }
                JSONWriter.writeString(member.key, to: &out)
                out.append(UInt8(ascii: ":"))
                write(member.value, to: &out)
            }
            out.append(UInt8(ascii: "}"))
        case .null, .bool, .string:
            JSONWriter.write(value, to: &out)
        }
    }
}
