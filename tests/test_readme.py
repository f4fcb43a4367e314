"""The README's two commands stay true: they exist, and CI runs the test command verbatim."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    blocks = text.split("```bash\n")[1:3]
    return [block.split("\n```")[0].strip() for block in blocks]


def test_readme_opens_with_the_demo_then_the_test_command() -> None:
    demo, tests = _commands()
    assert demo.endswith("tickd demo")
    assert tests.endswith("python -m pytest")
    assert demo.rsplit("&&", 1)[0] == tests.rsplit("&&", 1)[0]  # same set-up for both


def test_ci_runs_the_readme_test_command() -> None:
    _, tests = _commands()
    assert tests in (ROOT / ".ci" / "run").read_text().splitlines()


def test_the_readme_config_example_is_a_valid_config(tmp_path: Path) -> None:
    from tickd.daemon.config import load

    text = (ROOT / "README.md").read_text()
    example = text.split("```toml\n", 1)[1].split("\n```", 1)[0]
    path = tmp_path / "tickd.toml"
    path.write_text(example)
    config = load(path, environ={})
    assert config.symbols.stocks == ("AAPL", "MSFT") and config.alpaca.backfill
