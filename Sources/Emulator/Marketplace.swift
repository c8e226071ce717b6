import Foundation
import Synchronization
import Wire

/// The marketplace's memory: the accepted usage events (first write wins per resource, dimension
/// and hour) and how many items got each status, shared by every connection behind one lock.
final class Marketplace: Sendable {
    /// An accepted usage event.
    struct LedgerEntry: Sendable {
        var item: UsageItem
        var usageEventId: String
        /// When it was accepted, on the emulator's clock.
        var messageTime: Timestamp
    }

    /// The answer for one item: its status and its result object in the captures' shape.
    struct ItemResult: Sendable {
        var status: UsageStatus
        var result: JSONObject
    }

    /// The usage window: an effective start time more than this far behind the clock is Expired.
    static let window = Timestamp.microsecondsPerDay

    /// Lowercased (see `UsageItem.slot`).
    let unknownResources: Set<String>
    let unknownDimensions: Set<String>
    private let state = Mutex(State())

    private struct State {
        var ledger: [LedgerEntry] = []
        var slots: [UsageItem.Slot: Int] = [:]
        var statuses: [UsageStatus: Int] = [:]
        var adjustments: [UsageEventSummary.Key: UsageEventSummary.Adjustment] = [:]
    }

    init(unknownResources: Set<String>, unknownDimensions: Set<String>) {
        self.unknownResources = unknownResources
        self.unknownDimensions = unknownDimensions
    }

    /// Decides the items of one call at `now`, in order (a later item of the same call can be a
    /// Duplicate of an earlier one), records the accepted ones, and returns their results.
    func record(_ values: [JSONValue], now: Timestamp) -> [ItemResult] {
        state.withLock { state in
            values.map { value in
                let result = decide(value, now: now, state: &state)
                state.statuses[result.status, default: 0] += 1
                return result
            }
        }
    }

    private func decide(_ value: JSONValue, now: Timestamp, state: inout State) -> ItemResult {
        let item: UsageItem
        do {
            item = try UsageItem.check(value)
        } catch {
            return Self.rejected(error, echo: UsageItem.echo(of: value), now: now)
        }
        // A slot once accepted answers Duplicate whatever the clock says since: resubmitting after
        // a crash must never look like a new event, even when it comes after the window.
        if let index = state.slots[item.slot] {
            return Self.duplicate(item, of: state.ledger[index], now: now)
        }
        if let id = item.resourceId, unknownResources.contains(id.lowercased()) {
            return Self.rejected(
                UsageRejection(
                    .resourceNotFound, target: "resourceId", "The resourceId value provided cannot be found or this resource is not active."
                ),
                echo: item.echo, now: now)
        }
        if let uri = item.resourceUri, unknownResources.contains(uri.lowercased()) {
            return Self.rejected(
                UsageRejection(
                    .resourceNotFound, target: "resourceUri",
                    "The resourceUri value provided cannot be found or this resource is not active."
                ), echo: item.echo, now: now)
        }
        if unknownDimensions.contains(item.dimension) {
            return Self.rejected(
                UsageRejection(.invalidDimension, target: "dimension", "The payload dimension is invalid."), echo: item.echo, now: now)
        }
        if item.effectiveStartTime.microseconds < now.microseconds - Self.window || item.effectiveStartTime > now {
            return Self.rejected(
                UsageRejection(.expired, target: "effectiveStartTime", "The effective time provided is has expired or is in future."),
                echo: item.echo, now: now)
        }
        let entry = LedgerEntry(item: item, usageEventId: UUID().uuidString.lowercased(), messageTime: now)
        state.slots[item.slot] = state.ledger.count
        state.ledger.append(entry)
        var result = JSONObject(item.echo)
        result["status"] = .string(UsageStatus.accepted.rawValue)
        result["usageEventId"] = .string(entry.usageEventId)
        result["messageTime"] = .string(now.iso8601)
        return ItemResult(status: .accepted, result: result)
    }

