import Foundation
import Testing
import Wire

@testable import Connector

@Suite("Connector configuration")
struct ConfigTests {
    static let meter = #"{"name":"calls","subscription":{"field":"tenant"},"timestamp":"time","quantity":{"count":true}}"#

    static func config(source: String = #""name":"gw","file":"/var/log/gw.log","format":"ndjson""#, meter: String = meter) -> String {
        #"{"sources":[{\#(source),"meters":[\#(meter)]}]}"#
    }

    func failure(_ text: String) -> String {
        do {
            _ = try ConnectorConfig.parse(text)
            return "parsed"
        } catch {
            return error.description
        }
    }

    @Test("The worked example of docs/CONNECTORS.md is a valid configuration, with the meters it describes")
    func documentedExample() throws {
        let doc = try String(contentsOfFile: Self.docsPath, encoding: .utf8)
        let start = try #require(doc.range(of: "```json\n"))
        let end = try #require(doc.range(of: "\n```", range: start.upperBound..<doc.endIndex))
        let config = try ConnectorConfig.parse(String(doc[start.upperBound..<end.lowerBound]))
        #expect(config.sources.map(\.name) == ["gateway", "batch-jobs"])
        let calls = try #require(config.sources[0].meters.first)
        #expect(calls.amount == .count)
        #expect(calls.scale == Quantity(exactly: "0.001"))
        #expect(calls.subscriptionKey == .resourceId)
    }

