"""Configuration: file, environment, credentials, errors with the key's path, masking."""

from __future__ import annotations

from pathlib import Path

import pytest

from tickd.daemon.config import (
    ConfigError,
    effective,
    load,
    missing_secrets,
    require_secrets,
    state_dir,
)

GOOD = """
[alpaca]
feed = "sip"
paper = true

[symbols]
stocks = ["AAPL", "MSFT"]

[runtime]
restart_budget = 3
"""


TRADING = """
[symbols]
stocks = ["AAPL"]
[[strategies]]
kind = "ema_cross"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tickd.toml"
    path.write_text(text)
    return path


def test_a_file_decodes_into_the_structs_with_defaults_for_the_rest(tmp_path: Path) -> None:
    config = load(write(tmp_path, GOOD), environ={})
    assert config.alpaca.feed == "sip" and config.alpaca.encoding == "msgpack"
    assert config.symbols.stocks == ("AAPL", "MSFT")
    assert config.runtime.restart_budget == 3 and config.runtime.restart_window == 60.0
    assert load(None, environ={}) == load(write(tmp_path, ""), environ={})


def test_the_environment_overrides_any_key(tmp_path: Path) -> None:
    environ = {
        "TICKD_ALPACA__FEED": "iex",
        "TICKD_SYMBOLS__CRYPTO": '["BTC/USD"]',
        "TICKD_RUNTIME__RESTART_WINDOW": "5",
        "TICKD_NEWSAPI__ENABLED": "true",
        "UNRELATED": "x",
    }
    config = load(write(tmp_path, GOOD), environ=environ)
    assert config.alpaca.feed == "iex"
    assert config.symbols.crypto == ("BTC/USD",)
    assert config.runtime.restart_window == 5.0 and config.newsapi.enabled is True


def test_secrets_come_from_the_credentials_directory_before_the_environment(
    tmp_path: Path,
) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "alpaca.key_id").write_text("KEY-FROM-FILE\n")
    environ = {
        "CREDENTIALS_DIRECTORY": str(credentials),
        "APCA_API_KEY_ID": "KEY-FROM-ENV",
        "APCA_API_SECRET_KEY": "SECRET-FROM-ENV",
    }
    config = load(None, environ=environ)
    assert config.alpaca.key_id == "KEY-FROM-FILE"
    assert config.alpaca.secret_key == "SECRET-FROM-ENV"
    shown = effective(config)
    assert shown["alpaca"]["key_id"] == shown["alpaca"]["secret_key"] == "***"
    assert shown["finnhub"]["token"] == ""  # unset: shown as unset
    assert "FROM" not in repr(shown)


@pytest.mark.parametrize(
    ("text", "environ", "path", "expected"),
    [
        ('[alpaca]\nfeed = "nasdaq"\n', {}, "$.alpaca.feed", "Invalid enum value 'nasdaq'"),
        ("[alpaca]\nfed = 1\n", {}, "$.alpaca", "unknown field `fed`"),
        ("[runtime]\nrestart_budget = 'x'\n", {}, "$.runtime.restart_budget", "Expected `int`"),
        ("[oops]\n", {}, "$", "unknown field `oops`"),
        ("", {"TICKD_ALPACA__PAPER": "maybe"}, "$.alpaca.paper", "Expected `bool`"),
        ("alpaca = 3\n", {"TICKD_ALPACA__FEED": "iex"}, "$.alpaca", "is not a table"),
        ("", {"TICKD_RUNTIME__RECONNECT_INITIAL": "0"}, "$.runtime.reconnect_initial", "> 0"),
        ("", {"TICKD_RUNTIME__MAILBOX_CAPACITY": "0"}, "$.runtime.mailbox_capacity", ">= 1"),
        ("[runtime]\nreconnect_initial = 90.0\n", {}, "$.runtime.reconnect_initial", "exceed"),
        ("[runtime]\nrestart_backoff = 20.0\n", {}, "$.runtime.restart_backoff", "exceed"),
        ("[finnhub]\nenabled = true\n", {}, "$.finnhub.symbols", "no symbols to follow"),
        ("[newsapi]\nenabled = true\n", {}, "$.newsapi.terms", "nothing to search for"),
        ("[broker]\nlive = true\n", {}, "$.broker.live", "needs both broker.live = true"),
        ("[alpaca]\npaper = false\n", {}, "$.broker.live", "and alpaca.paper = false"),
        ('[broker]\nkind = "ib"\n', {}, "$.broker.kind", "Invalid enum value 'ib'"),
        ("[risk]\nmax_position = 0\n", {}, "$.risk.max_position", "> 0"),
        ('[risk]\nstate = "paused"\n', {}, "$.risk.state", "Invalid enum value 'paused'"),
        (TRADING + '[[strategies]]\nkind = "ema_cross"\n', {}, "$.strategies[1].name", "two"),
        (TRADING, {"TICKD_SYMBOLS__STOCKS": "[]"}, "$.strategies[0].symbols", "no symbols"),
        (
            TRADING + '[[strategies]]\nkind = "rsi_reversion"\n',
            {},
            "$.strategies[1].symbols",
            "AAPL already traded by another strategy",
        ),
        (TRADING + 'symbols = ["TSLA"]\n', {}, "$.strategies[0].symbols", "TSLA not in symbols"),
        (TRADING + "params = {fastt = 3}\n", {}, "$.strategies[0]", "unknown parameter 'fastt'"),
        (TRADING + "params = {fast = 30}\n", {}, "$.strategies[0]", "fast"),
        (TRADING.replace("ema_cross", "martingale"), {}, "$.strategies[0]", "unknown strategy"),
    ],
)
def test_a_bad_key_is_named_with_what_was_expected(
    tmp_path: Path, text: str, environ: dict[str, str], path: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load(write(tmp_path, text), environ=environ)
    assert raised.value.path == path
    assert expected in str(raised.value)


def test_unreadable_or_broken_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "missing.toml", environ={})
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(write(tmp_path, "[alpaca\n"), environ={})


# Found by the fuzz run (bench/reliability/fuzz.py): each of these used to escape as a
# RecursionError traceback, load as "never", or print a megabyte of the bad value.


def test_deep_nesting_is_a_config_error_not_a_recursion_error(tmp_path: Path) -> None:
    deep = "[" * 3000 + "]" * 3000
    with pytest.raises(ConfigError, match="nested too deeply") as raised:
        load(write(tmp_path, f"state_dir = {deep}\n"), environ={})
    assert raised.value.path == str(tmp_path / "tickd.toml")
    # From the environment, a value that is not TOML is text: here the wrong type, named.
    with pytest.raises(ConfigError, match="Expected `array`") as raised:
        load(None, environ={"TICKD_SYMBOLS__STOCKS": deep})
    assert raised.value.path == "$.symbols.stocks"


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("[broker]\ntimeout = inf\n", "$.broker.timeout"),
        ("[runtime]\nreconnect_initial = 1.0\nreconnect_cap = 1e400\n", "$.runtime.reconnect_cap"),
        ("[alpaca]\nsilence_limit = inf\n", "$.alpaca.silence_limit"),
    ],
)
def test_infinite_numbers_are_refused(tmp_path: Path, text: str, path: str) -> None:
    with pytest.raises(ConfigError, match="must be a finite number, got inf") as raised:
        load(write(tmp_path, text), environ={})
    assert raised.value.path == path


def test_an_error_quotes_only_the_start_of_a_huge_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        load(write(tmp_path, f'[alpaca]\nfeed = "{"x" * 100_000}"\n'), environ={})
    assert raised.value.path == "$.alpaca.feed"
    assert "Invalid enum value 'xxx" in str(raised.value) and len(str(raised.value)) < 500


def test_the_feeds_configured_say_which_secrets_are_missing() -> None:
    environ = {"TICKD_SYMBOLS__STOCKS": '["AAPL"]', "TICKD_FINNHUB__ENABLED": "true"}
    config = load(None, environ=environ)
    assert missing_secrets(config) == [
        ("alpaca", "key_id"),
        ("alpaca", "secret_key"),
        ("finnhub", "token"),
    ]
    with pytest.raises(ConfigError, match="APCA_API_KEY_ID") as raised:
        require_secrets(config)
    assert raised.value.path == "$.alpaca.key_id"
    require_secrets(load(None, environ={}))  # nothing configured: nothing needed
    trading = load(None, environ={"TICKD_BROKER__KIND": "alpaca"})
    assert missing_secrets(trading) == [("alpaca", "key_id"), ("alpaca", "secret_key")]


def test_the_state_directory_comes_from_the_config_or_the_service_manager(
    tmp_path: Path,
) -> None:
    assert state_dir(load(None, environ={}), environ={}) == Path("state")
    given = {"STATE_DIRECTORY": "/var/lib/tickd:/var/lib/other"}  # systemd's, colon-separated
    assert state_dir(load(None, environ={}), environ=given) == Path("/var/lib/tickd")
    config = load(write(tmp_path, f'state_dir = "{tmp_path}"\n'), environ={})
    assert state_dir(config, environ=given) == tmp_path


def test_a_trading_config_decodes_strategies_risk_and_broker(tmp_path: Path) -> None:
    text = TRADING + 'name = "trend"\nparams = {fast = 5, slow = 20, qty = "2.5"}\n'
    text += '[risk]\nmax_daily_loss = 250\non_daily_loss = "halted"\n[broker]\nkind = "sim"\n'
    config = load(write(tmp_path, text), environ={})
    (strategy,) = config.strategies
    assert (strategy.kind, strategy.name, strategy.params["qty"]) == ("ema_cross", "trend", "2.5")
    assert config.risk.max_daily_loss == 250 and config.risk.on_daily_loss == "halted"
    assert config.broker.kind == "sim" and not config.broker.live