    /// `MarketplaceErrorDuplicate.json`: the item as sent, and the accepted one in `additionalInfo`.
    private static func duplicate(_ item: UsageItem, of accepted: LedgerEntry, now: Timestamp) -> ItemResult {
        var result = JSONObject(item.echo)
        result["status"] = .string(UsageStatus.duplicate.rawValue)
        result["messageTime"] = .string(now.iso8601)
        result["error"] = [
            "code": "Conflict", "message": "This usage event already exist.",
            "additionalInfo": ["acceptedMessage": .object(accepted.acceptedMessage)],
        ]
        return ItemResult(status: .duplicate, result: result)
    }

    private static func rejected(_ rejection: UsageRejection, echo: [JSONObject.Member], now: Timestamp) -> ItemResult {
        var result = JSONObject(echo)
        result["status"] = .string(rejection.status.rawValue)
        result["messageTime"] = .string(now.iso8601)
        result["error"] = rejection.error
        return ItemResult(status: rejection.status, result: result)
    }

    /// The accepted events in acceptance order, those whose effective start time is in
    /// `[from, to)` when bounds are given.
    func entries(from: Timestamp? = nil, to: Timestamp? = nil) -> [LedgerEntry] {
        state.withLock { state in
            state.ledger.filter { entry in
                let time = entry.item.effectiveStartTime
                return (from.map { time >= $0 } ?? true) && (to.map { time < $0 } ?? true)
            }
        }
    }

    /// The `usageEvents` rows of the accepted events whose day is in `[from, to)`, processed as
    /// of `now`, with the planted adjustments.
    func usageEvents(from: Timestamp, to: Timestamp, now: Timestamp) -> [UsageEventSummary] {
        state.withLock { state in
            UsageEventSummary.summarize(state.ledger, adjustments: state.adjustments, now: now).filter {
                $0.usageDate >= from && $0.usageDate < to
            }
        }
    }

    /// Plants `adjustment`: the marketplace then reports its row so (replacing an earlier one for the same row).
    func plant(_ adjustment: UsageEventSummary.Adjustment) {
        state.withLock { $0.adjustments[adjustment.key] = adjustment }
    }

    /// The planted adjustments, by day.
    func adjustments() -> [UsageEventSummary.Adjustment] {
        state.withLock { state in
            state.adjustments.values.sorted {
                ($0.key.day, $0.key.resource, $0.key.dimension) < ($1.key.day, $1.key.resource, $1.key.dimension)
            }
        }
    }

    /// How many items got each status so far, and how many events are accepted.
    func counts() -> (statuses: [UsageStatus: Int], accepted: Int) {
        state.withLock { ($0.statuses, $0.ledger.count) }
    }
}

extension Marketplace.LedgerEntry {
    /// The ledger's form: normalized UTC time and the quantity's shortest exact text.
    var json: JSONValue {
        var members: [JSONObject.Member] = []
        if let id = item.resourceId { members.append(.init("resourceId", .string(id))) }
        if let uri = item.resourceUri { members.append(.init("resourceUri", .string(uri))) }
        members += [
            .init("planId", .string(item.planId)), .init("dimension", .string(item.dimension)),
            .init("effectiveStartTime", .string(item.effectiveStartTime.iso8601)), .init("quantity", item.quantity.json),
            .init("usageEventId", .string(usageEventId)), .init("messageTime", .string(messageTime.iso8601)),
        ]
        return .object(JSONObject(members))
    }

    /// The accepted event as a Duplicate answer carries it: as it was sent, with its id and time.
    var acceptedMessage: JSONObject {
        var members: [JSONObject.Member] = []
        if let id = item.resourceId { members.append(.init("resourceId", .string(id))) }
        members += [
            .init("effectiveStartTime", .string(item.effectiveStartTimeText)), .init("planId", .string(item.planId)),
            .init("dimension", .string(item.dimension)), .init("quantity", .number(item.quantityLiteral)),
            .init("status", .string(UsageStatus.duplicate.rawValue)), .init("messageTime", .string(messageTime.iso8601)),
            .init("usageEventId", .string(usageEventId)),
        ]
        if let uri = item.resourceUri { members.append(.init("resourceUri", .string(uri))) }
        return JSONObject(members)
    }
}
