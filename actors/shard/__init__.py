"""The aggregator shard: lanes (one per org), state, journal, actor shell, routing, client."""
