"""``python -m bench`` lists the benchmarks; ``python -m bench NAME [--quick] [--json PATH]``."""

from __future__ import annotations

import argparse
import sys

from bench import harness


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("name", nargs="?", help="benchmark to run; omit to list them")
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run (CI)")
    parser.add_argument("--json", metavar="PATH", help="also write the result as JSON")
    parser.add_argument("--rounds", type=int, help="override the number of interleaved rounds")
    parser.add_argument(
        "--peer-install",
        action="store_true",
        help="replay: first make .venv-nautilus (NautilusTrader) from bench/nautilus.lock",
    )
    parser.add_argument(
        "--tracing",
        action="store_true",
        help="pipeline: throughput with the daemon's default tracing on against off",
    )
    args = parser.parse_args(argv)
    failures = harness.discover()
    if args.name is None:
        for name, bench in sorted(harness.REGISTRY.items()):
            print(f"{name:<12} {bench.summary}")
        for module, error in sorted(failures.items()):
            print(f"{module:<12} (cannot import: {error})", file=sys.stderr)
        return 0
    if args.name not in harness.REGISTRY:
        known = ", ".join(sorted(harness.REGISTRY)) or "none"
        detail = f" ({failures[args.name]})" if args.name in failures else ""
        parser.error(f"unknown benchmark {args.name!r}{detail}; known: {known}")
    if args.peer_install:
        if args.name != "replay":
            parser.error("--peer-install belongs to the replay benchmark")
        from bench.replay import install_peer

        install_peer()
    if args.tracing and args.name != "pipeline":
        parser.error("--tracing belongs to the pipeline benchmark")
    harness.run(
        args.name, quick=args.quick, json_path=args.json, rounds=args.rounds, tracing=args.tracing
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
