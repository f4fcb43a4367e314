"""The ``tickd`` command line."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Sequence
from importlib.metadata import version
from typing import Any

import anyio
from anyio.abc import TaskStatus

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
        "demo",
        help="the daemon trading EMA crosses against the fake exchange on loopback, no account",
    )
    demo.add_argument("--duration", type=float, default=30.0, help="seconds to run (Ctrl-C stops)")
    demo.add_argument("--seed", type=int, default=7, help="market seed")
    demo.add_argument(
        "--speed", type=float, default=60.0, help="market seconds per second (60: a bar a second)"
    )
    demo.add_argument("--out", default="tickd-demo", help="folder for the tape, report and logs")
    run = verbs.add_parser("run", help="run the daemon (see EXIT STATUS below)")
    run.add_argument("--config", metavar="FILE", help="TOML configuration (defaults otherwise)")
    check = verbs.add_parser(
        "check-config", help="validate a configuration and print it with secrets masked"
    )
    check.add_argument("file", metavar="FILE")
    for verb, what in (
        ("halt", "deny every new order (cancels still go through)"),
        ("reduce", "allow only orders that shrink a position"),
        ("resume", "trade normally again"),
    ):
        command = verbs.add_parser(
            verb,
            help=f"{what}: the running daemon applies it within a second; it holds "
            "across restarts until changed",
        )
        command.add_argument("--config", metavar="FILE", help="the daemon's configuration")
        command.add_argument("--state-dir", metavar="DIR", help="overrides the configuration's")
        command.add_argument("--reason", default="", help="recorded with the change")
    from tickd.daemon.tape_commands import add_verbs

    add_verbs(verbs)
    from tickd.daemon.trace_command import add_verb as add_trace

    add_trace(verbs)
    fake = verbs.add_parser(
        "fake-exchange",
        help="serve Alpaca's market data, trading API and trade_updates on loopback (no account)",
    )
    from tickd.daemon.fake_exchange.server import configure_parser

    configure_parser(fake)
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
    if args.verb in _COMMANDS:
        return _command(args.verb, args.config, args.state_dir, args.reason)
    if args.verb in ("record", "replay", "tape"):
        from tickd.daemon import tape_commands

        if args.verb == "record":
            return tape_commands.record(args)
        if args.verb == "replay":
            return tape_commands.replay_command(args)
        return (tape_commands.tape_info if args.tape_verb == "info" else tape_commands.tape_cat)(
            args
        )
    if args.verb == "trace":
        from tickd.daemon.trace_command import trace_command

        return trace_command(args)
    if args.verb == "fake-exchange":
        from tickd.daemon.fake_exchange.server import run_cli

        return run_cli(args)
    if args.verb == "demo":
        from tickd.daemon.demo import run_demo  # imported on use: keeps --version instant

        if not (args.duration > 0 and args.speed > 0):
            parser.error("--duration and --speed must be > 0")
        return run_demo(args.duration, args.seed, args.speed, args.out)
    parser.print_help()
    return 0


_COMMANDS = {"halt": "halted", "reduce": "reducing", "resume": "active"}


def _command(verb: str, config_path: str | None, directory: str | None, reason: str) -> int:
    from pathlib import Path

    from tickd.daemon.config import EX_CONFIG, ConfigError, load, state_dir
    from tickd.daemon.control import write_command
    from tickd.daemon.risk import RiskState

    try:
        where = Path(directory) if directory else state_dir(load(config_path))
    except ConfigError as exc:
        print(f"tickd: bad configuration: {exc}", file=sys.stderr)
        return EX_CONFIG
    state = RiskState(_COMMANDS[verb])
    path = write_command(where, state, reason or f"tickd {verb}").resolve()
    print(f"tickd: {state} (written to {path}; the daemon applies it within a second)")
    return EX_OK


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
    from tickd.daemon import logs

    logs.configure(config.log, secrets=logs.secrets_of(config))
    from tickd.daemon import eventloop

    status: int = eventloop.run(_serve, config)
    return status


async def _serve(config: Any) -> int:
    import structlog

    from tickd.daemon.actors import RestartBudgetError, first_error
    from tickd.daemon.app import App
    from tickd.daemon.feeds.base import FeedFatalError
    from tickd.daemon.heap import freeze_startup_heap
    from tickd.daemon.logs import redact
    from tickd.daemon.systemd import Notifier

    log = structlog.get_logger("tickd.cli")
    app = App(config)
    notifier = Notifier()
    status = EX_OK
    try:
        async with anyio.create_task_group() as tasks:

            async def stop_on_signal() -> None:
                # Open for the daemon's whole life: a second SIGTERM during the stop must not
                # fall back to the default action and cut the tape's and the traces' flush.
                with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                    async for received in signals:
                        if app.stopping:
                            log.warning("stop_signal_repeated", signal=received.name)
                            continue
                        notifier.stopping()
                        if app.ready:
                            app.stop()  # the ordered shutdown
                        else:
                            tasks.cancel_scope.cancel()  # still starting: just stop
                            return

            async def switch_on_signal() -> None:
                from tickd.daemon.risk import RiskState

                # SIGUSR1 halts, SIGUSR2 resumes: for a supervisor that can only send signals.
                with anyio.open_signal_receiver(signal.SIGUSR1, signal.SIGUSR2) as signals:
                    async for received in signals:
                        if app.control is not None:
                            halt = received == signal.SIGUSR1
                            state = RiskState.HALTED if halt else RiskState.ACTIVE
                            app.risk.set_state(state, signal.Signals(received).name, "signal")

            async def daemon(*, task_status: TaskStatus[None]) -> None:
                await app.run(task_status=task_status)
                tasks.cancel_scope.cancel()  # stopped: the signal and notify tasks too

            tasks.start_soon(stop_on_signal)
            tasks.start_soon(switch_on_signal)
            await tasks.start(daemon)  # returns once ready: kernels compiled, feeds subscribed
            log.info("startup_heap_frozen", objects=freeze_startup_heap())
            assert app.metrics is not None
            notifier.ready(app.metrics.status_text())
            tasks.start_soon(notifier.run, app.metrics.status_text)
    except* FeedFatalError as group:
        message = redact(f"tickd: {first_error(group)}")
        print(message, file=sys.stderr)
        notifier.stopping(f"failed: {message}")
        status = EX_UNAVAILABLE
    except* RestartBudgetError as group:
        message = redact(f"tickd: {first_error(group)}")
        print(message, file=sys.stderr)
        notifier.stopping(f"failed: {message}")
        status = EX_SOFTWARE
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
