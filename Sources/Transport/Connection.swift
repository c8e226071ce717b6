/// What a request handler sees of the connection a request came on: where it came from, a way
/// to answer (one frame per `send`), and the stream controls. `SocketConnection` is the real one,
/// `MemoryConnection` the one tests drive handlers with from bytes, without processes or sockets.
public protocol Connection: AnyObject, Sendable {
    /// The name of the listener it arrived on (`client`, `admin`, ...).
    var listener: String { get }
    /// Who connected (`SO_PEERCRED`), for logs.
    var peer: PeerCredentials { get }
    /// True once the connection is closed (by either side).
    var isClosed: Bool { get }
    /// Marks the current request as a stream: when the peer hangs up the connection closes at once.
    func markStreaming()
    /// Runs `handler` once when the connection closes (at once if it is closed already).
    func onClose(_ handler: @escaping @Sendable () -> Void)
    /// Sends one frame carrying `payload`. Never blocks; a dead peer closes the connection.
    func send(_ payload: [UInt8])
    /// Blocks while too much output is unsent; false when the connection closed. Streams call it
    /// between batches, so a slow reader slows the stream instead of growing memory.
    func waitForOutputSpace() -> Bool
    /// Closes the connection now.
    func close()
}
