import Foundation
import StackTestSupport
import Testing
import Wire

@testable import Connector

#if canImport(Glibc)
    import Glibc
#endif

@Suite("meter-connector across restarts, SIGKILL and failpoints", .serialized)
struct ConnectorCrashTests {
    static let config = #"""
        {"graceSeconds":60,"pollMilliseconds":20,"sources":[
          {"name":"gateway","file":"$LOGS/access.log","format":"ndjson","rotateWaitSeconds":1,"meters":[\#(GatewayLine.meters)]}]}
        """#

    /// Lines for `hour` (10…23 of 2024-05-01), numbered from `serial` so each is different.
    static func lines(_ count: Int, hour: Int, serial: inout Int) -> [GatewayLine] {
        (0..<count).map { _ in
            defer { serial += 1 }
            var line = GatewayLine(subscription: "sub-\(serial % 4)", time: "2024-05-01T\(hour):\(10 + serial % 50):\(10 + serial % 40)Z")
            line.bytes = "\(serial % 1000).\(serial % 7)"
            line.status = serial % 6 == 0 ? 503 : 200
            return line
        }
    }

    static func waitForExit(_ connector: ConnectorProcess, timeout: Double = 20) {
        let deadline = Date().addingTimeInterval(timeout)
        while connector.process.isRunning && Date() < deadline { usleep(20_000) }
        if connector.process.isRunning {
            Issue.record("meter-connector did not reach its failpoint: \(connector.readErrors())")
            connector.kill()
        }
    }

    @Test(
        "SIGKILL at the failpoints after and before an append, SIGTERM and SIGKILL at random moments, a rotation while stopped: ingest's usage equals the lines, none counted twice"
    )
    func crashes() throws {
        let stack = try ConnectorStack(config: Self.config)
        let path = stack.log("access.log")
        let writer = try LogWriter(path)
        var read = 0
        var serial = 0
        func write(_ count: Int, hour: Int, lateInto: String? = nil) throws {
            for line in Self.lines(count, hour: hour, serial: &serial) {
                try writer.write(line.text)
                line.expect(in: stack, hour: lateInto)
            }
            read += count
        }

        // Killed right after ingest acknowledged hour 10, before the watermark knew: the restart
        // sends the same events again and ingest answers duplicate.
        var connector = try stack.startConnector(["METERING_CONNECTOR_FAILPOINT": "after-append"])
        try write(40, hour: 10)
        try stack.waitForRead("gateway", records: read)
        try stack.advance(to: "2024-05-01T11:01:00Z")
        Self.waitForExit(connector)
        #expect(connector.process.terminationReason == .uncaughtSignal)
        // Written while it is dead, for the hour whose events ingest has: late, into hour 11 (had
        // the watermark been written only after the append, they would be re-counted into hour
        // 10's events, which ingest answers duplicate: lost).
        try write(3, hour: 10, lateInto: "2024-05-01T11:00:00Z")
        connector = try stack.startConnector()
        try stack.waitForClock("2024-05-01T11:01:00Z", sources: ["gateway"])
        let afterReplay = try #require(connector.source("gateway"))
        #expect((afterReplay["events"]?["duplicates"]?.intValue ?? 0) > 0)
        #expect(afterReplay["events"]?["accepted"] == 0)

        // Hour 11 and late lines of hour 10; killed after persisting the outbox, before sending it.
        connector.terminate()
        connector = try stack.startConnector(["METERING_CONNECTOR_FAILPOINT": "before-append"])
        try write(30, hour: 11)
        try write(5, hour: 10, lateInto: "2024-05-01T11:00:00Z")
        try stack.waitForRead("gateway", records: read)
        try stack.advance(to: "2024-05-01T12:01:00Z")
        Self.waitForExit(connector)
        connector = try stack.startConnector()
        try stack.waitForClock("2024-05-01T12:01:00Z", sources: ["gateway"])
        #expect(connector.source("gateway")?["records"]?["late"] == 8)
        try stack.expectLedgerMatches()

        // Hour 12: a writer goes on while the connector is killed (-9) at random moments.
        var generator = SplitMix64(seed: 20_240_501)
        let batch = Self.lines(400, hour: 12, serial: &serial)
        for line in batch { line.expect(in: stack) }
        read += batch.count
        let done = DispatchSemaphore(value: 0)
        let background = try LogWriter(path)
        Thread {
            for (index, line) in batch.enumerated() {
                try? background.write(line.text)
                if index % 20 == 0 { usleep(15_000) }
            }
            done.signal()
        }.start()
        for _ in 0..<4 {
            usleep(UInt32(50_000 + generator.next() % 200_000))
            connector.kill(SIGKILL)
            connector = try stack.startConnector()
        }
        done.wait()
        try stack.waitForRead("gateway", records: read)
        // And once while hours close.
        try stack.advance(to: "2024-05-01T13:01:00Z")
        usleep(UInt32(generator.next() % 30_000))
        connector.kill(SIGKILL)
        connector = try stack.startConnector()
        try stack.waitForClock("2024-05-01T13:01:00Z", sources: ["gateway"])
        try stack.expectLedgerMatches()

        // Hour 13: rotated while the connector is stopped; the writer goes on in the old file,
        // then reopens. The restart finds the old file as access.log.1 by its inode.
        try write(20, hour: 13)
        connector.terminate()
        try FileManager.default.moveItem(atPath: path, toPath: path + ".1")
        try write(10, hour: 13)
        try writer.reopen()
        try write(15, hour: 13)
        connector = try stack.startConnector()
        try stack.waitForRead("gateway", records: read)
        #expect(connector.source("gateway")?["rotations"] == 1)
        try stack.advance(to: "2024-05-01T14:01:00Z")
        try stack.waitForClock("2024-05-01T14:01:00Z", sources: ["gateway"])
        try stack.expectLedgerMatches()
        let status = try #require(connector.source("gateway"))
        #expect(status["events"]?["rejected"] == 0)
        #expect(status["records"]?["read"]?.intValue == read)
        #expect(status["problems"]?.arrayValue?.isEmpty == true)
    }

    @Test(
        "Killed during a rotation and restarted after the hour's grace: the hour closes only once the new file is read too, with all its lines and none late"
    )
    func restartDuringRotationAfterTheHour() throws {
        // One count per line, so the hour's quantity is its number of lines.
        func config(rotateWait: Int) -> String {
            #"""
            {"graceSeconds":300,"pollMilliseconds":20,"sources":[
              {"name":"gateway","file":"$LOGS/access.log","format":"ndjson","rotateWaitSeconds":\#(rotateWait),"meters":[
                {"name":"calls","meterName":"api_calls","subscription":{"field":"subscription"},"timestamp":"time","quantity":{"count":true}}]}]}
            """#
        }
        let stack = try ConnectorStack(config: config(rotateWait: 3600))
        let path = stack.log("access.log")
        let writer = try LogWriter(path)
        func write(minutes: Range<Int>) throws {
            for minute in minutes {
                try writer.write(GatewayLine(subscription: "sub-r", time: "2024-05-01T10:\(String(format: "%02d", minute)):30Z").text)
            }
        }
        func source(_ status: JSONValue) -> JSONValue? { status["sources"]?.arrayValue?.first }

        var connector = try stack.startConnector()
        try write(minutes: 0..<20)
        try stack.waitForRead("gateway", records: 20)
        try FileManager.default.moveItem(atPath: path, toPath: path + ".1")
        try writer.reopen()
        try write(minutes: 20..<30)
        // It has seen the rotation and is still on the old file (3600 s of quiet wanted): killed there.
        try connector.waitForStatus { source($0)?["activity"]?.stringValue?.hasPrefix("finishing") == true }
        connector.kill(SIGKILL)
        try write(minutes: 30..<60)
        try stack.advance(to: "2024-05-01T11:10:00Z")
        try config(rotateWait: 1).replacingOccurrences(of: "$LOGS", with: stack.home.path + "/logs")
            .write(toFile: stack.configPath, atomically: true, encoding: .utf8)
        connector = try stack.startConnector()
        try connector.waitForStatus(timeout: 30) { status in
            let gateway = source(status)
            return gateway?["records"]?["read"] == 60 && gateway?["lag"]?["bytes"] == 0
                && gateway?["emittedBefore"] == "2024-05-01T11:00:00Z" && gateway?["events"]?["pending"] == 0
        }
        try stack.advance(to: "2024-05-01T12:10:00Z")
        try connector.waitForStatus(timeout: 30) { status in
            source(status)?["emittedBefore"] == "2024-05-01T12:00:00Z" && source(status)?["events"]?["pending"] == 0
        }

        // Ingest's log: hour 10 holds all 60 lines, none late; nothing went to hour 11.
        var hours: [String: (quantity: String, late: String)] = [:]
        for record in try readAll(try stack.ingest.client(), partitions: 4) {
            guard let value = record["event"]?["value"], record["event"]?["id"]?.stringValue?.hasPrefix("conn:") == true else { continue }
            guard case .number(let quantity)? = value["quantity"] else { continue }
            hours[value["properties"]?["hour"]?.stringValue ?? "?"] = (quantity, value["properties"]?["lateRecords"]?.stringValue ?? "?")
        }
        #expect(hours.count == 1, "\(hours)")
        #expect(hours["2024-05-01T10:00:00Z"]?.quantity == "60", "\(hours)")
        #expect(hours["2024-05-01T10:00:00Z"]?.late == "0", "\(hours)")
        #expect(hours["2024-05-01T11:00:00Z"] == nil, "\(hours)")
        let status = try #require(connector.source("gateway"))
        #expect(status["records"]?["late"] == 0)
        #expect(status["rotations"] == 1)
        #expect(status["problems"]?.arrayValue?.isEmpty == true)
    }

    @Test("A command source runs every interval over the window since its last run; a failed run is retried over the same window")
    func commandSource() throws {
        let config = #"""
            {"graceSeconds":60,"pollMilliseconds":20,"sources":[{"name":"jobs","command":["$HOME/list-jobs"],"intervalSeconds":1,
             "format":"csv","meters":[{"name":"cpu","meterName":"cpu_seconds","subscription":{"field":"tenant"},"timestamp":"ended",
             "quantity":{"sum":"cpu"}}]}]}
            """#
        let stack = try ConnectorStack(config: config, start: "2024-05-01T10:40:00Z")
        let flag = stack.home.path + "/fail"
        let script = stack.home.path + "/list-jobs"
        try """
        #!/bin/sh
        # Prints the jobs that ended in [SINCE, UNTIL), as CSV with a header.
        if [ -e "\(flag)" ]; then echo "database unavailable" >&2; exit 3; fi
        echo "ended,tenant,cpu"
        awk -F, -v since="$METERING_CONNECTOR_SINCE" -v until="$METERING_CONNECTOR_UNTIL" '$1 >= since && $1 < until' "\(stack.home.path)/jobs.csv"

        """.write(toFile: script, atomically: true, encoding: .utf8)
        chmod(script, 0o755)
        try """
        2024-05-01T10:05:00Z,t-1,1.5
        2024-05-01T10:30:00Z,t-2,2
        2024-05-01T10:55:00Z,t-1,0.25
        2024-05-01T11:10:00Z,t-1,4
        2024-05-01T11:40:00Z,t-2,8

        """.write(toFile: stack.home.path + "/jobs.csv", atomically: true, encoding: .utf8)
        func jobs(_ status: JSONValue) -> JSONValue? { status["sources"]?.arrayValue?.first }

        // The first run's window ends at the clock (10:40).
        let connector = try stack.startConnector()
        try connector.waitForStatus { jobs($0)?["records"]?["read"] == 2 }
        stack.expect("cpu_seconds", "t-1", "2024-05-01T10:00:00Z", Quantity(exactly: "1.5")!)
        stack.expect("cpu_seconds", "t-2", "2024-05-01T10:00:00Z", Quantity(2))

        // Failing runs use nothing and keep the window; hour 10 closes meanwhile, so the 10:55 job
        // arrives late, into hour 11.
        #expect(FileManager.default.createFile(atPath: flag, contents: nil))
        try stack.advance(to: "2024-05-01T11:20:00Z")
        let failing = try connector.waitForStatus {
            jobs($0)?["lastError"]?.stringValue?.contains("exited with status 3: database unavailable") == true
                && jobs($0)?["clock"] == "2024-05-01T11:20:00Z"
        }
        #expect(jobs(failing)?["watermark"]?["since"] == "2024-05-01T10:40:00Z")
        try FileManager.default.removeItem(atPath: flag)
        try connector.waitForStatus { jobs($0)?["records"]?["read"] == 4 && jobs($0)?["watermark"]?["since"] == "2024-05-01T11:20:00Z" }
        stack.expect("cpu_seconds", "t-1", "2024-05-01T11:00:00Z", Quantity(exactly: "4.25")!)
        // A run inside the grace period brings the 11:40 job in time for hour 11.
        try stack.advance(to: "2024-05-01T12:00:30Z")
        try connector.waitForStatus { jobs($0)?["records"]?["read"] == 5 }
        stack.expect("cpu_seconds", "t-2", "2024-05-01T11:00:00Z", Quantity(8))
        try stack.advance(to: "2024-05-01T12:05:00Z")
        try stack.waitForClock("2024-05-01T12:05:00Z", sources: ["jobs"])
        try stack.expectLedgerMatches()
        let status = try #require(connector.status().flatMap(jobs))
        #expect(status["records"]?["late"] == 1)
        #expect((status["runs"]?.intValue ?? 0) >= 3)
        #expect(status["lastRun"]?["result"] == "ok")
    }

    /// Runs meter-connector until it exits; its status and standard error.
    static func failedStart(_ home: StackHome, config: String, environment: [String: String] = [:]) throws -> (Int32, String) {
        let connector = try ConnectorProcess(home: home, config: config, environment: environment, waitUntilRunning: false)
        let deadline = Date().addingTimeInterval(20)
        while connector.process.isRunning && Date() < deadline { usleep(20_000) }
        guard !connector.process.isRunning else { return (-1, "still running: \(connector.readErrors())") }
        return (connector.process.terminationStatus, connector.readErrors())
    }

    @Test("Start-up refuses a bad configuration, a damaged or mismatched watermark and a second connector, naming the problem")
    func startupErrors() throws {
        let home = StackHome()
        let path = home.path + "/connector.json"
        func write(_ text: String) throws { try text.write(toFile: path, atomically: true, encoding: .utf8) }
        let good = Self.config.replacingOccurrences(of: "$LOGS", with: home.path)

        var (status, errors) = try Self.failedStart(home, config: home.path + "/missing.json")
        #expect(status == 78)
        #expect(errors.contains("cannot read the connector configuration \(home.path)/missing.json (METERING_CONNECTOR_CONFIG)"))

        try write(good.replacingOccurrences(of: #""scale":"0.001""#, with: #""scale":"-1""#))
        (status, errors) = try Self.failedStart(home, config: path)
        #expect(status == 78)
        #expect(errors.contains("sources[0].meters[0].quantity.scale: must be greater than 0, got -1"))

        try write(good)
        (status, errors) = try Self.failedStart(home, config: path, environment: ["METERING_CONNECTOR_CLOCK": "wall"])
        #expect(status == 64)
        #expect(errors.contains(#"invalid METERING_CONNECTOR_CLOCK="wall": expected "ingest" or "system""#))

        // Two connectors on one state directory: the second is refused.
        let first = try ConnectorProcess(home: home, config: path)
        (status, errors) = try Self.failedStart(home, config: path)
        #expect(status == 78)
        #expect(errors.contains("another meter-connector uses the state directory"))
        first.terminate()

        let watermark = home.path + "/data/connector/gateway.watermark.json"
        #expect(FileManager.default.fileExists(atPath: watermark))
        try "{\"format\":1,".write(toFile: watermark, atomically: true, encoding: .utf8)
        (status, errors) = try Self.failedStart(home, config: path)
        #expect(status == 78)
        #expect(errors.contains("the watermark \(watermark) is damaged"))

        var state = SourceState(source: "gateway", kind: .file)
        _ = state.accumulator.add(
            meter: "retired", subscription: "s", time: Timestamp(iso8601: "2024-05-01T10:00:00Z")!, amount: Quantity(1))
        try JSONWriter.string(state.json).write(toFile: watermark, atomically: true, encoding: .utf8)
        (status, errors) = try Self.failedStart(home, config: path)
        #expect(status == 78)
        #expect(errors.contains(#"holds usage not emitted yet for meter "retired""#))
    }
}
