"""The three root folders install as one package, ``tickd``, and only as that."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("name", ["daemon", "strategies"])
def test_folders_are_not_importable_at_top_level(name: str) -> None:
    # From the repository root the folder is on sys.path; its guard must refuse the import.
    result = run(sys.executable, "-c", f"import {name}")
    assert result.returncode != 0 and "import this package as tickd." in result.stderr


def test_codecs_name_stays_the_standard_library() -> None:
    result = run(sys.executable, "-c", "import codecs; print(codecs.__file__)")
    assert result.returncode == 0 and str(ROOT) not in result.stdout


def test_a_built_wheel_holds_the_package_and_imports(tmp_path: Path) -> None:
    build = run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-w",
        str(tmp_path),
        str(ROOT),
    )
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = tmp_path.glob("tickd-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    sources = {
        f"tickd/{p.relative_to(ROOT).as_posix()}"
        for folder in ("codecs", "strategies", "daemon")
        for p in (ROOT / folder).rglob("*.py")
    }
    assert sources <= names
    top = {"codecs", "daemon", "strategies", "tests", "bench"}
    assert not any(n.split("/")[0] in top for n in names)
    install = run(
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-deps",
        "--no-index",
        "--target",
        str(tmp_path / "site"),
        str(wheel),
    )
    assert install.returncode == 0, install.stderr[-2000:]
    check = run(
        sys.executable,
        "-c",
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "import tickd.codecs.alpaca as m; print(m.__file__)",
        str(tmp_path / "site"),
        cwd=tmp_path,
    )
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip().startswith(str(tmp_path / "site"))
