public import Foundation
import Synchronization

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// Blocking HTTP requests over Foundation's URLSession (libcurl on Linux), for the processes that
/// call out one request at a time on purpose: the submitter (one batch in flight, so the order of
/// outcomes is the order of calls) and the notifier (one delivery in flight per subscriber, so
/// notifications arrive in order).
public final class HTTPClient: Sendable {
    /// An HTTP answer: its status, its header fields (names lowercased) and its body.
    public struct Reply: Sendable {
        public var status: Int
        public var headers: [String: String]
        public var body: [UInt8]
    }

    /// A call that did not produce an HTTP reply (refused, reset, timed out, TLS).
    public struct TransportError: Error, CustomStringConvertible {
        public var description: String
    }

    private let session: URLSession

    /// A client whose requests time out after `timeout` seconds without progress.
    public init(timeout: Double) {
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = timeout
        configuration.timeoutIntervalForResource = timeout * 2
        configuration.httpMaximumConnectionsPerHost = 2
        session = URLSession(configuration: configuration)
    }

    /// Sends one request and waits for its answer.
    public func send(_ method: String, _ url: URL, headers: [String: String], body: [UInt8]?) throws(TransportError) -> Reply {
        var request = URLRequest(url: url)
        request.httpMethod = method
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        if let body { request.httpBody = Data(body) }
        let box = ResultBox()
        let task = session.dataTask(with: request) { data, response, error in
            if let error {
                box.set(.failure(TransportError(description: error.localizedDescription)))
            } else if let http = response as? HTTPURLResponse {
                var fields: [String: String] = [:]
                for (key, value) in http.allHeaderFields {
                    if let key = key as? String, let value = value as? String { fields[key.lowercased()] = value }
                }
                box.set(.success(Reply(status: http.statusCode, headers: fields, body: Array(data ?? Data()))))
            } else {
                box.set(.failure(TransportError(description: "no HTTP response")))
            }
        }
        task.resume()
        return try box.wait().get()
    }

    private final class ResultBox: Sendable {
        private let semaphore = DispatchSemaphore(value: 0)
        private let result = Mutex<Result<Reply, TransportError>?>(nil)

        func set(_ value: Result<Reply, TransportError>) {
            result.withLock { $0 = value }
            semaphore.signal()
        }

        func wait() -> Result<Reply, TransportError> {
            semaphore.wait()
            return result.withLock { $0! }
        }
    }
}
