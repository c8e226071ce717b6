import Foundation
import HTTP
import Synchronization
import Wire

/// The token endpoints of Microsoft Entra ID (client credentials, v1 and v2) and of a managed
/// identity, for the metering API's application only, and the check of the bearer tokens they
/// issued. Tokens and secrets are never logged.
final class TokenIssuer: Sendable {
    /// The marketplace metering API's application id.
    static let resource = "20e940b3-4c77-4b0b-9a53-9e16a1b010a7"
    /// Seconds a token is valid (Entra ID says 3599).
    let lifetime: Int
    /// More live tokens than this and the oldest are forgotten (a client asking in a loop must
    /// not grow the emulator without bound).
    static let maximumLiveTokens = 10_000

    /// The only client secret accepted; any when nil.
    private let requiredSecret: String?
    /// Live tokens and when they expire (system time: tokens are real credentials, independent
    /// of the business clock).
    private let tokens = Mutex([String: Date]())

    init(requiredSecret: String?, lifetime: Int = 3599) {
        self.requiredSecret = requiredSecret
        self.lifetime = lifetime
    }

    /// `POST /{tenant}/oauth2/token` (v1: `resource`) and `/{tenant}/oauth2/v2.0/token` (v2:
    /// `scope=<resource>/.default`); either parameter is accepted on either path.
    func issue(_ request: HTTPRequest) -> HTTPResponse {
        let contentType = request.header("content-type")?.lowercased() ?? ""
        guard contentType.hasPrefix("application/x-www-form-urlencoded") || contentType.isEmpty else {
            return Self.error(400, "invalid_request", "the token request must be application/x-www-form-urlencoded")
        }
        guard let form = FormEncoding.parameters(String(decoding: request.body, as: UTF8.self)) else {
            return Self.error(400, "invalid_request", "the form body is not valid percent-encoded text")
        }
        guard form["grant_type"] == "client_credentials" else {
            return Self.error(400, "unsupported_grant_type", "grant_type must be client_credentials")
        }
        guard let clientId = form["client_id"], !clientId.isEmpty else {
            return Self.error(400, "invalid_request", "client_id is required")
        }
        guard let secret = form["client_secret"], !secret.isEmpty else {
            return Self.error(401, "invalid_client", "client_secret is required")
        }
        if let requiredSecret, secret != requiredSecret {
            return Self.error(401, "invalid_client", "invalid client secret provided for \(clientId)")
        }
        let names = [form["resource"], form["scope"]].compactMap { $0 }
        guard !names.isEmpty else {
            return Self.error(400, "invalid_request", "resource (v1) or scope (v2) naming \(Self.resource) is required")
        }
        guard names.allSatisfy(Self.namesMarketplace) else {
            return Self.error(400, "invalid_resource", "this emulator issues tokens for \(Self.resource) only")
        }
        return .json(
            200,
            [
                "token_type": "Bearer", "expires_in": .number(String(lifetime)), "ext_expires_in": .number(String(lifetime)),
                "access_token": .string(mint()),
            ])
    }

    /// `GET /metadata/identity/oauth2/token?resource=...` of IMDS (header `Metadata: true`), or of
    /// App Service (header `X-IDENTITY-HEADER`): what a managed application uses.
    func issueForManagedIdentity(_ request: HTTPRequest) -> HTTPResponse {
        guard request.header("metadata")?.lowercased() == "true" || !(request.header("x-identity-header") ?? "").isEmpty else {
            return Self.error(400, "invalid_request", "Required metadata header not specified")
        }
        guard let resource = request.query["resource"], Self.namesMarketplace(resource) else {
            return Self.error(400, "invalid_resource", "resource must be \(Self.resource)")
        }
        let expiresOn = Int(Date().timeIntervalSince1970) + lifetime
        // IMDS spells its numbers as strings.
        return .json(
            200,
            [
                "token_type": "Bearer", "expires_in": .string(String(lifetime)), "expires_on": .string(String(expiresOn)),
                "resource": .string(resource), "access_token": .string(mint()),
            ])
    }

    /// Whether `authorization` is `Bearer <token>` with a live token of ours.
    func accepts(authorization: String?) -> Bool {
        guard let authorization else { return false }
        let parts = authorization.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return false }
        let token = String(parts[1]).trimmingCharacters(in: .whitespaces)
        return tokens.withLock { tokens in
            guard let expiry = tokens[token] else { return false }
            return expiry > Date()
        }
    }

    private static func namesMarketplace(_ name: String) -> Bool {
        var name = name
        if name.hasSuffix("/.default") { name.removeLast("/.default".count) }
        return name == resource
    }

    private func mint() -> String {
        var generator = SystemRandomNumberGenerator()
        let token = (0..<4).map { _ in String(generator.next() as UInt64, radix: 16) }.map {
            String(repeating: "0", count: 16 - $0.count) + $0
        }
        .joined()
        let now = Date()
        tokens.withLock { tokens in
            if tokens.count >= Self.maximumLiveTokens {
                tokens = tokens.filter { $0.value > now }
                if tokens.count >= Self.maximumLiveTokens {
                    for (old, _) in tokens.sorted(by: { $0.value < $1.value }).prefix(tokens.count / 2) { tokens[old] = nil }
                }
            }
            tokens[token] = now.addingTimeInterval(Double(lifetime))
        }
        return token
    }

    /// Entra ID's error shape: `{"error":"invalid_client","error_description":"..."}`.
    private static func error(_ status: Int, _ code: String, _ description: String) -> HTTPResponse {
        .json(status, ["error": .string(code), "error_description": .string(description)])
    }
}
