import Billing
import BillingTestSupport
import QueryModel
import Testing
import Wire

/// A partition log written in code, folded into a read model as it is written, collecting what the
/// view produced.
struct ViewFold {
    var view = PartitionView(partition: 0)
    var records: [BillingRecord] = []
    var usage: [UsageRecord] = []
    var submissions: [SubmissionRecord] = []
    var touched: Set<String> = []

    mutating func apply(_ message: JSONValue, at time: String, sourceLocation: SourceLocation = #_sourceLocation) {
        apply(message, at: at(time), sourceLocation: sourceLocation)
    }

    mutating func apply(_ message: JSONValue, at time: Timestamp, sourceLocation: SourceLocation = #_sourceLocation) {
        guard case .success(let decoded) = Message.decode(message) else {
            Issue.record("the test's message does not decode: \(JSONWriter.string(message))", sourceLocation: sourceLocation)
            return
        }
        let record = BillingRecord(partition: 0, sequence: UInt64(records.count), enqueuedTime: time, message: decoded)
        records.append(record)
        var output = PartitionView.Output()
        view.apply(record, into: &output)
        usage += output.usage
        submissions += output.submissions
        touched.formUnion(output.touched)
    }

    mutating func ping(at time: String) { apply(Messages.ping(), at: time) }

    mutating func ping(at time: Timestamp) { apply(Messages.ping(), at: time) }

    /// The usage records as `meter/dimension@hour quantity billed` texts.
    var usageSummary: [String] {
        usage.map { "\($0.meterName)/\($0.dimension)@\(hourText($0.hour)) \($0.quantity) \($0.billed)" }
    }

    func runRate(_ resourceId: String) -> JSONObject? { view.runRateJSON(ResourceName(resourceId: resourceId)) }

    func meter(_ resourceId: String, _ meterName: String) -> JSONValue? {
        runRate(resourceId)?["meters"]?.arrayValue?.first { $0["meterName"] == .string(meterName) }
    }
}

/// A JSON number as an exact quantity, for comparisons.
func number(_ value: JSONValue?) -> Quantity? {
    if case .number(let text)? = value { return Quantity(exactly: text) }
    return nil
}
