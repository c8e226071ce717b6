/// What this build is: the release every executable reports with `--version`, and the version of
/// the event log's format it reads and writes (a log written by another format version is not
/// this build's to open). One place, so `meterctl --version` and every daemon agree.
public enum Version {
    /// The release.
    public static let release = "0.2.0"
    /// The event log's format version.
    public static let logFormat = 1

    /// `<program> <release> (log format <n>)`: what `--version` prints.
    public static func line(_ program: String) -> String { "\(program) \(release) (log format \(logFormat))" }
}
