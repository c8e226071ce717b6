import Foundation
import Transport
import Wire

/// One source's connection to meter-ingest's client socket: appends, and the clock. A failed call
/// drops the connection; the next call connects again.
final class IngestLink {
    let socket: String
    let clock: ConnectorSettings.Clock
    private var client: UnixClient?

    init(socket: String, clock: ConnectorSettings.Clock) {
        self.socket = socket
        self.clock = clock
    }

    private func connected() throws(UnixClient.Failure) -> UnixClient {
        if let client { return client }
        let client = try UnixClient(path: socket)
        // A hung ingest must fail the call (and be retried), never hang the source.
        client.setReceiveTimeout(seconds: 30)
        self.client = client
        return client
    }

    private func call(_ request: Request) throws(UnixClient.Failure) -> JSONObject {
        do {
            return try connected().call(request)
        } catch {
            client = nil
            throw error
        }
    }

    /// The time that decides which hours are past their grace.
    func now() throws(UnixClient.Failure) -> Timestamp {
        switch clock {
        case .system: return Timestamp(microseconds: Int64(Date().timeIntervalSince1970 * 1_000_000))
        case .ingest:
            let status = try call(Request(op: "status"))
            guard let text = status["time"]?.stringValue, let time = Timestamp(iso8601: text) else {
                client = nil
                throw .server(WireError(.internalError, "meter-ingest's status has no \"time\""))
            }
            return time
        }
    }

    /// Appends `events`; returns ingest's result for each, in order.
    func append(_ events: [JSONValue]) throws(UnixClient.Failure) -> [JSONValue] {
        let response = try call(Request(op: "append", fields: JSONObject(["events": .array(events)])))
        return response["results"]?.arrayValue ?? []
    }
}
