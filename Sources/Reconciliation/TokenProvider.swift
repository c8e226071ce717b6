import Foundation
public import HTTP
import Synchronization
import Wire

/// Bearer tokens for the metering API, cached until shortly before they expire, and fetched again
/// at once when the API refuses one (401/403).
public final class TokenProvider: Sendable {
    private let credentials: MarketplaceAccess.Credentials
    private let http: HTTPClient
    private let refreshed: @Sendable () -> Void
    private let cached = Mutex<(token: String, refreshAt: Date)?>(nil)

    /// Tokens for `credentials`, fetched with `http`; `refreshed` is told of every new token
    /// (the submitter counts them in its metrics).
    public init(credentials: MarketplaceAccess.Credentials, http: HTTPClient, refreshed: @escaping @Sendable () -> Void = {}) {
        self.credentials = credentials
        self.http = http
        self.refreshed = refreshed
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// Forgets the cached token (after a 401 from the API).
    public func invalidate() { cached.withLock { $0 = nil } }

    /// A live token: the cached one, or a new one from the token endpoint.
    public func token() throws -> String {
        if let cached = cached.withLock({ $0 }), cached.refreshAt > Date() { return cached.token }
        let (token, lifetime) = try fetch()
        refreshed()
        // Refreshed well before it expires: 5 minutes early, or a tenth of a short lifetime.
        cached.withLock { $0 = (token, Date().addingTimeInterval(lifetime - min(300, lifetime / 10))) }
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
