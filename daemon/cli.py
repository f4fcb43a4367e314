"""The ``tickd`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib.metadata import version


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tickd", description="tickd: an event-driven trading daemon."
    )
    parser.add_argument("--version", action="version", version=f"tickd {version('tickd')}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    demo = verbs.add_parser(
        "demo", help="synthetic market -> Alpaca wire frames -> decoded structs, no account needed"
    )
    demo.add_argument("--events", type=int, default=20_000, help="events to generate")
    demo.add_argument("--seed", type=int, default=7, help="market seed (same seed, same run)")
    demo.add_argument("--show", type=int, default=5, help="decoded structs to print")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verb == "demo":
        from tickd.daemon.demo import run_demo  # imported on use: keeps --version instant

        if args.events < 1:
            parser.error("--events must be at least 1")
        return run_demo(args.events, args.seed, args.show)
    parser.print_help()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
