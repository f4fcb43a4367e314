"""What is on the wire: the unified schema and the per-source codecs (sans-I/O).

Install the project and import this as ``tickd.codecs``; the folder name ``codecs`` belongs to the
standard library.
"""

if not __name__.startswith("tickd."):  # pragma: no cover - only reached by a wrong import
    raise ImportError(f"import this package as tickd.codecs, not {__name__}")
