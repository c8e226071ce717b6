/// What this build is: the release every executable reports with `--version`, and the version of
/// the event log's format it writes (it converts a log of format 1 on first start). One place, so
/// `meterctl --version` and every daemon agree.
public enum Version {
    /// The release.
    public static let release = "0.2.0"
    /// The event log's format version (`LogManifest.currentFormat` checks it is the same).
    public static let logFormat = 2

    /// `<program> <release> (log format <n>)`: what `--version` prints.
    public static func line(_ program: String) -> String { "\(program) \(release) (log format \(logFormat))" }
}
