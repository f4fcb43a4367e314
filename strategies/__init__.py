"""What to trade: indicator kernels, the Strategy API and the built-in strategies (pure compute)."""

if not __name__.startswith("tickd."):
    raise ImportError(f"import this package as tickd.strategies, not {__name__}")
