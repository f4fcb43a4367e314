"""``tickd record``, ``tickd replay`` and ``tickd tape info|cat``: the tape verbs.

``record`` runs the daemon's feeds (live, or pointed at the fake exchange) with no strategies and
a recorder on every feed; ``replay`` runs the strategies over tapes with the simulated broker
(:mod:`.replay`) and prints a summary ending in the digest line, ``digest: <hex>``, which is the
same for the same tape and config; ``tape info`` and ``tape cat`` are for looking inside.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import msgspec

from tickd.codecs.tape import TapeFormatError, TapeReader, open_tapes, tape_paths
from tickd.codecs.timestamps import format_rfc3339_ns

from . import eventloop, logs
from .config import EX_CONFIG, Config, ConfigError, RecordConfig, load, require_secrets

__all__ = ["add_verbs", "record", "replay_command", "tape_cat", "tape_info"]

EX_OK, EX_DATAERR, EX_NOINPUT, EX_UNAVAILABLE, EX_SOFTWARE = 0, 65, 66, 69, 70
_PROGRESS_FROM = 4 * 2**20  # tapes smaller than this replay without a progress bar


def add_verbs(verbs: Any) -> None:
    """The tape verbs' arguments, on ``tickd``'s subcommand parser."""
    record_ = verbs.add_parser("record", help="record the configured feeds' raw frames to a tape")
    record_.add_argument("--config", metavar="FILE", help="the feeds to record (TOML)")
    record_.add_argument(
        "--out", required=True, metavar="TAPE", help="a file ending in .tape, or a directory"
    )
    record_.add_argument("--duration", type=_positive, help="stop after this many seconds")
    record_.add_argument("--compression", choices=("none", "zstd"), default="zstd")
    replay_ = verbs.add_parser(
        "replay", help="run the strategies over tapes with the simulated broker; print the digest"
    )
    replay_.add_argument("tapes", nargs="+", metavar="TAPE", help="tape files or directories")
    replay_.add_argument("--config", required=True, metavar="FILE", help="strategies, risk")
    replay_.add_argument("--speed", type=_positive, help="pace: 1 as recorded, 10 ten times faster")
    replay_.add_argument("--report", metavar="DIR", default="replay-report", help="report folder")
    replay_.add_argument("--no-report", action="store_true", help="write no report")
    replay_.add_argument("--json", action="store_true", help="print the summary as JSON")
    tape = verbs.add_parser("tape", help="look inside tapes")
    tape_verbs = tape.add_subparsers(dest="tape_verb", metavar="WHAT", required=True)
    info = tape_verbs.add_parser("info", help="header, sources, times, sizes")
    info.add_argument("tapes", nargs="+", metavar="TAPE")
    cat = tape_verbs.add_parser("cat", help="decoded messages, one JSON struct per line")
    cat.add_argument("tapes", nargs="+", metavar="TAPE")
    cat.add_argument("--source", action="append", help="only this source (repeatable)")
    cat.add_argument("--raw", action="store_true", help="the raw frames instead of structs")
    cat.add_argument("--limit", type=int, default=0, help="stop after this many lines")


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def record(args: argparse.Namespace) -> int:
    try:
        config = load(args.config)
        require_secrets(config)
    except ConfigError as exc:
        print(f"tickd: bad configuration: {exc}", file=sys.stderr)
        return EX_CONFIG
    logs.configure(config.log, secrets=logs.secrets_of(config))  # as ``tickd run`` logs
    config = msgspec.structs.replace(
        config,
        strategies=(),
        record=RecordConfig(
            enabled=True,
            directory=args.out,
            compression=args.compression,
            max_mb=config.record.max_mb,
            daily=config.record.daily,
            flush_interval=config.record.flush_interval,
        ),
        # Nothing is decided: no trace file beside wherever the command was started.
        tracing=msgspec.structs.replace(config.tracing, exporter="none"),
    )
    status: int = eventloop.run(_record, config, args.duration)
    return status


async def _record(config: Config, duration: float | None) -> int:
    from .actors import first_error
    from .app import App
    from .feeds.base import FeedFatalError

    app = App(config)
    recorder = app.recorder
    if recorder is None:
        print("tickd: nothing to record: no feed is configured", file=sys.stderr)
        return EX_CONFIG
    status = EX_OK
    try:
        async with anyio.create_task_group() as tasks:

            def stop() -> None:
                if app.ready:
                    app.stop()  # the ordered shutdown: the tape gets the feeds' last frames
                else:
                    tasks.cancel_scope.cancel()  # still connecting: just stop

            async def stop_on_signal() -> None:
                with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                    async for _ in signals:
                        stop()
                        return

            async def stop_after(seconds: float) -> None:
                await anyio.sleep(seconds)
                stop()

            tasks.start_soon(stop_on_signal)
            if duration is not None:
                tasks.start_soon(stop_after, duration)
            await app.run()
            tasks.cancel_scope.cancel()
    except* FeedFatalError as group:
        print(logs.redact(f"tickd: {first_error(group)}"), file=sys.stderr)
        status = EX_UNAVAILABLE
    frames = ", ".join(f"{n} {s}" for s, n in sorted(recorder.frames.items())) or "no frames"
    print(f"recorded: {frames}")
    for path in recorder.paths():
        print(f"tape: {path}")
    return status


def replay_command(args: argparse.Namespace, out: Callable[[str], None] = print) -> int:
    from .actors import RestartBudgetError, first_error
    from .replay import Replayer
    from .report import write_report

    try:
        config = load(args.config)
    except ConfigError as exc:
        print(f"tickd: bad configuration: {exc}", file=sys.stderr)
        return EX_CONFIG
    # The summary is the output: the graph's own info lines (an order sent...) stay quiet.
    quiet = msgspec.structs.replace(config.log, level="warning")
    logs.configure(quiet, stream=sys.stderr, secrets=logs.secrets_of(config))
    try:
        replayer = Replayer(args.tapes, config, speed=args.speed, report=not args.no_report)
    except (FileNotFoundError, TapeFormatError) as exc:
        print(f"tickd: {exc}", file=sys.stderr)
        return EX_NOINPUT
    bar = _progress(replayer.total_bytes())
    if bar is not None:
        replayer.progress = lambda _records, done: bar.update(done - bar.n)
    failure: tuple[str, int] | None = None
    try:
        summary = eventloop.run(replayer.run)
    except* TapeFormatError as group:  # a later file of a set is not a tape
        failure = (str(first_error(group)), EX_DATAERR)
    except* RestartBudgetError as group:
        failure = (str(first_error(group)), EX_SOFTWARE)
    finally:
        if bar is not None:
            bar.close()
    if failure is not None:
        print(f"tickd: {failure[0]}", file=sys.stderr)
        return failure[1]
    if args.json:
        out(msgspec.json.encode(summary).decode())
    else:
        for line in summary_lines(summary):
            out(line)
    if not args.no_report:
        title = f"tickd replay of {', '.join(Path(t).name for t in args.tapes)}"
        try:
            json_path, html_path = write_report(replayer.report_data(title), args.report)
        except OSError as exc:
            print(f"tickd: the report was not written: {exc}", file=sys.stderr)
        else:
            out(f"report: {json_path} {html_path}")
    out(f"digest: {summary.digest}")
    return EX_SOFTWARE if summary.crashes else EX_OK


def summary_lines(summary: Any) -> list[str]:
    """The human summary of a replay (``tickd replay`` and the demo print it)."""
    rate = summary.events_per_second
    lines = [
        f"replay: {len(summary.tapes)} tape file(s), {summary.records} records, "
        f"{summary.events} events in {summary.elapsed:.2f} s ({rate:,.0f} events/s)",
        f"decisions: {summary.intents} intents, {summary.orders} orders, {summary.fills} fills, "
        f"{summary.denied} denied",
        f"pnl: realised {summary.realized:.2f}, unrealised {summary.unrealized:.2f}, "
        f"fees {summary.fees:.2f}, net {summary.pnl:.2f}; positions {summary.positions}",
    ]
    if summary.crashes:
        lines.append(
            f"CRASHES: {summary.crashes} ({summary.lost_in_crashes} messages lost with them; "
            "the logs have the tracebacks): this run is not to be trusted"
        )
    if summary.decode_errors or summary.unknown or summary.ignored_bytes or summary.skipped:
        lines.append(
            f"input: {summary.decode_errors} undecodable, {summary.unknown} unknown messages, "
            f"{summary.ignored_bytes} torn bytes ignored, skipped {summary.skipped}"
        )
    stages = ", ".join(
        f"{stage} {stats['p50_us']:.1f}/{stats['p99_us']:.1f}"
        for stage, stats in summary.latency.items()
        if stats["n"]
    )
    lines.append(f"latency per batch (us, p50/p99): {stages}")
    return lines


def _progress(total: int) -> Any:
    if total < _PROGRESS_FROM:
        return None
    from tqdm import tqdm  # type: ignore[import-untyped]

    return tqdm(total=total, unit="B", unit_scale=True, desc="replay", file=sys.stderr)


def _paths(names: list[str]) -> list[Path] | None:
    """Every tape file the names give (files, or directories of them); None: said why."""
    try:
        return [path for name in names for path in tape_paths(name)]
    except FileNotFoundError as exc:
        print(f"tickd: {exc}", file=sys.stderr)
        return None


def tape_info(args: argparse.Namespace, out: Callable[[str], None] = print) -> int:
    paths = _paths(args.tapes)
    if paths is None:
        return EX_NOINPUT
    status = EX_OK
    for path in paths:
        try:
            reader = TapeReader(path)
            sources: Counter[str] = Counter()
            sizes: Counter[str] = Counter()
            first = last = None
            for record in reader:
                sources[record.source] += 1
                sizes[record.source] += len(record.data)
                first = record.ts_ns if first is None else first
                last = record.ts_ns
        except TapeFormatError as exc:
            print(f"tickd: {exc}", file=sys.stderr)
            status = EX_DATAERR
            continue
        header = reader.header
        out(f"{path}: tape v{header.version}, {header.compression}, {path.stat().st_size} bytes")
        out(f"  created {format_rfc3339_ns(header.created_ns)}; meta {dict(header.meta)}")
        if first is not None and last is not None:
            span = (last - first) / 1e9
            out(
                f"  {reader.records} records from {format_rfc3339_ns(first)} to "
                f"{format_rfc3339_ns(last)} ({span:.1f} s)"
            )
        for source, n in sorted(sources.items()):
            out(f"  {source}: {n} records, {sizes[source]} bytes")
        if reader.ignored_bytes:
            out(f"  torn tail: {reader.ignored_bytes} bytes ignored after the last whole record")
    return status


def tape_cat(args: argparse.Namespace, out: Callable[[str], None] = print) -> int:
    from .replay import TapeDecoders

    decoders = TapeDecoders(trade_updates=True)
    wanted = set(args.source or ())
    written = 0
    paths = _paths(args.tapes)
    if paths is None:
        return EX_NOINPUT
    try:
        for record in open_tapes(paths):
            if wanted and record.source not in wanted:
                continue
            head = {"ts": record.ts_ns, "source": record.source}
            if args.raw:
                lines = [head | {"raw": record.data.decode("utf-8", "backslashreplace")}]
            else:
                decoded = decoders.decode(record)
                if decoded is None:
                    lines = [head | {"type": "Undecoded", "size": len(record.data)}]
                else:
                    lines = [
                        head | {"type": type(m).__name__, "value": m}
                        for m in (*decoded.messages, *decoded.errors, *decoded.unknown)
                    ]
            for line in lines:
                out(msgspec.json.encode(line).decode())  # bytes (a bad frame's): base64
                written += 1
                if args.limit and written >= args.limit:
                    return EX_OK
    except TapeFormatError as exc:
        print(f"tickd: {exc}", file=sys.stderr)
        return EX_DATAERR
    return EX_OK
