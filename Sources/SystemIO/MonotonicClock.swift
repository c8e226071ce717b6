#if canImport(Glibc)
    import Glibc
#endif

/// The system's monotonic clock, for deadlines and timeouts: immune to changes of the wall clock.
public enum MonotonicClock {
    /// Seconds since an arbitrary fixed point (the boot). The corresponding C function is
    /// `clock_gettime(CLOCK_MONOTONIC)`.
    public static func now() -> Double {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
    }
}
