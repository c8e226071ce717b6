import Wire

/// Typed accessors for reading a snapshot back, each naming the offending member on failure, so a
/// damaged snapshot is reported precisely instead of restoring a wrong state.
enum SnapshotReader {
    static func object(_ value: JSONValue, _ path: String) throws(SnapshotError) -> JSONObject {
        guard let object = value.objectValue else { throw SnapshotError("\(path): expected an object, got \(value.typeName)") }
        return object
    }

    static func member(_ object: JSONObject, _ key: String, _ path: String) throws(SnapshotError) -> JSONValue {
        guard let value = object[key] else { throw SnapshotError("\(path).\(key): missing") }
        return value
    }

    /// The member `key`, or nil when it is absent or null.
    static func optional(_ object: JSONObject, _ key: String) -> JSONValue? {
        guard let value = object[key], value != .null else { return nil }
        return value
    }

    static func array(_ object: JSONObject, _ key: String, _ path: String) throws(SnapshotError) -> [JSONValue] {
        let value = try member(object, key, path)
        guard let array = value.arrayValue else { throw SnapshotError("\(path).\(key): expected an array, got \(value.typeName)") }
        return array
    }

    static func string(_ object: JSONObject, _ key: String, _ path: String, allowEmpty: Bool = false) throws(SnapshotError) -> String {
        let value = try member(object, key, path)
        guard let text = value.stringValue, allowEmpty || !text.isEmpty else {
            throw SnapshotError("\(path).\(key): expected a non-empty string, got \(value.typeName)")
        }
        return text
    }

    static func bool(_ object: JSONObject, _ key: String, _ path: String) throws(SnapshotError) -> Bool {
        guard case .bool(let flag) = try member(object, key, path) else { throw SnapshotError("\(path).\(key): expected a boolean") }
        return flag
    }

    static func int(_ object: JSONObject, _ key: String, _ path: String) throws(SnapshotError) -> Int {
        guard let number = try member(object, key, path).intValue else { throw SnapshotError("\(path).\(key): expected an integer") }
        return number
    }

    static func sequence(_ value: JSONValue, _ path: String) throws(SnapshotError) -> UInt64 {
        guard case .number(let text) = value, let number = UInt64(text) else {
            throw SnapshotError("\(path): expected a sequence number")
        }
        return number
    }

    static func sequence(_ object: JSONObject, _ key: String, _ path: String) throws(SnapshotError) -> UInt64 {
        try sequence(try member(object, key, path), "\(path).\(key)")
    }

    static func timestamp(_ value: JSONValue, _ path: String) throws(SnapshotError) -> Timestamp {
        guard let text = value.stringValue, let time = Timestamp(iso8601: text) else {
            throw SnapshotError("\(path): expected an ISO 8601 time")
        }
        return time
    }

    static func timestamp(_ object: JSONObject, _ key: String, _ path: String) throws(SnapshotError) -> Timestamp {
        try timestamp(try member(object, key, path), "\(path).\(key)")
    }

    static func quantity(_ value: JSONValue, _ path: String) throws(SnapshotError) -> Quantity {
        guard case .number(let text) = value, let quantity = Quantity(exactly: text) else {
            throw SnapshotError("\(path): expected an exact decimal number")
        }
        return try checked(quantity) { SnapshotError("\(path): must not be negative") }
    }

    /// `quantity`, or `failure()` when it is negative: the state never holds a negative quantity,
    /// and its differences rely on that.
    static func checked(_ quantity: Quantity, _ failure: () -> SnapshotError) throws(SnapshotError) -> Quantity {
        guard !quantity.isNegative else { throw failure() }
        return quantity
    }

    static func quantity(_ object: JSONObject, _ key: String, _ path: String) throws(SnapshotError) -> Quantity {
        try quantity(try member(object, key, path), "\(path).\(key)")
    }

    static func resource(_ object: JSONObject, _ path: String) throws(SnapshotError) -> ResourceName {
        try named(
            ResourceName(
                resourceId: optional(object, "resourceId")?.stringValue, resourceUri: optional(object, "resourceUri")?.stringValue),
            path)
    }

    /// `name`, refused when it has neither a `resourceId` nor a `resourceUri`.
    static func named(_ name: ResourceName, _ path: @autoclosure () -> String) throws(SnapshotError) -> ResourceName {
        guard name.resourceId != nil || name.resourceUri != nil else { throw SnapshotError("\(path()): names no resource") }
        return name
    }
}
