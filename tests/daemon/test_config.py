"""Configuration: file, environment, credentials, errors with the key's path, masking."""

from __future__ import annotations

from pathlib import Path

import pytest

from tickd.daemon.config import ConfigError, effective, load, missing_secrets, require_secrets

GOOD = """
[alpaca]
feed = "sip"
paper = true

[symbols]
stocks = ["AAPL", "MSFT"]

[runtime]
restart_budget = 3
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
