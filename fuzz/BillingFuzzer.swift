// libFuzzer entry point for the billing fold and the query read model. The bytes are read as a log:
// purchases (every renewal interval, plans whose included quantities and tier thresholds come from
// the bytes), usage with quantities from all over the accepted range, deletions, clock moves from a
// second to months, marketplace outcomes for pending items and removals of unprocessable records,
// plan changes, voids of earlier usage (with the usage attached, as ingest writes them), and ticks
// switching between enqueued-time and event-time attribution (usage timestamps from hours behind
// the clock to a little ahead).
// Every record is folded by a PartitionState and by a PartitionView; after each one the run-rate,
// breakdown, listing and state answers are asked of every subscription. Nothing may trap, both folds
// must agree, the unprocessable ledger must stay within its bounds with its counts adding up, and
// snapshots, JSON and binary, must read back equal; the binary ones, damaged and cut by the input,
// may be refused but never trap. Built by scripts/fuzz from the Wire, Billing and QueryModel
// modules, with -sanitize=fuzzer,address.

import Billing
import QueryModel
import Wire

/// The fuzzer's bytes as a stream of choices; zeros once they run out.
struct Choices {
    let bytes: [UInt8]
    var index = 0

    var exhausted: Bool { index >= bytes.count }

    mutating func byte() -> UInt8 {
        defer { index += 1 }
        return index < bytes.count ? bytes[index] : 0
    }

    mutating func pick<T>(_ options: [T]) -> T { options[Int(byte()) % options.count] }

    /// A quantity of the accepted range: an edge, a small one, or any.
    mutating func quantity() -> Quantity {
        switch byte() % 4 {
        case 0:
            return pick([
                .zero, Quantity(units: 1), Quantity(1), Quantity(exactly: "300000000000000000")!, Quantity(units: Int128.max / 3),
                Quantity(units: Int128.max / 2 + 1), Quantity(units: Int128.max - 1), .largest,
            ])
        case 1:
            return Quantity(Int(byte()))
        default:
            var units: UInt128 = 0
            for _ in 0..<Int(byte() % 17) { units = units << 8 | UInt128(byte()) }
            return Quantity(units: Int128(units & UInt128(Int128.max)))
        }
    }
}

/// One subscription's plan: meters of every kind, two of them and a waterfall tier on one dimension.
func plan(_ choices: inout Choices) -> JSONValue {
    func number(_ quantity: Quantity) -> JSONValue { .number(quantity.description) }
    // Display prices (as a catalog plan carries them) half the time: never billed, kept by the read model.
    let prices: JSONValue? =
        choices.byte() % 2 == 0
        ? ["currency": "USD", "perUnit": ["d-a": number(choices.quantity()), "d-t": number(choices.quantity())]] : nil
    var plan: JSONValue = [
        "planId": .string("p\(choices.byte() % 4)"),
        "billingDimensions": [
            "sum": ["type": "simple", "dimension": "d-a", "included": number(choices.quantity())],
            "shared": [
                "type": "simple", "dimension": "d-a", "included": choices.byte() % 2 == 0 ? "Infinite" : number(choices.quantity()),
            ],
            "gauge": [
                "type": "simple", "dimension": "d-g", "included": number(choices.quantity()),
                "aggregation": .string(choices.pick(["max", "last"])),
            ],
            "fall": [
                "type": "waterfall",
                "tiers": [
                    ["dimension": "d-t", "threshold": number(choices.quantity())],
                    ["dimension": "d-a", "threshold": number(choices.quantity())],
                ],
            ],
        ],
    ]
    if let prices, case .object(var members) = plan {
        members["prices"] = prices
        plan = .object(members)
    }
    return plan
}

