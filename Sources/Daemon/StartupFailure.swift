/// Why a process cannot start, naming the setting or file at fault: what a library throws where
/// it used to end the process itself. The executable's main decides what to do with it (as a
/// rule `ServiceLifecycle.fail`, which logs it and exits 78).
public struct StartupFailure: Error, Hashable, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
