import Billing
import BillingTestSupport
import Testing
import Wire

/// A partition log written in code: each message (in the client's JSON format, decoded like ingest
/// does) becomes the next record, enqueued at the given time, and is folded at once.
struct Fold {
    var state = PartitionState(partition: 0)
    var records: [BillingRecord] = []
    var sequence: UInt64 = 0
    /// Usage sent with an id: where it is and what it was, so a void can attach it as ingest does.
    var keyed: [String: (sequence: UInt64, time: Timestamp, message: JSONValue)] = [:]

    @discardableResult
    mutating func apply(_ message: JSONValue, at time: Timestamp, sourceLocation: SourceLocation = #_sourceLocation) -> BillingRecord? {
        switch Message.decode(message) {
        case .success(let decoded):
            sequence += 1
            let record = BillingRecord(partition: state.partition, sequence: sequence, enqueuedTime: time, message: decoded)
            if let id = decoded.id, case .usageReported = decoded.body { keyed[id] = (sequence, time, message) }
            records.append(record)
            state.apply(record)
            return record
        case .failure(let error):
            Issue.record("the test's message does not decode: \(error)", sourceLocation: sourceLocation)
            return nil
        }
    }

    mutating func apply(_ message: JSONValue, at time: String, sourceLocation: SourceLocation = #_sourceLocation) {
        apply(message, at: at(time), sourceLocation: sourceLocation)
    }

    /// Voids the usage sent with `id` at `time`, as ingest records it.
    mutating func void(_ id: String, at time: String, sourceLocation: SourceLocation = #_sourceLocation) {
        guard let usage = keyed[id] else {
            Issue.record("no usage was sent with id \(id)", sourceLocation: sourceLocation)
            return
        }
        apply(
            Messages.void(id, usage: usage.message, sequence: usage.sequence, enqueuedTime: usage.time), at: at(time),
            sourceLocation: sourceLocation)
    }

    /// Moves the partition clock with a tick.
    mutating func ping(at time: String) { apply(Messages.ping(), at: at(time)) }
    mutating func ping(at time: Timestamp) { apply(Messages.ping(), at: time) }

    /// The pending items as `dimension@hour=quantity` texts, for compact expectations.
    var pendingSummary: [String] {
        state.pending.map { "\($0.dimension)@\(hourText($0.effectiveStartTime))=\($0.quantity)" }
    }

    /// One meter of a subscription from the `state` JSON.
    func meter(_ subscription: String, _ meterName: String) -> JSONValue? {
        state.subscriptionJSON(ResourceName(resourceId: subscription))?["meters"]?.arrayValue?.first {
            $0["meterName"] == .string(meterName)
        }
    }

    /// The pending item of a dimension and hour.
    func pendingItem(_ dimension: String, hour: String) -> ReadyItem? {
        state.pending.first { $0.dimension == dimension && $0.effectiveStartTime == at(hour) }
    }
}
