/// Prometheus's text exposition format, version 0.0.4: `# HELP` and `# TYPE` lines, then one line
/// per sample, `name{label="value",...} value`. Pure: it writes bytes.
public enum TextExposition {
    /// The `Content-Type` of a text exposition.
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// Writes the `# HELP` and `# TYPE` lines of a family.
    static func header(_ name: String, help: String, kind: String, to out: inout [UInt8]) {
        out.append(contentsOf: "# HELP \(name) ".utf8)
        for byte in help.utf8 {
            switch byte {
            case UInt8(ascii: "\\"): out.append(contentsOf: #"\\"#.utf8)
            case UInt8(ascii: "\n"): out.append(contentsOf: #"\n"#.utf8)
            default: out.append(byte)
            }
        }
        out.append(contentsOf: "\n# TYPE \(name) \(kind)\n".utf8)
    }

    /// Writes one sample line; label values are escaped (backslash, double quote, line feed).
    static func sample(_ name: String, _ labelNames: [String], _ labelValues: [String], _ value: Double, to out: inout [UInt8]) {
        out.append(contentsOf: name.utf8)
        if !labelNames.isEmpty {
            out.append(UInt8(ascii: "{"))
            for (index, (label, text)) in zip(labelNames, labelValues).enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                out.append(contentsOf: label.utf8)
                out.append(contentsOf: "=\"".utf8)
                for byte in text.utf8 {
                    switch byte {
                    case UInt8(ascii: "\\"): out.append(contentsOf: #"\\"#.utf8)
                    case UInt8(ascii: "\""): out.append(contentsOf: #"\""#.utf8)
                    case UInt8(ascii: "\n"): out.append(contentsOf: #"\n"#.utf8)
                    default: out.append(byte)
                    }
                }
                out.append(UInt8(ascii: "\""))
            }
            out.append(UInt8(ascii: "}"))
        }
        out.append(UInt8(ascii: " "))
        out.append(contentsOf: number(value).utf8)
        out.append(UInt8(ascii: "\n"))
    }

    /// A value as the format writes it: whole numbers without a fraction, `+Inf`, `-Inf`, `NaN`.
    public static func number(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value > 0 ? "+Inf" : "-Inf" }
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return "\(value)"
    }
}
