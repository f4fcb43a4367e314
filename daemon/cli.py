"""The ``tickd`` command line."""

from __future__ import annotations

import argparse
import importlib.util
import json
import signal
import sys
from collections.abc import Sequence
from importlib.metadata import version
from typing import Any

import anyio

EX_OK, EX_USAGE, EX_UNAVAILABLE, EX_SOFTWARE = 0, 2, 69, 70
EXIT_STATUS = """exit status:
  0   stopped on request (SIGTERM, SIGINT)
  2   bad command line
  69  a feed stopped for good: the server refused the keys, the plan or the request
  70  an actor kept crashing past its restart budget (let the service manager restart us)
  78  bad configuration: the message names the key (do not restart until it is fixed)"""


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
    run = verbs.add_parser("run", help="run the daemon (see EXIT STATUS below)")
    run.add_argument("--config", metavar="FILE", help="TOML configuration (defaults otherwise)")
    check = verbs.add_parser(
        "check-config", help="validate a configuration and print it with secrets masked"
    )
    check.add_argument("file", metavar="FILE")
    parser.epilog = EXIT_STATUS
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verb == "check-config":
        return _check_config(args.file)
    if args.verb == "run":
        return _run(args.config)
    if args.verb == "demo":
        from tickd.daemon.demo import run_demo  # imported on use: keeps --version instant

        if args.events < 1:
            parser.error("--events must be at least 1")
        return run_demo(args.events, args.seed, args.show)
    parser.print_help()
    return 0


def _check_config(path: str) -> int:
    from tickd.daemon.config import EX_CONFIG, ConfigError, effective, load, missing_secrets

    try:
        config = load(path)
    except ConfigError as exc:
        print(f"tickd: bad configuration: {exc}", file=sys.stderr)
        return EX_CONFIG
    print(json.dumps(effective(config), indent=2))
    for section, key in missing_secrets(config):
        print(f"tickd: note: {section}.{key} is not set (tickd run needs it)", file=sys.stderr)
    return EX_OK


def _run(path: str | None) -> int:
    from tickd.daemon.config import EX_CONFIG, ConfigError, load, require_secrets

    try:
        config = load(path)
        require_secrets(config)
    except ConfigError as exc:
        print(f"tickd: bad configuration: {exc}", file=sys.stderr)
        return EX_CONFIG
    # uvloop when it is installed (it is not a dependency): a faster event loop, same code.
    uvloop = importlib.util.find_spec("uvloop") is not None
    status: int = anyio.run(_serve, config, backend_options={"use_uvloop": uvloop})
    return status


async def _serve(config: Any) -> int:
    from tickd.daemon.actors import RestartBudgetError, first_error
    from tickd.daemon.app import App
    from tickd.daemon.feeds.base import FeedFatalError

    app = App(config)
    status = EX_OK
    try:
        async with anyio.create_task_group() as tasks:

            async def stop_on_signal() -> None:
                with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                    async for _ in signals:
                        if app.ready:
                            app.stop()  # the ordered shutdown
                        else:
                            tasks.cancel_scope.cancel()  # still starting: just stop
                        return

            tasks.start_soon(stop_on_signal)
            await app.run()
            tasks.cancel_scope.cancel()
    except* FeedFatalError as group:
        print(f"tickd: {first_error(group)}", file=sys.stderr)
        status = EX_UNAVAILABLE
    except* RestartBudgetError as group:
        print(f"tickd: {first_error(group)}", file=sys.stderr)
        status = EX_SOFTWARE
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
