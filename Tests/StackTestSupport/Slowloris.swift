import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The slowloris attack on an HTTP server, on a thread of its own: `connections` connections each
/// send the start of a request head, then one more header byte every `interval` seconds, and
/// never finish it. A connection the server closes is opened again at once.
///
/// Unchecked only for `held`, which `start` fills before the attack's thread exists.
public final class Slowloris: @unchecked Sendable {
    private let port: Int
    private let connections: Int
    private let interval: Double
    private let running = Mutex(true)
    /// Connections the server closed and the attack opened again.
    private let reopened = Mutex(0)
    private let finished = DispatchSemaphore(value: 0)
    /// The attack's connections: filled by `start`, then touched by the attack's thread only.
    private var held: [TestHTTPClient] = []

    public init(port: Int, connections: Int, interval: Double = 1) {
        self.port = port
        self.connections = connections
        self.interval = interval
    }

    /// Opens the connections (returns once every one has sent its first bytes) and keeps them
    /// trickling until `stop`.
    public func start() throws {
        for _ in 0..<connections { held.append(try Self.open(port)) }
        let thread = Thread { [self] in
            while running.withLock({ $0 }) {
                for index in held.indices {
                    if !held[index].send("a"), let fresh = try? Self.open(port) {
                        held[index] = fresh
                        reopened.withLock { $0 += 1 }
                    }
                }
                usleep(UInt32(interval * 1_000_000))
            }
            held.removeAll()
            finished.signal()
        }
        thread.start()
    }

    /// Connections the server closed and the attack opened again.
    public var reopenedCount: Int { reopened.withLock { $0 } }

    /// Ends the attack and closes its connections.
    public func stop() {
        guard
            running.withLock({ running -> Bool in
                defer { running = false }
                return running
            })
        else { return }
        finished.wait()
    }

    private static func open(_ port: Int) throws -> TestHTTPClient {
        let client = try TestHTTPClient(port: port)
        client.send("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        return client
    }
}
