"""The units in ``systemd/`` are what the operator's guide says they are.

- ``systemd-analyze verify`` prints nothing for each (it exits 0 even on an unknown key or an
  unparsable value, so any output fails), run in a fake root that holds the stock units and a
  stub for the ``ExecStart=`` binary (a template is verified as an instance, ``tickd@paper``);
- ``systemd-analyze security --offline=yes`` rates each at an overall exposure of at most 1.2;
- the credentials they load are exactly the secrets the daemon reads
  (``tickd.daemon.config.SECRETS``), by names searched in the credential store, so that a key a
  configuration does not use may be absent without failing the start;
- the exit statuses a restart cannot fix are the daemon's own;
- the template differs from the single unit only where it names the instance;
- the example configuration loads.

Only the ``systemd-analyze`` checks need the tool; they skip (saying so) where it is missing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tickd.daemon.cli import EX_UNAVAILABLE, EX_USAGE
from tickd.daemon.config import EX_CONFIG, SECRETS, load

SYSTEMD = Path(__file__).resolve().parents[2] / "systemd"
UNIT_FILES = sorted(path.name for path in SYSTEMD.glob("*.service"))
MAX_EXPOSURE = 1.2
STOCK_UNITS = Path("/lib/systemd/system")
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")


def _instance(unit_file: str) -> str:
    """The unit name to check: a template as an instance (``tickd@.service`` -> ``tickd@paper``)."""
    return unit_file.replace("@.", "@paper.")


def _settings(unit_file: str) -> list[tuple[str, str, str]]:
    """(section, key, value) for every assignment, in order (keys may repeat)."""
    settings, section = [], ""
    for raw in (SYSTEMD / unit_file).read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, _, value = line.partition("=")
        settings.append((section, key.strip(), value.strip()))
    return settings


def _values(unit_file: str, key: str, section: str = "Service") -> list[str]:
    return [v for s, k, v in _settings(unit_file) if s == section and k == key]


def _analyze(*args: str) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    env = {**os.environ, "SYSTEMD_PAGER": "cat", "SYSTEMD_COLORS": "0", "LC_ALL": "C.UTF-8"}
    return subprocess.run(
        [ANALYZE, *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fake root: the stock units (else "Unit sysinit.target not found"), every unit here in
    /etc/systemd/system, and an executable stub at each ``ExecStart=`` path (verify checks it)."""
    if not STOCK_UNITS.is_dir():
        pytest.skip(f"no stock units in {STOCK_UNITS} to verify against")
    root = tmp_path_factory.mktemp("root")
    shutil.copytree(STOCK_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    for unit_file in UNIT_FILES:
        shutil.copy(SYSTEMD / unit_file, root / "etc/systemd/system" / unit_file)
        for command in _values(unit_file, "ExecStart"):
            binary = root / command.lstrip("-@:+!").split()[0].lstrip("/")
            binary.parent.mkdir(parents=True, exist_ok=True)
            binary.write_text("#!/bin/sh\n")
            binary.chmod(0o755)
    yield root


def test_the_units_are_the_single_one_and_the_template() -> None:
    assert UNIT_FILES == ["tickd.service", "tickd@.service"]


def test_the_template_is_the_single_unit_with_the_instance_in_its_names() -> None:
    """Keeps the two in step: the same settings in the same order, and only values naming the
    instance (``%i``) differ."""
    single, template = _settings("tickd.service"), _settings("tickd@.service")
    assert [(s, k) for s, k, _ in template] == [(s, k) for s, k, _ in single]
    differ = [(k, a, b) for (_, k, a), (_, _, b) in zip(single, template, strict=True) if a != b]
    assert differ and all("%i" in b for _, _, b in differ), differ


@needs_analyze
@pytest.mark.parametrize("unit_file", UNIT_FILES)
def test_verify_prints_nothing(root: Path, unit_file: str) -> None:
    result = _analyze("verify", f"--root={root}", _instance(unit_file))
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@needs_analyze
def test_verify_is_not_silent_about_a_mistake(root: Path, tmp_path: Path) -> None:
    """The check above can fail: a misspelt key makes verify talk (while still exiting 0)."""
    broken = (SYSTEMD / "tickd.service").read_text(encoding="utf-8")
    broken = broken.replace("\nProtectHome=yes\n", "\nProtectHomee=yes\n")
    path = root / "etc/systemd/system/tickd-broken.service"
    path.write_text(broken, encoding="utf-8")
    try:
        result = _analyze("verify", f"--root={root}", "tickd-broken.service")
    finally:
        path.unlink()
    assert "ProtectHomee" in result.stdout + result.stderr


@needs_analyze
@pytest.mark.parametrize("unit_file", UNIT_FILES)
def test_security_exposure_is_at_most_1_2(root: Path, unit_file: str) -> None:
    unit = _instance(unit_file)
    result = _analyze("security", "--offline=yes", f"--root={root}", unit)
    found = re.search(rf"Overall exposure level for {re.escape(unit)}: (\d+\.\d+)", result.stdout)
    assert found, result.stdout + result.stderr
    assert float(found.group(1)) <= MAX_EXPOSURE, result.stdout


@pytest.mark.parametrize("unit_file", UNIT_FILES)
def test_the_credentials_are_the_daemons_secrets_from_the_store(unit_file: str) -> None:
    """``$CREDENTIALS_DIRECTORY/<section>.<key>`` is what the daemon reads; each comes from
    /etc/credstore/tickd.<id> (tickd-<instance>.<id> for the template) by name, not by an
    absolute path: a name found nowhere is skipped, a missing absolute path fails the start."""
    prefix = "tickd-%i" if "@" in unit_file else "tickd"
    loaded = dict(value.split(":", 1) for value in _values(unit_file, "LoadCredential"))
    assert sorted(loaded) == sorted(f"{section}.{key}" for section, key in SECRETS)
    assert loaded == {name: f"{prefix}.{name}" for name in loaded}
    environment = " ".join(_values(unit_file, "Environment"))  # never the keys themselves
    assert not any(variable in environment for variable in SECRETS.values())


@pytest.mark.parametrize("unit_file", UNIT_FILES)
def test_the_unit_runs_the_daemon_as_the_guide_says(unit_file: str) -> None:
    instance = "%i" if "@" in unit_file else ""
    where = f"tickd/{instance}".rstrip("/")
    config = f"%E/tickd/{instance or 'tickd'}.toml"
    assert _values(unit_file, "ExecStart") == [f"/opt/tickd/venv/bin/tickd run --config {config}"]
    assert _values(unit_file, "Type") == ["notify"]
    assert _values(unit_file, "StateDirectory") == [where]
    assert _values(unit_file, "CacheDirectory") == [where]
    assert f"NUMBA_CACHE_DIR=%C/{where}/numba" in _values(unit_file, "Environment")
    # numba's JIT needs writable+executable memory: `import numba` fails under =yes.
    assert _values(unit_file, "MemoryDenyWriteExecute") == ["no"]
    # A restart cannot fix a bad configuration or keys a feed refused: the daemon's statuses.
    prevented = {int(s) for v in _values(unit_file, "RestartPreventExitStatus") for s in v.split()}
    assert prevented == {EX_USAGE, EX_UNAVAILABLE, EX_CONFIG}
    assert _values(unit_file, "StartLimitBurst", section="Unit")


def test_the_example_config_loads() -> None:
    config = load(SYSTEMD / "tickd.toml", environ={})
    assert config.alpaca.paper and not config.broker.live
    assert len(config.strategies) == 1
    assert config.record.enabled
    assert config.log.format == "json"
    assert config.tracing.exporter == "file"
    assert config.state_dir == ""  # $STATE_DIRECTORY: the unit's StateDirectory=
