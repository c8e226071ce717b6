public import Wire

extension UnprocessableLedger.Group {
    /// The group as JSON: `{"subscription", "reason", "count", "firstSequence", "lastSequence",
    /// "latestReason"}` (`subscription` null for unlisted subscriptions).
    public var json: JSONValue {
        .object(
            JSONObject([
                .init("subscription", subscription.map { .string($0) } ?? .null), .init("reason", .string(reason.rawValue)),
                .init("count", .number(String(count))), .init("firstSequence", .number(String(firstSequence))),
                .init("lastSequence", .number(String(lastSequence))), .init("latestReason", .string(latestReason)),
            ]))
    }
}

extension UnprocessableLedger {
    /// The ledger as a snapshot stores it, in a canonical order.
    var json: JSONValue {
        .object(
            JSONObject([
                .init("count", .number(String(count))), .init("completeFrom", .number(String(completeFrom))),
                .init("groups", .array(groups.map(\.json))), .init("examples", .array(examples.map(\.json))),
            ]))
    }

    /// Reads what `json` wrote, checking that the counts add up and the bounds hold.
    init(json: JSONValue, path: String) throws(SnapshotError) {
        let object = try SnapshotReader.object(json, path)
        self.init()
        for (index, value) in try SnapshotReader.array(object, "groups", path).enumerated() {
            let groupPath = "\(path).groups[\(index)]"
            let entry = try SnapshotReader.object(value, groupPath)
            let reasonName = try SnapshotReader.string(entry, "reason", groupPath)
            guard let reason = Reason(rawValue: reasonName) else { throw SnapshotError("\(groupPath).reason: unknown \"\(reasonName)\"") }
            let group = Group(
                subscription: SnapshotReader.optional(entry, "subscription")?.stringValue, reason: reason,
                count: try SnapshotReader.int(entry, "count", groupPath),
                firstSequence: try SnapshotReader.sequence(entry, "firstSequence", groupPath),
                lastSequence: try SnapshotReader.sequence(entry, "lastSequence", groupPath),
                latestReason: try SnapshotReader.string(entry, "latestReason", groupPath, allowEmpty: true))
            try restore(group, groupPath)
        }
        examples = try SnapshotReader.array(object, "examples", path).enumerated().map { index, value throws(SnapshotError) in
            try UnprocessableRecord(json: value, path: "\(path).examples[\(index)]")
        }
        completeFrom = try SnapshotReader.sequence(object, "completeFrom", path)
        try checkRestored(count: try SnapshotReader.int(object, "count", path), path)
    }

    /// Adds a restored group, refusing an empty one, one already there, and counts that overflow.
    mutating func restore(_ group: Group, _ path: @autoclosure () -> String) throws(SnapshotError) {
        let key = Key(subscription: group.subscription, reason: group.reason)
        let (total, overflow) = count.addingReportingOverflow(group.count)
        guard group.count > 0, !overflow, groupsByKey[key] == nil else { throw SnapshotError("\(path()): empty or repeated group") }
        groupsByKey[key] = group
        count = total
    }

    /// Checks a restored ledger: its groups add up to `count`, and it holds no more groups and
    /// examples than the bounds allow.
    func checkRestored(count: Int, _ path: @autoclosure () -> String) throws(SnapshotError) {
        guard count == self.count, groupsByKey.count <= Self.maximumGroups + Reason.allCases.count, examples.count <= Self.maximumExamples
        else { throw SnapshotError("\(path()): the counts do not add up, or a bound is exceeded") }
    }

    /// Reads the list of whole records that snapshots held before records were counted, counting
    /// them as if they had been refused in that order.
    init(listed json: JSONValue, path: String) throws(SnapshotError) {
        guard let list = json.arrayValue else { throw SnapshotError("\(path): expected an array") }
        self.init()
        for (index, value) in list.enumerated() {
            let recordPath = "\(path)[\(index)]"
            let object = try SnapshotReader.object(value, recordPath)
            let reason = try SnapshotReader.string(object, "reason", recordPath, allowEmpty: true)
            let event = object["event"]
            let name = event?["value"]?["resourceId"]?.stringValue ?? event?["value"]?["resourceUri"]?.stringValue
            add(
                UnprocessableRecord(
                    sequence: try SnapshotReader.sequence(object, "sequence", recordPath),
                    enqueuedTime: try SnapshotReader.timestamp(object, "enqueuedTime", recordPath),
                    kind: Self.reason(listed: reason, type: event?["type"]?.stringValue), subscription: name, reason: reason,
                    event: event))
        }
    }

    /// The reason of a record of the listed format, from its text (the wordings of that version).
    static func reason(listed text: String, type: String?) -> Reason {
        if type == "SubscriptionDeleted" { return .unknownDeletion }
        if text.hasPrefix("no subscription ") { return .unknownSubscription }
        if text.hasSuffix(" was deleted") { return .deletedSubscription }
        if text.contains(" has no meter ") { return .unknownMeter }
        return .overflow
    }
}
