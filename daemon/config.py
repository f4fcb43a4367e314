"""The daemon's configuration: a TOML file, environment overrides, secrets from outside the file.

Sources, later ones winning:

1. the TOML file (``tickd run --config FILE``);
2. environment variables ``TICKD_<SECTION>__<KEY>`` (upper case, a double underscore between
   section and key, e.g. ``TICKD_ALPACA__FEED=sip``, ``TICKD_SYMBOLS__STOCKS='["AAPL","MSFT"]'``);
   the value is read as a TOML value when it parses as one (numbers, booleans, arrays), else as
   text;
3. secrets (``alpaca.key_id``, ``alpaca.secret_key``, ``finnhub.token``, ``newsapi.key``) from the
   service manager's credentials directory (``$CREDENTIALS_DIRECTORY/<section>.<key>``, what
   systemd's ``LoadCredential=`` provides) or from the variables ``APCA_API_KEY_ID``,
   ``APCA_API_SECRET_KEY``, ``FINNHUB_TOKEN`` and ``NEWSAPI_KEY``.

Everything decodes into frozen msgspec structs that refuse unknown keys. Any problem raises
:class:`ConfigError` naming the key's path and what was expected; the command line turns it into
exit status 78 (``EX_CONFIG``). Secrets are never printed: :func:`effective` masks them.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import Meta, Struct

__all__ = [
    "EX_CONFIG",
    "SECRETS",
    "AlpacaConfig",
    "BrokerConfig",
    "Config",
    "ConfigError",
    "FinnhubConfig",
    "LogConfig",
    "MetricsConfig",
    "NewsApiConfig",
    "RiskConfig",
    "RuntimeConfig",
    "StrategyConfig",
    "SymbolsConfig",
    "TracingConfig",
    "effective",
    "load",
    "missing_secrets",
    "require_secrets",
    "state_dir",
]

EX_CONFIG: Final = 78  # sysexits.h: configuration error
ENV_PREFIX: Final = "TICKD_"
_MAX_MESSAGE: Final = 400
# (section, key) -> the conventional environment variable that may hold it.
SECRETS: Final[dict[tuple[str, str], str]] = {
    ("alpaca", "key_id"): "APCA_API_KEY_ID",
    ("alpaca", "secret_key"): "APCA_API_SECRET_KEY",
    ("finnhub", "token"): "FINNHUB_TOKEN",
    ("newsapi", "key"): "NEWSAPI_KEY",
}


Positive = Annotated[float, Meta(gt=0)]
NonNegative = Annotated[float, Meta(ge=0)]
StockChannel = Literal[
    "trades", "quotes", "bars", "updated_bars", "daily_bars", "statuses", "lulds", "imbalances"
]
LogLevel = Literal["debug", "info", "warning", "error"]
CryptoChannel = Literal["trades", "quotes", "bars", "updated_bars", "daily_bars", "orderbooks"]


class AlpacaConfig(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    key_id: str = ""
    secret_key: str = ""
    paper: bool = True  # orders go to the paper account unless this is false
    feed: Literal["iex", "sip", "delayed_sip", "test"] = "iex"
    stream_url: str = "wss://stream.data.alpaca.markets"
    encoding: Literal["msgpack", "json"] = "msgpack"
    stock_channels: tuple[StockChannel, ...] = ("bars",)  # subscribed for symbols.stocks
    crypto_channels: tuple[CryptoChannel, ...] = ("bars",)  # subscribed for symbols.crypto
    news: bool = False  # also stream /v1beta1/news for the stock symbols
    # No data for this long while the market is open: reconnect (0: never; news is exempt).
    silence_limit: NonNegative = 300.0
    trade_updates: bool = False  # stream order updates (the paper or live account, per paper)
    trading_stream_url: str = ""  # "" : wss://paper-api.alpaca.markets/stream when paper, else live
    data_url: str = "https://data.alpaca.markets"  # REST history: the bars a gap missed
    backfill: bool = True  # fetch those bars (bar subscriptions; iex and sip feeds)
    # At start, feed the bank each symbol's last N minute bars from the REST history (0: none),
    # so strategies trade from the first live bar. Never traded on.
    warmup_bars: Annotated[int, Meta(ge=0, le=10_000)] = 0


class SymbolsConfig(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    stocks: tuple[str, ...] = ()
    crypto: tuple[str, ...] = ()


class FinnhubConfig(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    enabled: bool = False
    token: str = ""
    # Streamed trades, in Finnhub's symbol forms (AAPL, BINANCE:BTCUSDT); () : symbols.stocks.
    symbols: tuple[str, ...] = ()
    trades: bool = True  # stream trades (one websocket per token)
    company_news: bool = True  # poll company news for symbols.stocks
    poll_interval: Positive = 300.0  # seconds between two rounds of company news
    stream_url: str = "wss://ws.finnhub.io"
    rest_url: str = "https://finnhub.io/api/v1"


class NewsApiConfig(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    enabled: bool = False
    key: str = ""
    terms: tuple[str, ...] = ()  # OR-ed into the query; () : symbols.stocks
    poll_interval: Positive = 900.0  # the free plan allows 100 requests a day
    url: str = "https://newsapi.org/v2"


class RuntimeConfig(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    restart_budget: Annotated[int, Meta(ge=0)] = 5  # crashes within restart_window, then exit
    restart_window: Positive = 60.0
    restart_backoff: Positive = 0.1
    restart_backoff_max: Positive = 10.0
    reconnect_initial: Positive = 1.0
    reconnect_cap: Positive = 60.0
    mailbox_capacity: Annotated[int, Meta(ge=1)] = 10_000
    # What feeds the indicator bank (and so the strategies): minute bars, or every trade.
    bank_input: Literal["bars", "trades"] = "bars"


RiskStateName = Literal["active", "reducing", "halted"]


class RiskConfig(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Limits every order intent is checked against (quantities in shares or coins, money in
    the account's currency)."""

    state: RiskStateName = "active"  # the state at start
    max_position: Positive = 100.0  # |held + working| per symbol after the order
    max_order_notional: Positive = 10_000.0  # qty x (limit price, or the last price)
    max_gross_exposure: Positive = 50_000.0  # sum of |held + working| x last price
    max_orders_per_minute: Annotated[int, Meta(ge=1)] = 30
    max_daily_loss: Positive = 1_000.0  # realised + unrealised since the day began
    on_daily_loss: Literal["reducing", "halted"] = "reducing"  # the state a breach switches to
    allowed_symbols: tuple[str, ...] = ()  # () : symbols.stocks and symbols.crypto
    trading_hours: Literal["regular", "always"] = "regular"  # stocks; crypto trades always