let names = ["a", "b", "c", "d"]
let meters = ["sum", "shared", "gauge", "fall", "none"]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzBilling(_ start: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    var choices = Choices(bytes: Array(UnsafeBufferPointer(start: start, count: count)))
    var state = PartitionState(partition: 0)
    var view = PartitionView(partition: 0)
    var clock = Timestamp(year: 2024, month: 1, day: 31)
    var sequence: UInt64 = 0
    var keyed: [(id: String, sequence: UInt64, time: Timestamp, message: JSONValue)] = []
    while !choices.exhausted && sequence < 200 {
        let name = choices.pick(names)
        let message: JSONValue
        switch choices.byte() % 11 {
        case 0:
            let subscriptionStart = Timestamp(
                microseconds: clock.dayStart.microseconds - Int64(choices.byte()) * Timestamp.microsecondsPerDay)
            message = [
                "type": "SubscriptionPurchased",
                "value": [
                    "subscription": [
                        "resourceId": .string(name), "subscriptionStart": .string(subscriptionStart.iso8601),
                        "renewalInterval": .string(choices.pick(RenewalInterval.allCases).rawValue), "plan": plan(&choices),
                    ]
                ],
            ]
        case 1:
            let steps: [Int64] = [
                1_000_000, 60_000_000, Timestamp.microsecondsPerHour, Timestamp.microsecondsPerDay, 31 * Timestamp.microsecondsPerDay,
            ]
            clock = clock.adding(microseconds: choices.pick(steps) * Int64(1 + choices.byte() % 8))
            message = ["type": "Ping", "value": ["partitionId": "0", "reason": "fuzz"]]
        case 2:
            message = ["type": "SubscriptionDeleted", "value": ["resourceId": .string(name)]]
        case 3:
            let pending = state.pending
            guard !pending.isEmpty else { continue }
            let item = pending[Int(choices.byte()) % pending.count]
            var result = JSONObject([
                "resourceId": .string(item.resource.resourceId ?? name), "planId": .string(item.planId),
                "dimension": .string(item.dimension),
                "effectiveStartTime": .string(item.effectiveStartTime.iso8601), "quantity": .number(item.quantity.description),
                "status": .string(choices.pick(["Accepted", "Duplicate", "Expired", "ResourceNotFound", "Throttled"])),
            ])
            if result["status"] == "Duplicate" {
                result["error"] = ["additionalInfo": ["acceptedMessage": ["quantity": .number(choices.quantity().description)]]]
            }
            message = ["type": "UsageSubmittedToAPI", "value": ["result": .object(result)]]
        case 4:
            let selection: JSONObject.Member =
                switch choices.byte() % 3 {
                case 0: .init("all", "all")
                case 1: .init("exactly", .number(String(UInt64(choices.byte()) % (sequence + 1))))
                default: .init("beforeIncluding", .number(String(UInt64(choices.byte()) % (sequence + 1))))
                }
            message = ["type": "RemoveUnprocessedMessages", "value": .object(JSONObject([.init("partitionId", "0"), selection]))]
        case 5:
            message = ["type": "PlanChanged", "value": ["resourceId": .string(name), "plan": plan(&choices)]]
        case 6:
            guard !keyed.isEmpty else { continue }
            let usage = keyed.remove(at: Int(choices.byte()) % keyed.count)
            message = [
                "type": "UsageVoided",
                "value": [
                    "ids": [.string(usage.id)], "reason": "fuzz",
                    "voided": [
                        "sequence": .number(String(usage.sequence)), "enqueuedTime": .string(usage.time.iso8601), "event": usage.message,
                    ],
                ],
            ]
        case 7:
            var value = JSONObject(["partitionId": "0", "reason": "starting", "attribution": "enqueued"])
            if choices.byte() % 2 == 0 {
                value["attribution"] = "event"
                value["lateGraceSeconds"] = .number(String(choices.pick([0, 1, 900, 3600, 7200, 21_600])))
            }
            message = ["type": "Ping", "value": .object(value)]
        default:
            clock = clock.adding(microseconds: Int64(choices.byte()) * 10_000_000)
            let behind = Int64(choices.byte()) * 130_000_000 - 10_000_000
            let id = "k\(sequence)"
            message = [
                "type": "UsageReported", "id": .string(id),
                "value": [
                    "resourceId": .string(name), "timestamp": .string(clock.adding(microseconds: -behind).iso8601),
                    "meterName": .string(choices.pick(meters)), "quantity": .number(choices.quantity().description),
                    "properties": ["campaign": .string(choices.pick(["x", "y", "z"]))],
                ],
            ]
            keyed.append((id, sequence, clock, message))
        }
        guard case .success(let decoded) = Message.decode(message) else {
            preconditionFailure("a message the fuzzer built does not decode")
        }
        let record = BillingRecord(partition: 0, sequence: sequence, enqueuedTime: clock, message: decoded)
        sequence += 1
        state.apply(record)
        var output = PartitionView.Output()
        view.apply(record, into: &output)
        precondition(view.state == state, "the read model's fold differs from the billing fold")
        let ledger = state.unprocessable
        precondition(ledger.count == ledger.groups.reduce(0) { $0 + $1.count }, "unprocessable counts do not add up")
        precondition(ledger.examples.count <= UnprocessableLedger.maximumExamples, "too many unprocessable examples")
        for usage in output.usage { _ = usage.fields }
        for name in names {
            let resource = ResourceName(resourceId: name)
            guard let runRate = state.runRate(resource) else { continue }
            for meter in runRate.meters {
                precondition(!meter.consumed.isNegative && !meter.projected.isNegative, "a negative figure")
                _ = view.breakdownJSON(resource, meterName: meter.meterName, property: "campaign")
            }
            _ = view.runRateJSON(resource, series: true)
            _ = state.subscriptionJSON(resource)
            if let key = state.key(named: resource) { _ = view.subscriptionEntry(key) }
        }
    }
    let restored = try? PartitionState(snapshot: state.snapshot())
    precondition(restored == state, "the state's snapshot does not read back equal")
    let restoredView = try? PartitionView(snapshot: view.snapshot())
    precondition(
        restoredView.map { JSONWriter.string($0.snapshot()) } == JSONWriter.string(view.snapshot()),
        "the view's snapshot does not read back")
    let bytes = state.binarySnapshot()
    let fromBytes = try? PartitionState(binarySnapshot: bytes)
    precondition(
        fromBytes == state && fromBytes.map { JSONWriter.string($0.snapshot()) } == JSONWriter.string(state.snapshot()),
        "the state's binary snapshot does not read back equal")
    let viewBytes = view.binarySnapshot()
    let viewFromBytes = try? PartitionView(binarySnapshot: viewBytes)
    precondition(
        viewFromBytes.map { JSONWriter.string($0.snapshot()) } == JSONWriter.string(view.snapshot())
            && viewFromBytes?.binarySnapshot() == viewBytes,
        "the view's binary snapshot does not read back")
    let viewFromEarlierBytes = try? PartitionView(binarySnapshot: view.binarySnapshotWithJSONPart())
    precondition(viewFromEarlierBytes?.binarySnapshot() == viewBytes, "the view's query-view-4 snapshot does not read back")
    // The input's first bytes damage the binary forms (a position and a mask each), and its length
    // cuts them: the decoders may refuse what they get, never trap.
    for original in [bytes, viewBytes] {
        var damaged = original
        var damage = Choices(bytes: choices.bytes)
        for _ in 0..<Int(damage.byte() % 8) {
            let position = (Int(damage.byte()) << 8 | Int(damage.byte())) % damaged.count
            damaged[position] ^= damage.byte()
        }
        let cut = Array(damaged[..<(choices.bytes.count * 13 % (damaged.count + 1))])
        if original == bytes {
            _ = try? PartitionState(binarySnapshot: damaged)
            _ = try? PartitionState(binarySnapshot: cut)
        } else {
            _ = try? PartitionView(binarySnapshot: damaged)
            _ = try? PartitionView(binarySnapshot: cut)
        }
    }
    return 0
}
