"""The compiled core's build status and the import-time choice of core.

Status and staleness are tested on a temporary copy of the ``pipeline`` package
whose "build" is one file of garbage per extension module: any of them that
CPython tried to load would fail with an invalid-ELF ImportError, so a copy that
imports cleanly proves the sources ran. The test of a real compiled import uses
the repository's own build (``make native``, which ``make test`` runs first).
"""

from __future__ import annotations

import importlib.machinery
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import core_loader
from pipeline.tools import native

REPO = Path(native.__file__).resolve().parents[2]
MODULES = [f"{core_loader.PACKAGE}.{name}" for name in core_loader.COMPILED_MODULES]
EXT_SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]
SHARED_LIB = f"_native__mypyc{EXT_SUFFIX}"

PROBE = f"""
import importlib, json
from pipeline.core import core_mode
files = {{name: importlib.import_module(name).__file__ for name in {MODULES!r}}}
print(json.dumps({{"files": files, "core": core_mode()}}))
"""


@pytest.fixture
def package_copy(tmp_path: Path) -> Path:
    """A copy of the ``pipeline`` package without any build; returns its core dir."""
    shutil.copytree(
        REPO / "pipeline",
        tmp_path / "pipeline",
        ignore=shutil.ignore_patterns("__pycache__", "*.so", core_loader.MANIFEST_NAME),
    )
    return tmp_path / "pipeline" / "core"


def fake_build(core_dir: Path) -> None:
    """Unloadable extension files for every compiled module plus a matching manifest."""
    for stem in [*core_loader.COMPILED_MODULES, "_native__mypyc"]:
        (core_dir / f"{stem}{EXT_SUFFIX}").write_bytes(b"not an ELF file")
    native.write_manifest(core_dir, mypy_version="test")


def edit(path: Path) -> None:
    path.write_text(path.read_text() + "\n# edited after the build\n")


def probe(root: Path, mode: str) -> subprocess.CompletedProcess[str]:
    """Import every compiled-list module from the package under ``root`` in a fresh process."""
    env = {**os.environ, core_loader.ENV_VAR: mode, "PYTHONPATH": str(root)}
    return subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_status_is_interpreted_when_nothing_is_built(package_copy: Path) -> None:
    assert core_loader.check(package_copy) == ("interpreted", [])


def test_status_is_compiled_when_the_manifest_matches_every_source(package_copy: Path) -> None:
    fake_build(package_copy)

    assert core_loader.check(package_copy) == ("compiled", [])


def test_status_turns_stale_when_a_compiled_source_changes_after_the_build(
    package_copy: Path,
) -> None:
    fake_build(package_copy)
    edit(package_copy / "sla.py")

    assert core_loader.check(package_copy) == (
        "stale",
        ["pipeline.core.sla changed since the build"],
    )


def test_a_change_to_a_module_outside_the_compiled_list_keeps_the_build_current(
    package_copy: Path,
) -> None:
    fake_build(package_copy)
    edit(package_copy / "records.py")

    assert core_loader.status(package_copy) == "compiled"


def test_status_is_stale_when_extension_files_exist_without_a_manifest(
    package_copy: Path,
) -> None:
    fake_build(package_copy)
    (package_copy / core_loader.MANIFEST_NAME).unlink()

    assert core_loader.check(package_copy) == (
        "stale",
        ["no readable _native.json beside the extension files"],
    )


def test_status_is_stale_when_the_shared_library_is_missing(package_copy: Path) -> None:
    fake_build(package_copy)
    (package_copy / SHARED_LIB).unlink()

    assert core_loader.check(package_copy) == ("stale", [f"missing {SHARED_LIB}"])


def test_clean_removes_the_extensions_the_shared_library_and_the_manifest(
    package_copy: Path,
) -> None:
    fake_build(package_copy)

    removed = native.clean(package_copy)

    expected = {f"{name}{EXT_SUFFIX}" for name in core_loader.COMPILED_MODULES}
    assert {path.name for path in removed} == expected | {SHARED_LIB, "_native.json"}
    assert core_loader.status(package_copy) == "interpreted"
    assert (package_copy / "processor.py").exists()


def test_an_unknown_core_mode_is_an_import_error() -> None:
    with pytest.raises(ImportError, match="CXSTREAM_CORE='fast': expected one of"):
        core_loader.select_core({core_loader.ENV_VAR: "fast"})


def test_interpreted_mode_loads_every_core_module_from_its_py_file() -> None:
    completed = probe(REPO, "interpreted")

    assert completed.returncode == 0, completed.stderr
    loaded = json.loads(completed.stdout)
    expected = {
        name: str(REPO / "pipeline" / "core" / f"{name.split('.')[-1]}.py") for name in MODULES
    }
    assert loaded == {"files": expected, "core": "interpreted"}


def test_auto_mode_runs_the_sources_with_one_warning_when_the_build_is_stale(
    package_copy: Path,
) -> None:
    fake_build(package_copy)
    edit(package_copy / "sessions.py")

    completed = probe(package_copy.parents[1], "auto")

    assert completed.returncode == 0, completed.stderr
    loaded = json.loads(completed.stdout)
    assert loaded["core"] == "interpreted"
    assert all(Path(path).parent == package_copy for path in loaded["files"].values())
    assert completed.stderr.count("compiled core is stale: running interpreted") == 1
    assert "pipeline.core.sessions changed since the build" in completed.stderr


def test_compiled_mode_refuses_a_stale_build_and_says_to_run_make_native(
    package_copy: Path,
) -> None:
    fake_build(package_copy)
    edit(package_copy / "processor.py")

    completed = probe(package_copy.parents[1], "compiled")

    assert completed.returncode == 1
    assert "ImportError: CXSTREAM_CORE=compiled but the compiled core is stale" in completed.stderr
    assert "run `make native`" in completed.stderr


def test_compiled_mode_refuses_when_nothing_is_built(package_copy: Path) -> None:
    completed = probe(package_copy.parents[1], "compiled")

    assert completed.returncode == 1
    assert "the compiled core is not built: run `make native`" in completed.stderr


def test_compiled_mode_loads_extension_modules_from_the_build() -> None:
    """Needs `make native`; CI (``CI`` set) runs it first, so there a missing build fails."""
    state, reasons = core_loader.check()
    if state != "compiled" and not os.environ.get("CI"):
        pytest.skip(f"compiled core is {state} {reasons}: run `make native`")

    completed = probe(REPO, "compiled")

    assert completed.returncode == 0, completed.stderr
    loaded = json.loads(completed.stdout)
    # Only the file names: mypyc sets ``__file__`` of a module first imported by
    # another compiled module to a path with the package directories doubled.
    names = {name: Path(path).name for name, path in loaded["files"].items()}
    assert names == {name: f"{name.split('.')[-1]}{EXT_SUFFIX}" for name in MODULES}
    assert loaded["core"] == "compiled"