class StrategyConfig(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    kind: str  # ema_cross, rsi_reversion, news_momentum
    name: str = ""  # "" : the kind (names must be unique: they go into client order ids)
    symbols: tuple[str, ...] = ()  # () : symbols.stocks and symbols.crypto
    params: dict[str, Any] = {}  # the strategy's own parameters (see its module)


class BrokerConfig(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    kind: Literal["sim", "alpaca"] = "sim"
    live: bool = False  # orders to the live account: also needs alpaca.paper = false
    trading_url: str = ""  # "" : Alpaca's paper or live REST endpoint (per alpaca.paper)
    timeout: Positive = 10.0  # per REST call; a timeout is resolved by looking the order up
    workers: Annotated[int, Meta(ge=1, le=32)] = 4  # threads for alpaca-py's blocking calls
    rate_per_minute: Annotated[int, Meta(ge=1)] = 200  # Alpaca's REST limit
    fee_per_share: NonNegative = 0.0  # sim: commission per share
    fee_rate: NonNegative = 0.0  # sim: commission as a fraction of notional
    slippage_bps: NonNegative = 1.0  # sim: market orders fill this much worse
    on_stop: Literal["keep", "cancel"] = "keep"  # open orders at a stop (SIGTERM): kept, or
    # cancelled at the venue (a restart reconciles kept ones)
    stop_timeout: Positive = 10.0  # seconds the cancels may take, within systemd's TimeoutStopSec


class RecordConfig(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Recording the feeds' raw frames to tapes while the daemon runs (``tickd replay`` reads
    them back)."""

    enabled: bool = False
    directory: str = ""  # "" : <state_dir>/tapes
    compression: Literal["none", "zstd"] = "zstd"
    max_mb: Positive = 256.0  # a new file past this size ...
    daily: bool = True  # ... or on a new UTC day
    flush_interval: Positive = 0.2  # seconds between writes to disk (what kill -9 can lose)


class LogConfig(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """tickd's own logs and the libraries' (alpaca-py, websockets, urllib3), one pipeline."""

    level: LogLevel = "info"
    format: Literal["auto", "json", "console"] = "auto"  # auto: console on a terminal, else JSON
    libraries: LogLevel = "warning"  # the level for the libraries' stdlib loggers
    summary_interval: NonNegative = 60.0  # seconds between two metrics summary lines (0: none)


class TracingConfig(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Per-event tracing: spans built after the fact for decisions, budget breaches, a sample."""

    exporter: Literal["file", "otlp", "console", "none"] = "file"
    file: str = ""  # "" : <state_dir>/traces.jsonl (what ``tickd trace`` reads)
    max_mb: Positive = 64.0  # the file is rotated to <file>.1 past this size
    otlp_endpoint: str = "http://localhost:4318/v1/traces"
    sample_per_second: NonNegative = 2.0  # events traced though nothing came of them
    latency_budget_ms: Positive = 50.0  # receive -> strategy done; slower events are traced
    service_name: str = "tickd"


class MetricsConfig(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Counters and per-stage latencies through OpenTelemetry metrics (the summary line and the
    service manager's status text read the same numbers)."""

    exporter: Literal["otlp", "console", "none"] = "none"
    otlp_endpoint: str = "http://localhost:4318/v1/metrics"
    interval: Positive = 60.0  # seconds between two exports


class Config(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    state_dir: str = ""  # "" : $STATE_DIRECTORY (systemd's StateDirectory=), else ./state
    alpaca: AlpacaConfig = AlpacaConfig()
    symbols: SymbolsConfig = SymbolsConfig()
    finnhub: FinnhubConfig = FinnhubConfig()
    newsapi: NewsApiConfig = NewsApiConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    risk: RiskConfig = RiskConfig()
    broker: BrokerConfig = BrokerConfig()
    strategies: tuple[StrategyConfig, ...] = ()
    record: RecordConfig = RecordConfig()
    log: LogConfig = LogConfig()
    tracing: TracingConfig = TracingConfig()
    metrics: MetricsConfig = MetricsConfig()


class ConfigError(Exception):
    """The configuration cannot be used: ``path`` is the key at fault (``$.alpaca.feed``)."""

    def __init__(self, message: str, path: str = "") -> None:
        if len(message) > _MAX_MESSAGE:  # it may quote a bad value, which can be megabytes
            message = message[: _MAX_MESSAGE - 3] + "..."
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


def load(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """The configuration from ``path`` (or defaults), then the environment, then secrets."""
    environ = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read the config file: {exc.strerror}", str(path)) from exc
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"not valid TOML: {exc}", str(path)) from exc
        except RecursionError:  # tomllib recurses per level of nesting
            raise ConfigError(
                "not valid TOML: arrays or tables nested too deeply", str(path)
            ) from None
    for name, value in environ.items():
        if name.startswith(ENV_PREFIX) and "__" in name:
            section, _, key = name[len(ENV_PREFIX) :].lower().partition("__")
            raw.setdefault(section, {})
            if not isinstance(raw[section], dict):
                raise ConfigError("is not a table", f"$.{section}")
            raw[section][key] = _env_value(value)
    credentials = environ.get("CREDENTIALS_DIRECTORY")
    for (section, key), variable in SECRETS.items():
        secret = _credential(credentials, f"{section}.{key}") or environ.get(variable)
        if secret is not None and isinstance(raw.setdefault(section, {}), dict):
            raw[section][key] = secret
    try:
        config = msgspec.convert(raw, Config)
    except msgspec.ValidationError as exc:
        message, _, where = str(exc).rpartition(" - at `")
        if not message:  # the top level
            message, where = str(exc), "$"
        raise ConfigError(message, where.rstrip("`")) from exc
    _check_finite(config, "$")
    if config.finnhub.enabled and not (config.finnhub.symbols or config.symbols.stocks):
        raise ConfigError("no symbols to follow: set it or symbols.stocks", "$.finnhub.symbols")
    if config.newsapi.enabled and not (config.newsapi.terms or config.symbols.stocks):
        raise ConfigError("nothing to search for: set it or symbols.stocks", "$.newsapi.terms")
    _check_trading(config)
    runtime = config.runtime
    for low, high in (
        ("reconnect_initial", "reconnect_cap"),
        ("restart_backoff", "restart_backoff_max"),
    ):
        if getattr(runtime, low) > getattr(runtime, high):
            raise ConfigError(f"must not exceed runtime.{high}", f"$.runtime.{low}")
    return config


def _check_finite(section: Struct, where: str) -> None:
    """No ``inf`` (TOML's ``inf``, or ``1e400``): it would make a timeout, an interval or a limit
    mean "never", and msgspec's bounds cannot say "finite"."""
    for name in section.__struct_fields__:
        value = getattr(section, name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"must be a finite number, got {value}", f"{where}.{name}")
        if isinstance(value, Struct):
            _check_finite(value, f"{where}.{name}")


def _check_trading(config: Config) -> None:
    broker = config.broker
    if broker.live != (not config.alpaca.paper):
        raise ConfigError(
            "live trading needs both broker.live = true and alpaca.paper = false",
            "$.broker.live",
        )
    from tickd.strategies.catalog import build  # on use: numba loads only when trading

    names = [s.name or s.kind for s in config.strategies]
    followed = (*config.symbols.stocks, *config.symbols.crypto)
    traded: set[str] = set()
    for i, (strategy, name) in enumerate(zip(config.strategies, names, strict=True)):
        where = f"$.strategies[{i}]"
        if names.index(name) != i:
            raise ConfigError(f"two strategies named {name!r}: give each a name", f"{where}.name")
        symbols = strategy.symbols or followed
        if shared := sorted(set(symbols) & traded):
            raise ConfigError(
                f"{', '.join(shared)} already traded by another strategy (positions are kept per "
                "symbol, so two strategies would size against each other's orders)",
                f"{where}.symbols",
            )
        traded.update(symbols)
        if not symbols:
            raise ConfigError("no symbols: set it or symbols.stocks/crypto", f"{where}.symbols")
        if stray := sorted(set(symbols) - set(followed)):
            raise ConfigError(
                f"{', '.join(stray)} not in symbols.stocks/crypto (the daemon must follow them)",
                f"{where}.symbols",
            )
        try:
            build(strategy.kind, name=name, symbols=symbols, params=strategy.params)
        except ValueError as exc:
            raise ConfigError(str(exc), where) from exc


def state_dir(config: Config, environ: Mapping[str, str] | None = None) -> Path:
    """Where the daemon keeps what must outlive it (the order-id salt, the risk state)."""
    environ = os.environ if environ is None else environ
    given = config.state_dir or environ.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(given or "state")


def require_secrets(config: Config) -> None:
    """The keys every configured feed needs, or a :class:`ConfigError` saying where to put them
    (``tickd run`` checks this; ``check-config`` only shows what is missing)."""
    for section, key in missing_secrets(config):
        variable = SECRETS[section, key]
        raise ConfigError(
            f"not set: give it in ${variable} or $CREDENTIALS_DIRECTORY/{section}.{key}",
            f"$.{section}.{key}",
        )


def missing_secrets(config: Config) -> list[tuple[str, str]]:
    """The (section, key) secrets that the configured feeds need and nobody gave."""
    needed: list[tuple[str, str]] = []
    alpaca = config.alpaca
    trading = config.broker.kind == "alpaca"
    market = config.symbols.stocks or config.symbols.crypto
    if market or alpaca.news or alpaca.trade_updates or trading:
        needed += [("alpaca", "key_id"), ("alpaca", "secret_key")]
    if config.finnhub.enabled:
        needed.append(("finnhub", "token"))
    if config.newsapi.enabled:
        needed.append(("newsapi", "key"))
    return [(s, k) for s, k in needed if not getattr(getattr(config, s), k)]


def _env_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except (tomllib.TOMLDecodeError, RecursionError):  # not a TOML value (or nested too deep)
        return text


def _credential(directory: str | None, name: str) -> str | None:
    if not directory:
        return None
    try:
        return (Path(directory) / name).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read the credential: {exc.strerror}", name) from exc


def effective(config: Config) -> dict[str, Any]:
    """The configuration as plain data with every secret masked (``"***"`` when set)."""
    data: dict[str, Any] = msgspec.to_builtins(config)
    for section, key in SECRETS:
        if data[section][key]:
            data[section][key] = "***"
    return data
