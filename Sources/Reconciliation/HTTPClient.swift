public import Foundation
import Wire

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// Blocking HTTP requests over Foundation's URLSession (libcurl on Linux), for the marketplace's
/// APIs: the submitter's loop is sequential on purpose, one batch in flight, so the order of
/// outcomes is the order of calls.
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

    /// A client whose requests time out after `timeout` seconds.
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

    private final class ResultBox: @unchecked Sendable {
        private let semaphore = DispatchSemaphore(value: 0)
        private let lock = NSLock()
        private var result: Result<Reply, TransportError>?

        func set(_ value: Result<Reply, TransportError>) {
            lock.withLock { result = value }
            semaphore.signal()
        }

        func wait() -> Result<Reply, TransportError> {
            semaphore.wait()
            return lock.withLock { result! }
        }
    }
}

/// Bearer tokens for the metering API, cached until shortly before they expire, and fetched again
/// at once when the API refuses one (401/403).
public final class TokenProvider: @unchecked Sendable {
    private let credentials: MarketplaceAccess.Credentials
    private let http: HTTPClient
    private let lock = NSLock()
    private var cached: (token: String, refreshAt: Date)?

    /// Tokens for `credentials`, fetched with `http`.
    public init(credentials: MarketplaceAccess.Credentials, http: HTTPClient) {
        self.credentials = credentials
        self.http = http
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// Forgets the cached token (after a 401 from the API).
    public func invalidate() { lock.withLock { cached = nil } }

    /// A live token: the cached one, or a new one from the token endpoint.
    public func token() throws -> String {
        if let cached = lock.withLock({ cached }), cached.refreshAt > Date() { return cached.token }
        let (token, lifetime) = try fetch()
        // Refreshed well before it expires: 5 minutes early, or a tenth of a short lifetime.
        lock.withLock { cached = (token, Date().addingTimeInterval(lifetime - min(300, lifetime / 10))) }
        return token
    }

    private func fetch() throws -> (String, Double) {
        let resource = MarketplaceAccess.resource
        let reply: HTTPClient.Reply
        switch credentials {
        case .servicePrincipal(_, let clientId, let secret, let tokenURL):
            func encode(_ text: String) -> String {
                var allowed = CharacterSet.alphanumerics
                allowed.insert(charactersIn: "-._~")
                return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
            }
            let form =
                "grant_type=client_credentials&client_id=\(encode(clientId))&client_secret=\(encode(secret))&resource=\(encode(resource))"
            reply = try http.send(
                "POST", tokenURL, headers: ["Content-Type": "application/x-www-form-urlencoded"], body: Array(form.utf8))
        case .managedIdentity:
            let environment = ProcessInfo.processInfo.environment
            if let endpoint = environment["IDENTITY_ENDPOINT"], let header = environment["IDENTITY_HEADER"],
                let url = URL(string: "\(endpoint)?api-version=2019-08-01&resource=\(resource)")
            {
                reply = try http.send("GET", url, headers: ["X-IDENTITY-HEADER": header], body: nil)
            } else {
                let url = URL(string: "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=\(resource)")!
                reply = try http.send("GET", url, headers: ["Metadata": "true"], body: nil)
            }
        }
        guard reply.status == 200, let json = try? JSONParser.parse(reply.body), let token = json["access_token"]?.stringValue else {
            // The body may echo request details; only the status and the error code are logged.
            let code = (try? JSONParser.parse(reply.body))?["error"]?.stringValue ?? "no error code"
            throw Failure(description: "the token endpoint answered HTTP \(reply.status) (\(code)) for the \(credentials)")
        }
        let lifetime: Double
        switch json["expires_in"] {
        case .number(let text)?, .string(let text)?: lifetime = Double(text) ?? 3600
        default: lifetime = 3600
        }
        return (token, lifetime)
    }
}
