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

    @discardableResult
    mutating func apply(_ message: JSONValue, at time: Timestamp, sourceLocation: SourceLocation = #_sourceLocation) -> BillingRecord? {
        switch Message.decode(message) {
        case .success(let decoded):
            sequence += 1
            let record = BillingRecord(partition: state.partition, sequence: sequence, enqueuedTime: time, message: decoded)
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