    static var docsPath: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("docs/CONNECTORS.md").path
    }

    @Test("Defaults: grace 300 s, poll 1 s, start at the beginning, scale 1, meterName = name")
    func defaults() throws {
        let config = try ConnectorConfig.parse(Self.config())
        #expect(config.graceSeconds == 300)
        #expect(config.pollMilliseconds == 1000)
        let source = config.sources[0]
        #expect(source.input == .file(path: "/var/log/gw.log", startAtEnd: false, rotateWaitSeconds: 5))
        #expect(source.graceSeconds == 300)
        #expect(source.maxLineBytes == 65536)
        #expect(source.meters[0].meterName == "calls")
        #expect(source.meters[0].scale == Quantity(1))
        #expect(source.meters[0].timeFormat == .iso8601)
    }

    @Test("A command source takes its program, interval and timeout; filters of all three kinds parse")
    func commandAndFilters() throws {
        let meter = #"""
            {"name":"cpu","meterName":"cpu_hours","filter":[{"field":"state","equals":"done"},{"field":"code","in":[0,"ok",true]},
             {"field":"queue","prefix":"prod-"}],"subscription":{"field":"uri","as":"resourceUri"},
             "timestamp":{"field":"ended","format":"unixMilliseconds"},"quantity":{"sum":"cpuSeconds","scale":"0.000277"}}
            """#
        let config = try ConnectorConfig.parse(
            Self.config(
                source: #""name":"jobs","command":["/usr/bin/jobs","--json"],"intervalSeconds":30,"format":"csv","delimiter":";""#,
                meter: meter))
        let source = config.sources[0]
        #expect(source.input == .command(arguments: ["/usr/bin/jobs", "--json"], intervalSeconds: 30, timeoutSeconds: 30))
        #expect(source.delimiter == UInt8(ascii: ";"))
        let rule = source.meters[0]
        #expect(rule.conditions.map(\.test) == [.equals("done"), .oneOf(["0", "ok", "true"]), .prefix("prod-")])
        #expect(rule.subscriptionKey == .resourceUri)
        #expect(rule.timeFormat == .unixMilliseconds)
        #expect(rule.amount == .sum(FieldPath("cpuSeconds")))
        #expect(rule.scale == Quantity(exactly: "0.000277"))
    }

    @Test("Every mistake is refused with the path of the member at fault")
    func errorsNameTheMember() {
        let cases: [(String, String)] = [
            ("{", "not valid JSON"),
            (#"{"sources":[]}"#, "sources: must name at least one source"),
            (#"{"sources":[],"graceSecond":5}"#, "graceSecond: unknown member"),
            (#"{"graceSeconds":-1,"sources":[]}"#, "graceSeconds: must be a whole number from 0 to 86400, got -1"),
            (Self.config(source: #""name":"gw","format":"ndjson""#), "sources[0]: give either \"file\""),
            (Self.config(source: #""name":"gw","file":"/a","command":["/b"],"format":"ndjson""#), "sources[0]: give either"),
            (
                Self.config(source: #""name":"gw","file":"relative.log","format":"ndjson""#),
                "sources[0].file: \"relative.log\" must be an absolute path"
            ),
            (Self.config(source: #""name":"gw","file":"/a","format":"xml""#), "sources[0].format: \"xml\" is not"),
            (Self.config(source: #""name":"g:w","file":"/a","format":"ndjson""#), "sources[0].name: \"g:w\" must be 1 to 40"),
            (Self.config(source: #""name":"gw","file":"/a","format":"ndjson","delimiter":";""#), "sources[0].delimiter: only a \"csv\""),
            (Self.config(source: #""name":"gw","file":"/a","format":"ndjson","intervalSeconds":5"#), "sources[0].intervalSeconds: only a"),
            (
                Self.config(source: #""name":"gw","command":["sh"],"format":"ndjson""#),
                "sources[0].command[0]: \"sh\" must be an absolute path"
            ),
            (Self.config(source: #""name":"gw","file":"/a","format":"ndjson","startAt":"middle""#), "sources[0].startAt: \"middle\""),
            (
                Self.config(meter: #"{"name":"calls","subscription":{"field":"t"},"timestamp":"time"}"#),
                "sources[0].meters[0].quantity: missing"
            ),
            (
                Self.config(meter: #"{"name":"c","subscription":{"field":"t"},"timestamp":"time","quantity":{"count":true,"sum":"b"}}"#),
                "sources[0].meters[0].quantity: give exactly one"
            ),
            (
                Self.config(meter: #"{"name":"c","subscription":{"field":"t"},"timestamp":"time","quantity":{"count":true,"scale":0}}"#),
                "sources[0].meters[0].quantity.scale: must be greater than 0"
            ),
            (
                Self.config(
                    meter: #"{"name":"c","subscription":{"field":"t"},"timestamp":"time","quantity":{"count":true,"scale":"1/3"}}"#),
                "sources[0].meters[0].quantity.scale: \"1/3\" is not a decimal number"
            ),
            (
                Self.config(
                    meter: #"{"name":"c","subscription":{"field":"t","as":"tenant"},"timestamp":"time","quantity":{"count":true}}"#),
                "sources[0].meters[0].subscription.as: \"tenant\" is not"
            ),
            (
                Self.config(
                    meter:
                        #"{"name":"c","subscription":{"field":"t"},"timestamp":{"field":"t","format":"rfc822"},"quantity":{"count":true}}"#),
                "sources[0].meters[0].timestamp.format: \"rfc822\""
            ),
            (
                Self.config(
                    meter:
                        #"{"name":"c","filter":[{"field":"s","equals":"1","prefix":"2"}],"subscription":{"field":"t"},"timestamp":"t","quantity":{"count":true}}"#
                ),
                "sources[0].meters[0].filter[0]: give exactly one of"
            ),
            (
                Self.config(
                    meter:
                        #"{"name":"c","filter":[{"field":"s","in":[{}]}],"subscription":{"field":"t"},"timestamp":"t","quantity":{"count":true}}"#
                ),
                "sources[0].meters[0].filter[0].in[0]: must be a string, a number or a boolean"
            ),
            (Self.config(meter: Self.meter + "," + Self.meter), "sources[0].meters[1].name: \"calls\" names another meter"),
            (
                #"{"sources":[{"name":"a","file":"/a","format":"ndjson","meters":[\#(Self.meter)]},{"name":"a","file":"/b","format":"ndjson","meters":[\#(Self.meter)]}]}"#,
                "sources[1].name: \"a\" names another source"
            ),
        ]
        for (text, expected) in cases {
            let message = failure(text)
            #expect(message.hasPrefix(expected), "\(text) → \(message)")
        }
    }
}
