import Billing
import BillingTestSupport
import Daemon
import Projection
import StackTestSupport
import Testing
import Transport
import Wire

@testable import Aggregator

@Suite("meter-aggregator's handler, driven from bytes without a process")
struct AggregatorHandlerTests {
    /// One partition worker with `messages` folded (one a second from 2024-03-01 10:00), and its handler.
    static func handler(_ messages: [JSONValue], home: StackHome) throws -> AggregatorHandler {
        var settings = try Settings(arguments: [], environment: ["METERING_HOME": home.path])
        let worker = PartitionWorker(partition: 0, configuration: try AggregatorConfiguration(settings: &settings))
        var records: [BillingRecord] = []
        for (index, json) in messages.enumerated() {
            let message = try Message.decode(json).get()
            records.append(
                BillingRecord(
                    partition: 0, sequence: UInt64(index),
                    enqueuedTime: at("2024-03-01T10:00:00Z").adding(microseconds: Int64(index) * 1_000_000),
                    message: message))
        }
        worker.fold(RecordBatch(records))
        return AggregatorHandler(workers: [worker])
    }

    @Test("pending lists the overage of closed hours in order, and state shows a subscription's meters")
    func pendingAndState() throws {
        let home = StackHome()
        let handler = try Self.handler(
            [
                Messages.purchase("a-1", start: "2024-03-01T00:00:00Z", dimensions: ["cpu": Messages.simple("cpu", included: 10)]),
                Messages.usage("a-1", "cpu", "12.5"),
                Messages.ping(),
            ], home: home)
        let connection = MemoryConnection(listener: "aggregator")
        // The hour 10:00 is still open: nothing is pending yet.
        #expect(connection.call(Request(op: "pending"), to: handler)?["total"] == 0)
        let state = try #require(connection.call(Request(op: "state", fields: JSONObject(["resourceId": "a-1"])), to: handler))
        #expect(state["ok"] == true, "\(state)")
        #expect(state["subscription"]?["planId"] == "plan" && state["asOf"] == "2024-03-01T10:00:02Z")
        #expect(state["subscription"]?["period"]?["end"] == "2024-04-01T00:00:00Z")
        let closing = try Self.handler(
            [
                Messages.purchase("a-1", start: "2024-03-01T00:00:00Z", dimensions: ["cpu": Messages.simple("cpu", included: 10)]),
                Messages.usage("a-1", "cpu", "12.5"),
                Messages.usage("a-1", "cpu", "1"),
            ], home: home)
        closing.workers[0].fold(
            RecordBatch([
                BillingRecord(
                    partition: 0, sequence: 3, enqueuedTime: at("2024-03-01T11:00:01Z"), message: try Message.decode(Messages.ping()).get())
            ]))
        let pending = try #require(connection.call(Request(op: "pending"), to: closing))
        let items = try #require(pending["items"]?.arrayValue)
        #expect(items.count == 1)
        #expect(items.first?["quantity"] == .number("3.5"))
        #expect(items.first?["dimension"] == "cpu" && items.first?["effectiveStartTime"] == "2024-03-01T10:00:00Z")
    }

    @Test("a bad request gets its error and names what is wrong")
    func badRequests() throws {
        let handler = try Self.handler([], home: StackHome())
        let connection = MemoryConnection(listener: "aggregator")
        #expect(connection.call(Request(op: "pending", fields: JSONObject(["max": 0])), to: handler)?["error"]?["code"] == "bad_request")
        #expect(
            connection.call(Request(op: "pending", fields: JSONObject(["partition": 9])), to: handler)?["error"]?["code"] == "not_found")
        #expect(connection.call(Request(op: "drop"), to: handler)?["error"]?["code"] == "unknown_op")
        #expect(connection.request(Array("not json".utf8), to: handler))
        #expect(try JSONParser.parse(try #require(connection.take().last))["error"]?["code"] == "bad_json")
    }
}
