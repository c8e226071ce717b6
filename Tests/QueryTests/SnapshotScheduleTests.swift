import Projection
import Testing
import Wire

@Suite("When a partition is snapshotted")
struct SnapshotScheduleTests {
    static let start = Timestamp(iso8601: "2024-03-01T00:00:00Z")!

    static func hours(_ count: Int) -> Timestamp { start.adding(microseconds: Int64(count) * Timestamp.microsecondsPerHour) }

    @Test("while catching up only the record count makes a snapshot due; an hour of log time counts again once caught up")
    func logTimeWaitsForTheHead() {
        var schedule = SnapshotSchedule(everyRecords: 1000, everySeconds: 3600, restoredAt: 10, time: Self.start)
        var due = [
            schedule.folded(10, time: Self.hours(2), catchingUp: true), schedule.folded(10, time: Self.hours(5), catchingUp: true),
            schedule.folded(980, time: Self.hours(6), catchingUp: true),
        ]
        #expect(due == [false, false, true])
        schedule.saved(sequence: 1010, time: Self.hours(6))
        due = [schedule.folded(10, time: Self.hours(9), catchingUp: true), schedule.folded(1, time: Self.hours(9))]
        #expect(due == [false, true])
    }

    @Test("caught up, an hour of log time since the last snapshot makes one due")
    func logTimeWhenCaughtUp() {
        var schedule = SnapshotSchedule(everyRecords: 1000, everySeconds: 3600, restoredAt: 10, time: Self.start)
        let due = [schedule.folded(10, time: Self.start.adding(microseconds: 3_599_000_000)), schedule.folded(10, time: Self.hours(1))]
        #expect(due == [false, true])
    }
}
