import Billing
import BillingTestSupport
import Testing
import Wire

@Suite("Waterfall dimensions")
struct WaterfallTests {
    /// The reference's tiers (`WaterfallDimension.json`): thresholds are band sizes.
    static let tiers: JSONValue = Messages.waterfall([
        ("egress_tier_1", "100"), ("egress_tier_2", "10000"), ("egress_tier_3", "40000"), ("egress_tier_4", "100000"),
        ("egress_overage", "350000"),
    ])

    func purchased(_ dimension: JSONValue = tiers) -> Fold {
        var fold = Fold()
        fold.apply(
            Messages.purchase("s", start: "2024-01-10T00:00:00Z", dimensions: ["gigabyte_egress": dimension]), at: "2024-01-10T00:00:00Z")
        return fold
    }

    /// What each tier has billed this period, from the `state` JSON.
    func billed(_ fold: Fold) -> [String] {
        fold.meter("s", "gigabyte_egress")?["tiers"]?.arrayValue?.compactMap { tier in
            guard case .string(let dimension)? = tier["dimension"], case .number(let billed)? = tier["billed"] else { return nil }
            return "\(dimension)=\(billed)"
        } ?? []
    }

    @Test("the reference's sequence: the first threshold is free, then each tier is billed over its band")
    func referenceSequence() {
        var fold = purchased()
        let time = "2024-01-10T10:00:00Z"
        fold.apply(Messages.usage("s", "gigabyte_egress", "50"), at: time)
        fold.apply(Messages.usage("s", "gigabyte_egress", "49"), at: time)
        #expect(billed(fold) == ["egress_tier_1=0", "egress_tier_2=0", "egress_tier_3=0", "egress_tier_4=0", "egress_overage=0"])
        #expect(fold.state.subscriptionJSON(ResourceName(resourceId: "s"))?["openHours"] == nil)
        fold.apply(Messages.usage("s", "gigabyte_egress", "2"), at: time)
        #expect(billed(fold).first == "egress_tier_1=1")
        fold.apply(Messages.usage("s", "gigabyte_egress", "9998"), at: time)
        #expect(billed(fold).prefix(2) == ["egress_tier_1=9999", "egress_tier_2=0"])
        fold.apply(Messages.usage("s", "gigabyte_egress", "1"), at: time)
        #expect(fold.meter("s", "gigabyte_egress")?["consumed"] == 10_100)
        #expect(billed(fold).prefix(2) == ["egress_tier_1=10000", "egress_tier_2=0"])
        fold.apply(Messages.usage("s", "gigabyte_egress", "1"), at: time)
        #expect(billed(fold).prefix(2) == ["egress_tier_1=10000", "egress_tier_2=1"])
        fold.apply(Messages.usage("s", "gigabyte_egress", "490002"), at: time)
        #expect(fold.meter("s", "gigabyte_egress")?["consumed"] == 500_103)
        #expect(
            billed(fold) == [
                "egress_tier_1=10000", "egress_tier_2=40000", "egress_tier_3=100000", "egress_tier_4=350000", "egress_overage=3",
            ])
        #expect(fold.meter("s", "gigabyte_egress")?["dimension"] == "egress_overage")
        fold.ping(at: "2024-01-10T11:00:00Z")
        #expect(
            fold.pendingSummary == [
                "egress_overage@2024-01-10T10=3", "egress_tier_1@2024-01-10T10=10000", "egress_tier_2@2024-01-10T10=40000",
                "egress_tier_3@2024-01-10T10=100000", "egress_tier_4@2024-01-10T10=350000",
            ])
    }

    @Test("one event may split across several tiers, including the free part")
    func splitAcrossTiers() {
        var fold = purchased()
        fold.apply(Messages.usage("s", "gigabyte_egress", "50150.5"), at: "2024-01-10T10:00:00Z")
        fold.ping(at: "2024-01-10T11:00:00Z")
        #expect(
            fold.pendingSummary == [
                "egress_tier_1@2024-01-10T10=10000", "egress_tier_2@2024-01-10T10=40000", "egress_tier_3@2024-01-10T10=50.5",
            ])
    }

    /// The parts of the usage effect each event makes, as `dimension quantity/billed` texts; the
    /// lists are given back after each event (`recycle`), as the read model does.
    func effectParts(_ quantities: [String]) -> [[String]] {
        var fold = purchased()
        fold.state.effects = []
        var seen: [[String]] = []
        for quantity in quantities {
            fold.apply(Messages.usage("s", "gigabyte_egress", quantity), at: "2024-01-10T10:00:00Z")
            for effect in fold.state.effects ?? [] {
                guard case .usage(_, _, _, let parts, _, _, _) = effect else { continue }
                seen.append(parts.map { "\($0.dimension) \($0.quantity)/\($0.billed)" })
                fold.state.recycle(parts)
            }
            fold.state.effects = []
        }
        return seen
    }

    @Test("a usage effect's parts: the free band on the first tier's dimension, ahead of or added to that tier's overage")
    func usageEffectParts() {
        #expect(
            effectParts(["60", "60", "9990", "50000", "7"]) == [
                // All of it in the free band (100): a part of the first tier's dimension, unbilled.
                ["egress_tier_1 60/0"],
                // 40 free, 20 over: one part of the first tier, both counted on it.
                ["egress_tier_1 60/20"],
                // 9,980 on the first tier, 10 on the second.
                ["egress_tier_1 9980/9980", "egress_tier_2 10/10"],
                // Across the second tier into the third.
                ["egress_tier_2 39990/39990", "egress_tier_3 10010/10010"],
                // A recycled list holds only the next event's parts.
                ["egress_tier_3 7/7"],
            ])
        #expect(effectParts(["150"]) == [["egress_tier_1 150/50"]], "free band and overage in one event")
    }

    @Test("each hour's consumption per tier becomes that hour's items")
    func itemsPerHourAndTier() {
        var fold = purchased()
        fold.apply(Messages.usage("s", "gigabyte_egress", "150"), at: "2024-01-10T10:00:00Z")
        fold.apply(Messages.usage("s", "gigabyte_egress", "10000"), at: "2024-01-10T11:30:00Z")
        fold.apply(Messages.usage("s", "gigabyte_egress", "7"), at: "2024-01-10T13:30:00Z")
        fold.ping(at: "2024-01-10T14:00:00Z")
        #expect(
            fold.pendingSummary == [
                "egress_tier_1@2024-01-10T10=50", "egress_tier_1@2024-01-10T11=9950", "egress_tier_2@2024-01-10T11=50",
                "egress_tier_2@2024-01-10T13=7",
            ])
    }

    @Test("the period's running total restarts on renewal, so the free part is free again")
    func totalResetsOnRenewal() {
        var fold = purchased()
        fold.apply(Messages.usage("s", "gigabyte_egress", "300"), at: "2024-01-10T10:00:00Z")
        fold.apply(Messages.usage("s", "gigabyte_egress", "300"), at: "2024-02-10T10:00:00Z")
        fold.ping(at: "2024-02-10T11:00:00Z")
        #expect(fold.pendingSummary == ["egress_tier_1@2024-01-10T10=200", "egress_tier_1@2024-02-10T10=200"])
    }

    @Test("a first threshold of 0 means there is no free part")
    func noFreePart() {
        var fold = purchased(Messages.waterfall([("a", "0"), ("b", "10")]))
        fold.apply(Messages.usage("s", "gigabyte_egress", "12"), at: "2024-01-10T10:00:00Z")
        fold.ping(at: "2024-01-10T11:00:00Z")
        #expect(fold.pendingSummary == ["a@2024-01-10T10=10", "b@2024-01-10T10=2"])
    }
}
