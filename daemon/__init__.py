"""How it runs: actors, bus, feeds, broker, recorder, tracing and the command line."""

if not __name__.startswith("tickd."):
    raise ImportError(f"import this package as tickd.daemon, not {__name__}")
