import Daemon
public import Wire

extension Connection {
    /// Answers `request` with `body`'s result, or with its error (a `WireError` as it is, any
    /// other as `internal`), then calls `done`. Every rejection is logged with the peer's
    /// credentials (DESIGN.md §3).
    public func respond(to request: Request, done: @Sendable () -> Void, _ body: () throws -> JSONObject) {
        do {
            send(Response.ok(id: request.id, try body()))
            done()
        } catch let error as WireError {
            reject(request, error, done: done)
        } catch {
            send(Response.error(id: request.id, WireError(.internalError, "\(error)")))
            done()
        }
    }

    /// Answers `request` with `error`, logged with the peer's credentials, then calls `done`.
    public func reject(_ request: Request, _ error: WireError, done: @Sendable () -> Void) {
        Log.notice("rejected \(request.op) on \(listener) from \(peer): \(error)")
        send(Response.error(id: request.id, error))
        done()
    }
}
