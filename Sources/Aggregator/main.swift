runAggregator()
