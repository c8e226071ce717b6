/// `application/x-www-form-urlencoded` text: URL queries and the token endpoint's form bodies.
public enum FormEncoding {
    /// The parameters of `name=value&...`, percent-decoded with `+` as a space; the first of
    /// repeated names wins. Nil when an escape is malformed or decodes to invalid UTF-8.
    public static func parameters(_ text: String) -> [String: String]? {
        var result: [String: String] = [:]
        for pair in text.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let name = percentDecoded(String(parts[0]), plusIsSpace: true),
                let value = percentDecoded(parts.count > 1 ? String(parts[1]) : "", plusIsSpace: true)
            else { return nil }
            if result[name] == nil { result[name] = value }
        }
        return result
    }

    /// `text` with `%XX` escapes decoded (and `+` as a space in form data), or nil when an
    /// escape is malformed or the bytes are not UTF-8.
    public static func percentDecoded(_ text: String, plusIsSpace: Bool) -> String? {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count)
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            switch byte {
            case UInt8(ascii: "%"):
                guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else { return nil }
                bytes.append(high << 4 | low)
            case UInt8(ascii: "+") where plusIsSpace:
                bytes.append(UInt8(ascii: " "))
            default:
                bytes.append(byte)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
