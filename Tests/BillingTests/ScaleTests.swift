import Billing
import BillingTestSupport
import Testing
import Wire

@Suite("Many subscriptions")
struct ScaleTests {
    @Test("100,000 subscriptions bought on every day of the month each renew exactly on their own anniversaries under hourly ticks")
    func manySubscriptions() throws {
        let template = Messages.purchase("template", start: "2024-01-01T00:00:00Z", dimensions: ["m": Messages.simple("dim", included: 1)])
        guard case .subscriptionPurchased(let base) = try Message.decode(template).get().body else {
            Issue.record("the template is not a purchase")
            return
        }
        var state = PartitionState(partition: 0)
        var sequence: UInt64 = 0
        let firstDay = at("2024-01-01T00:00:00Z")
        func apply(_ body: Message.Body, at time: Timestamp) {
            sequence += 1
            state.apply(BillingRecord(partition: 0, sequence: sequence, enqueuedTime: time, message: Message(body: body)))
        }
        let count = 100_000
        for index in 0..<count {
            var purchase = base
            purchase.resource = ResourceName(resourceId: "sub-\(index)")
            purchase.subscriptionStart = firstDay.adding(microseconds: Int64(index % 31) * Timestamp.microsecondsPerDay)
            apply(.subscriptionPurchased(purchase), at: firstDay)
        }
        let ping = try Message.decode(Messages.ping()).get().body
        let hours = 24 * 75
        for hour in 1...hours {
            apply(ping, at: firstDay.adding(microseconds: Int64(hour) * Timestamp.microsecondsPerHour))
        }
        let now = firstDay.adding(microseconds: Int64(hours) * Timestamp.microsecondsPerHour)
        #expect(state.subscriptionCount == count)
        for index in stride(from: 0, to: count, by: 331) {
            let start = firstDay.adding(microseconds: Int64(index % 31) * Timestamp.microsecondsPerDay)
            let expected = BillingPeriod(containing: now, subscriptionStart: start, interval: .monthly)
            let period = state.subscriptionJSON(ResourceName(resourceId: "sub-\(index)"))?["period"]
            #expect(period?["start"] == .string(expected.start.iso8601), "sub-\(index)")
        }
        #expect(state.pending.isEmpty)
    }
}
