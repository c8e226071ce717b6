public import Daemon
import SystemIO
import Wire

extension UnixServer {
    /// The server of a process with one socket (the aggregator, the query service): on the socket
    /// systemd passed (`FileDescriptorName=name`), or else on `path` (mode 0660), whose setting
    /// `setting` a failure names. It takes up to 16,384 connections, fewer when the open-file
    /// limit cannot hold them besides `reservedDescriptors` (files and connections of its own).
    public static func oneSocket(
        component: String, name: String, path: String, setting: String, maximumFrameBytes: Int, reservedDescriptors: Int = 128,
        handler: any RequestHandler
    ) throws(StartupFailure) -> UnixServer {
        var listener: Listener
        let inherited = Systemd.inheritedSockets()
        if let socket = inherited.first {
            if inherited.count > 1 || ![name, name + ".socket", "unknown"].contains(socket.name) {
                throw StartupFailure(
                    "systemd passed \(inherited.count) sockets (\(inherited.map(\.name))); \(component) takes one, FileDescriptorName=\(name)"
                )
            }
            listener = Listener(descriptor: socket.descriptor, name: name)
            Log.info("serving the socket passed by systemd")
        } else {
            do {
                try ServiceLifecycle.makeSocketDirectory(for: path)
                listener = Listener(descriptor: try UnixSocket.listen(path: path, mode: 0o660), name: name)
            } catch {
                throw StartupFailure("cannot listen on \(path) (\(setting)): \(error)")
            }
            Log.info("listening on \(path) (mode 0660)")
        }
        let descriptors = DescriptorBudget.measure(reserve: reservedDescriptors)
        let connections = descriptors.cap(16_384)
        guard connections >= 8 else { throw StartupFailure(descriptors.tooFew(8)) }
        listener.maximumConnections = connections
        Log.info("connections: \(connections) (\(descriptors))")
        var configuration = UnixServer.Configuration()
        configuration.maximumFrameLength = maximumFrameBytes
        do {
            return try UnixServer(listeners: [listener], configuration: configuration, handler: handler)
        } catch {
            throw StartupFailure("cannot start the server: \(error)")
        }
    }
}
