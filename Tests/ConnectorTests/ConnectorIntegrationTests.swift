import Foundation
import StackTestSupport
import Testing
import Wire

#if canImport(Glibc)
    import Glibc
#endif

@Suite("meter-connector with meter-ingest on real files", .serialized)
struct ConnectorIntegrationTests {
    static let config = #"""
        {"graceSeconds":60,"pollMilliseconds":20,"sources":[
          {"name":"gateway","file":"$LOGS/access.log","format":"ndjson","maxLineBytes":1024,"rotateWaitSeconds":1,"meters":[\#(GatewayLine.meters)]},
          {"name":"jobs","file":"$LOGS/jobs.csv","format":"csv","meters":[
            {"name":"cpu","meterName":"cpu_seconds","filter":[{"field":"state","equals":"done"}],
             "subscription":{"field":"resource","as":"resourceUri"},"timestamp":{"field":"ended","format":"unixSeconds"},
             "quantity":{"sum":"cpu"}}]}]}
        """#

    static let subscriptions = ["sub-a", "sub-b", "sub-c"]

    /// Unix seconds of a minute in hour `hour` (UTC) of 2024-05-01.
    static func unix(_ hour: Int, _ minute: Int) -> Int { 1_714_521_600 + hour * 3600 + minute * 60 }

    @Test(
        "Growing NDJSON and CSV files, with lines split across writes, malformed and late lines: ingest's usage equals what the lines say"
    )
    func growingFiles() throws {
        let stack = try ConnectorStack(config: Self.config)
        let gateway = try LogWriter(stack.log("access.log"))
        let jobs = try LogWriter(stack.log("jobs.csv"))
        try stack.startConnector()
        var gatewayRead = 0
        var jobsRead = 0

        // Hour 10: lines of every kind, some written in two halves.
        var lines: [GatewayLine] = []
        for index in 0..<60 {
            var line = GatewayLine(subscription: Self.subscriptions[index % 3], time: "2024-05-01T10:\(10 + index % 50):0\(index % 10)Z")
            line.status = [200, 201, 404, 500][index % 4]
            line.method = ["GET", "POST", "DELETE"][index % 3 == 2 ? 2 : index % 2]
            line.path = index % 5 == 0 ? "/health" : "/v1/items/\(index)"
            line.bytes = index % 7 == 0 ? "0.5" : String(100 * index)
            lines.append(line)
        }
        for (index, line) in lines.enumerated() {
            if index % 9 == 0 {
                let text = line.text
                try gateway.write(String(text.prefix(text.count / 2)))
                usleep(30_000)
                try gateway.write(String(text.dropFirst(text.count / 2)))
            } else {
                try gateway.write(line.text)
            }
            line.expect(in: stack)
        }
        gatewayRead += lines.count
        let malformed = [
            "this is not json\n", "[1,2,3]\n",
            #"{"time":"2024-05-01T10:30:00Z","method":"GET","status":200,"path":"/v1/x","bytes":5}"# + "\n",
            #"{"time":"yesterday","subscription":"sub-a","method":"GET","status":200,"path":"/v1/x","bytes":5}"# + "\n",
            #"{"time":"2024-05-01T10:30:00Z","subscription":"sub-a","method":"GET","status":200,"path":"/v1/x","bytes":-5}"# + "\n",
            #"{"pad":""# + String(repeating: "x", count: 3000) + "\"}\n",
        ]
        for line in malformed { try gateway.write(line) }
        // The negative number is malformed for the egress meter only: the calls meter counts the line.
        stack.expect("api_calls", "sub-a", "2024-05-01T10:00:00Z", Quantity(exactly: "0.001")!)
        gatewayRead += malformed.count
        try gateway.write("\n  \n")  // blank lines are not records
        try jobs.write("ended,resource,state,cpu\n")
        for index in 0..<12 {
            let state = index % 4 == 3 ? "failed" : "done"
            let resource = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Solutions/applications/app-\(index % 2)"
            try jobs.write("\(Self.unix(10, index * 4)),\(resource),\(state),\(index).25\n")
            if state == "done" { stack.expect("cpu_seconds", resource, "2024-05-01T10:00:00Z", Quantity(exactly: "\(index).25")!) }
        }
        try jobs.write("not-a-time,x,done,1\n\"unclosed,x,done,1\n")
        jobsRead += 14
        try stack.waitForRead("gateway", records: gatewayRead)
        try stack.waitForRead("jobs", records: jobsRead)

        // Inside the grace period nothing is emitted.
        try stack.advance(to: "2024-05-01T11:00:30Z")
        try stack.waitForClock("2024-05-01T11:00:30Z", sources: ["gateway", "jobs"])
        let inGrace = try #require(stack.connector?.source("gateway"))
        #expect(inGrace["events"]?["accepted"] == 0)
        #expect(inGrace["emittedBefore"] == "2024-05-01T10:00:00Z")
        #expect((inGrace["lag"]?["records"]?.intValue ?? 0) > 0)

        // Hour 11 lines, then hour 10 closes.
        for index in 0..<20 {
            let line = GatewayLine(subscription: Self.subscriptions[index % 3], time: "2024-05-01T11:0\(index % 10):00Z")
            try gateway.write(line.text)
            line.expect(in: stack)
        }
        gatewayRead += 20
        try stack.waitForRead("gateway", records: gatewayRead)
        try stack.advance(to: "2024-05-01T11:01:00Z")
        try stack.waitForClock("2024-05-01T11:01:00Z", sources: ["gateway", "jobs"])
        let closed = try #require(stack.connector?.source("gateway"))
        #expect(closed["emittedBefore"] == "2024-05-01T11:00:00Z")
        #expect((closed["events"]?["accepted"]?.intValue ?? 0) > 0)

        // Late lines for hour 10 now count into hour 11, the oldest open hour.
        for index in 0..<7 {
            let line = GatewayLine(subscription: Self.subscriptions[index % 3], time: "2024-05-01T10:5\(index):00Z")
            try gateway.write(line.text)
            line.expect(in: stack, hour: "2024-05-01T11:00:00Z")
        }
        gatewayRead += 7
        let lateResource = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Solutions/applications/app-0"
        try jobs.write("\(Self.unix(10, 59)),\(lateResource),done,100\n")
        stack.expect("cpu_seconds", lateResource, "2024-05-01T11:00:00Z", Quantity(100))
        jobsRead += 1
        try stack.waitForRead("gateway", records: gatewayRead)
        try stack.waitForRead("jobs", records: jobsRead)
        try stack.advance(to: "2024-05-01T12:01:00Z")
        try stack.waitForClock("2024-05-01T12:01:00Z", sources: ["gateway", "jobs"])
        try stack.expectLedgerMatches()

        let status = try #require(stack.connector?.source("gateway"))
        #expect(status["records"]?["read"]?.intValue == gatewayRead)
        #expect(status["records"]?["malformed"]?.intValue == malformed.count)
        #expect(status["records"]?["late"] == 7)
        #expect(status["lag"]?["records"] == 0)
        #expect(status["events"]?["duplicates"] == 0)
        let reasons = (status["malformedExamples"]?.arrayValue ?? []).compactMap { $0["reason"]?.stringValue }
        #expect(reasons.count == 5)
        #expect(reasons.last == "longer than 1024 bytes (maxLineBytes); skipped")
        #expect(reasons.contains { $0.contains(#"no subscription in "subscription""#) })
        let jobsStatus = try #require(stack.connector?.source("jobs"))
        #expect(jobsStatus["records"]?["malformed"] == 2)
        #expect(jobsStatus["records"]?["late"] == 1)

        // What an operator sees.
        let text = try Self.meterctl(["connector", "status", "--home", stack.home.path])
        #expect(text.contains("meter-connector running"))
        #expect(text.contains("records:    \(gatewayRead) read"))
        #expect(text.contains("7 late"))
        #expect(text.contains("malformed (latest 5):"))
        #expect(text.contains("longer than 1024 bytes"))
        #expect(text.contains("egress_mb"))
        let json = try JSONParser.parse(try Self.meterctl(["connector", "status", "--json", "--home", stack.home.path]))
        #expect(json["sources"]?.arrayValue?.count == 2)
    }

    static func meterctl(_ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Binaries.path("meterctl"))
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        return String(decoding: data, as: UTF8.self)
    }

    @Test("A rename rotation (the writer still writing to the old file), copytruncate and plain truncations: nothing lost, nothing twice")
    func rotationAndTruncation() throws {
        let stack = try ConnectorStack(config: Self.config)
        let path = stack.log("access.log")
        let writer = try LogWriter(path)
        let connector = try stack.startConnector()
        var read = 0
        var minute = 0
        func write(_ count: Int, to log: LogWriter) throws {
            for _ in 0..<count {
                let line = GatewayLine(subscription: Self.subscriptions[minute % 3], time: "2024-05-01T10:\(10 + minute % 50):00Z")
                try log.write(line.text)
                line.expect(in: stack)
                minute += 1
            }
            read += count
        }
        try write(30, to: writer)
        try stack.waitForRead("gateway", records: read)

        // Rename rotation: the writer keeps writing to the renamed file for a while, then reopens.
        try FileManager.default.moveItem(atPath: path, toPath: path + ".1")
        try write(10, to: writer)
        usleep(100_000)
        try write(5, to: writer)
        try writer.reopen()
        try write(20, to: writer)
        try stack.waitForRead("gateway", records: read)
        #expect(connector.source("gateway")?["rotations"] == 1)

        // copytruncate while the connector is paused, with lines it had not read yet.
        kill(connector.process.processIdentifier, SIGSTOP)
        try write(15, to: writer)
        try FileManager.default.removeItem(atPath: path + ".1")
        try FileManager.default.copyItem(atPath: path, toPath: path + ".1")
        truncate(path, 0)
        try write(12, to: writer)
        kill(connector.process.processIdentifier, SIGCONT)
        try stack.waitForRead("gateway", records: read)
        #expect(connector.source("gateway")?["truncations"] == 1)

        // A truncation refilled past the old position before the connector looks: recognized by
        // the bytes before the position, not by the size.
        try stack.waitForRead("gateway", records: read)
        kill(connector.process.processIdentifier, SIGSTOP)
        try FileManager.default.removeItem(atPath: path + ".1")
        truncate(path, 0)
        try write(40, to: writer)
        kill(connector.process.processIdentifier, SIGCONT)
        try stack.waitForRead("gateway", records: read)
        let status = try #require(connector.source("gateway"))
        #expect(status["truncations"] == 2)
        #expect((status["problems"]?.arrayValue ?? []).contains { $0.stringValue?.contains("was truncated") == true })

        try stack.advance(to: "2024-05-01T11:01:00Z")
        try stack.waitForClock("2024-05-01T11:01:00Z", sources: ["gateway"])
        try stack.expectLedgerMatches()
        #expect(connector.source("gateway")?["records"]?["malformed"] == 0)
    }

    @Test("startAt end skips what the file holds at the first start (the CSV header is still read) and counts what follows")
    func startAtEnd() throws {
        let config = #"""
            {"graceSeconds":0,"pollMilliseconds":20,"sources":[{"name":"jobs","file":"$LOGS/jobs.csv","format":"csv","startAt":"end",
             "meters":[{"name":"cpu","meterName":"cpu_seconds","subscription":{"field":"resource"},
             "timestamp":{"field":"ended","format":"unixSeconds"},"quantity":{"sum":"cpu"}}]}]}
            """#
        let stack = try ConnectorStack(config: config)
        let jobs = try LogWriter(stack.log("jobs.csv"))
        try jobs.write("ended,resource,state,cpu\n")
        for index in 0..<3 { try jobs.write("\(Self.unix(10, index)),old,done,100\n") }
        // Unfinished when the connector starts: it is not skipped, it is the first line counted.
        try jobs.write("\(Self.unix(10, 30)),new,do")
        let connector = try stack.startConnector()
        try connector.waitForStatus { $0["sources"]?.arrayValue?.first?["watermark"]?["line"] == 4 }
        try jobs.write("ne,2.5\n\(Self.unix(10, 40)),new,done,0.5\n")
        stack.expect("cpu_seconds", "new", "2024-05-01T10:00:00Z", Quantity(3))
        try stack.waitForRead("jobs", records: 2)
        try stack.advance(to: "2024-05-01T11:00:00Z")
        try stack.waitForClock("2024-05-01T11:00:00Z", sources: ["jobs"])
        try stack.expectLedgerMatches()
    }
}
