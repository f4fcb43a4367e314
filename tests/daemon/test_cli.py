"""The command line: verbs, flags and exit statuses."""

import pytest

from tickd.daemon import cli
from tickd.daemon.demo import run_demo


def test_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("tickd 0.")


def test_no_verb_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 0
    assert "demo" in capsys.readouterr().out


def test_demo_rejects_a_non_positive_event_count() -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["demo", "--events", "0"])
    assert exit_info.value.code == 2


def test_demo_round_trips_every_stream_and_reports_the_broken_frames() -> None:
    lines: list[str] = []
    assert run_demo(events=3_000, seed=3, show=2, out=lines.append) == 0
    text = "\n".join(lines)
    for stream in ("stocks json", "stocks msgpack", "crypto json", "crypto msgpack"):
        line = next(
            line
            for line in lines
            if line.startswith("alpaca " + stream.split()[0]) and stream.split()[1] in line
        )
        assert "round trip exact" in line, line
    assert 'DecodeError index=0 reason="bad timestamp' in text
    assert "UnknownMessage type='zz'" in text
    assert lines[-1] == "demo: ok"
