"""The command line: verbs, flags and exit statuses."""

import pytest

from tickd.daemon import cli


def test_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("tickd 0.")


def test_no_verb_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 0
    assert "demo" in capsys.readouterr().out


@pytest.mark.parametrize("flag", ["--duration", "--speed"])
def test_demo_rejects_a_non_positive_duration_or_speed(flag: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["demo", flag, "0"])
    assert exit_info.value.code == 2
