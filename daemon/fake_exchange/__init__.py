"""The fake exchange: Alpaca's market data streams, trading REST API and trade_updates stream on
loopback, backed by the synthetic market and a matching engine, with switchable chaos."""
