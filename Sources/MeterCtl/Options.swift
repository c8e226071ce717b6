import Wire

/// The options several commands share, declared once: the same name, variable and default in
/// every command's help, resolved the way the servers resolve them.
extension Option {
    static let home = Option(
        "home", .value("DIR"), "the stack's directory: sockets in run/, data in data/, logs in log/", environment: "METERING_HOME",
        fallback: .value("./.metering"))
    static let ingestSocket = Option(
        "socket", .value("PATH"), "meter-ingest's client socket", environment: "METERING_INGEST_SOCKET",
        fallback: .inHome("run/ingest.sock"))
    static let adminSocket = Option(
        "admin-socket", .value("PATH"), "meter-ingest's admin socket", environment: "METERING_INGEST_ADMIN_SOCKET",
        fallback: .inHome("run/ingest-admin.sock"))
    static let aggregatorSocket = Option(
        "aggregator-socket", .value("PATH"), "meter-aggregator's socket", environment: "METERING_AGGREGATOR_SOCKET",
        fallback: .inHome("run/aggregator.sock"))
    static let querySocket = Option(
        "query-socket", .value("PATH"), "meter-query's socket", environment: "METERING_QUERY_SOCKET", fallback: .inHome("run/query.sock"))
    static let json = Option("json", .flag, "print the answer as JSON, as the service gave it")
    static let resourceId = Option("resource-id", .value("ID"), "the subscription's resourceId (SaaS); this or --resource-uri")
    static let resourceUri = Option(
        "resource-uri", .value("URI"), "the subscription's resourceUri (managed application); this or --resource-id")
}

extension Invocation {
    /// The subscription named by `--resource-id` and/or `--resource-uri`, as request fields.
    func subscription() throws(UsageError) -> JSONObject {
        var fields = JSONObject()
        if let id = value(.resourceId) { fields["resourceId"] = .string(id) }
        if let uri = value(.resourceUri) { fields["resourceUri"] = .string(uri) }
        guard !fields.members.isEmpty else {
            throw UsageError("'\(path)' needs --resource-id ID or --resource-uri URI; see \(path) --help")
        }
        return fields
    }
}
