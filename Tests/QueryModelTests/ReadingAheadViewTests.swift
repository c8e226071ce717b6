import Billing
import BillingTestSupport
import Testing
import Wire

@testable import QueryModel

/// `PartitionView.prefetch`: a hint, so a view folded with it is the view folded without it.
@Suite("Reading the records ahead into a read model")
struct ReadingAheadViewTests {
    @Test("a view folded with every step of reading ahead has the snapshot and the output of one folded without")
    func sameView() {
        // Every part of the read model, then many subscriptions' usage over a day (some unknown).
        var fold = ViewBinarySnapshotTests.busy()
        let plan: JSONValue = ["m": Messages.simple("dim", included: 1), "w": Messages.waterfall([("t1", "5"), ("t2", "5")])]
        for index in 0..<30 {
            fold.apply(
                Messages.purchase("s-\(index)", start: "2024-01-\(10 + index % 18)T00:00:00Z", dimensions: plan), at: "2024-02-02T12:00:00Z"
            )
        }
        let start = at("2024-02-02T12:00:00Z")
        for index in 0..<600 {
            let name = index % 17 == 0 ? "nobody" : "s-\(index * 7 % 30)"
            fold.apply(
                Messages.usage(name, index % 2 == 0 ? "m" : "w", "\(index % 5).5", properties: ["region": index % 3 == 0 ? "eu" : "us"]),
                at: start.adding(microseconds: Int64(index) * 120_000_000))
        }
        var view = PartitionView(partition: 0)
        // Read ahead with a few subscriptions too (by default only from thousands).
        view.state.readAheadFrom = 0
        var usage: [UsageRecord] = []
        var submissions: [SubmissionRecord] = []
        fold.records.withUnsafeBufferPointer { records in
            for step in 0..<PartitionState.readAheadSteps {
                for offset in 0..<(PartitionState.readAheadSteps - step) where offset < records.count {
                    view.prefetch(records.baseAddress! + offset, step: step)
                }
            }
            for index in records.indices {
                for step in 0..<PartitionState.readAheadSteps where index + PartitionState.readAheadSteps - step < records.count {
                    view.prefetch(records.baseAddress! + index + PartitionState.readAheadSteps - step, step: step)
                }
                var output = PartitionView.Output()
                view.apply(records[index], into: &output)
                usage += output.usage
                submissions += output.submissions
            }
        }
        #expect(fold.records.count > 600 && fold.usage.count > 100)
        #expect(JSONWriter.string(view.snapshot()) == JSONWriter.string(fold.view.snapshot()))
        #expect(view.subscriptionViews == fold.view.subscriptionViews)
        #expect(usage.map { "\($0)" } == fold.usage.map { "\($0)" })
        #expect(submissions.map { "\($0)" } == fold.submissions.map { "\($0)" })
    }
}
