import Testing
import Wire

@Suite("JSON parser")
struct JSONParserTests {
    @Test("numbers keep their literal text, objects their member order")
    func keepsLiteralsAndOrder() throws {
        let value = try JSONParser.parse(#"{"b":9.1234567890123461,"a":[1,-0.5e3,true,null],"c":"x"}"#)
        #expect(value.objectValue?.keys == ["b", "a", "c"])
        #expect(value["b"] == .number("9.1234567890123461"))
        #expect(value["a"] == .array([.number("1"), .number("-0.5e3"), .bool(true), .null]))
    }

    @Test("a leading UTF-8 byte-order mark is skipped")
    func skipsBOM() throws {
        #expect(try JSONParser.parse([0xEF, 0xBB, 0xBF] + Array("{}".utf8)) == .object(JSONObject()))
    }

    @Test("escapes and non-ASCII text decode, and the writer escapes them back")
    func escapesRoundTrip() throws {
        let value = try JSONParser.parse(#"["a\"b\\c\n\u00e9\ud83d\ude00", "grüße"]"#)
        #expect(value == .array([.string("a\"b\\c\né😀"), .string("grüße")]))
        #expect(try JSONParser.parse(JSONWriter.bytes(value)) == value)
    }

    @Test("the writer escapes each quote, backslash and control character wherever it falls, and copies the rest as it is")
    func writerEscapesEveryPlace() throws {
        func escaped(_ byte: UInt8) -> String {
            switch byte {
            case 0x22: return #"\""#
            case 0x5C: return #"\\"#
            case 0x0A: return #"\n"#
            case 0x0D: return #"\r"#
            case 0x09: return #"\t"#
            default: return byte < 0x20 ? "\\u00" + String(byte, radix: 16).leftPadded(to: 2) : String(UnicodeScalar(byte))
            }
        }
        for byte in UInt8(0)...0x7F {
            let character = String(UnicodeScalar(byte))
            for (text, expected) in [
                (character, escaped(byte)), ("ab" + character, "ab" + escaped(byte)), (character + "yz", escaped(byte) + "yz"),
                ("grüße" + character + character + "é😀", "grüße" + escaped(byte) + escaped(byte) + "é😀"),
            ] {
                var out: [UInt8] = []
                JSONWriter.writeString(text, to: &out)
                #expect(String(decoding: out, as: UTF8.self) == "\"" + expected + "\"", "byte \(byte)")
                #expect(try JSONParser.parse(out) == .string(text))
            }
        }
        var empty: [UInt8] = []
        JSONWriter.writeString("", to: &empty)
        #expect(empty == Array(#""""#.utf8))
    }

    @Test(
        "malformed documents are rejected",
        arguments: [
            "", "{", "{\"a\":}", "[1,]", "{\"a\":1,}", "01", "1.", ".5", "-", "NaN", "Infinity", "-Infinity",
            "{\"a\":NaN}", "tru", "nul", "\"abc", "\"\\x\"", "\"\\ud800\"", "\"\\udc00\"", "[1] [2]", "{'a':1}",
            "{\"a\":1,\"a\":2}", "\"a\u{01}b\"",
        ])
    func rejectsMalformed(text: String) {
        #expect(throws: JSONParser.Failure.self) { try JSONParser.parse(text) }
    }

    @Test("invalid UTF-8 inside strings is rejected")
    func rejectsInvalidUTF8() {
        for bad: [UInt8] in [[0xFF], [0xC3], [0xED, 0xA0, 0x80], [0xC0, 0xAF]] {
            let document = Array("[\"".utf8) + bad + Array("\"]".utf8)
            #expect(throws: JSONParser.Failure.self) { try JSONParser.parse(document) }
        }
    }

    @Test("nesting up to the limit parses; deeper is an error, never a stack overflow")
    func depthLimit() throws {
        let ok = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
        _ = try JSONParser.parse(ok)
        let deep = String(repeating: "[", count: 65) + String(repeating: "]", count: 65)
        #expect(throws: JSONParser.Failure.self) { try JSONParser.parse(deep) }
        let hostile = String(repeating: "{\"a\":[", count: 200_000)
        #expect(throws: JSONParser.Failure.self) { try JSONParser.parse(hostile) }
    }

    @Test("equivalence ignores member order and number spelling")
    func equivalence() throws {
        let a = try JSONParser.parse(#"{"x":1.0,"y":[1,2]}"#)
        let b = try JSONParser.parse(#"{"y":[1,2.00],"x":1}"#)
        #expect(a.isEquivalent(to: b))
        #expect(!a.isEquivalent(to: try JSONParser.parse(#"{"x":1.1,"y":[1,2]}"#)))
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}
