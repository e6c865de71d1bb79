"""The compiled stream core: build it with mypyc, and choose which core runs.

``build()`` compiles :data:`COMPILED_MODULES` with mypyc into extension modules
next to their sources (``pipeline/core/<name>.<EXT_SUFFIX>``, each a small shim
into one shared library ``pipeline/core/_native__mypyc.<EXT_SUFFIX>``) and
writes a manifest ``pipeline/core/_native.json`` with the sha256 of every
compiled source. The interpreted sources stay the reference: a machine without a
C compiler runs them, with the same outputs.

CPython's path finder loads ``processor.<EXT_SUFFIX>`` before ``processor.py``,
so an extension built from older source would silently run instead of the edited
source. :func:`select_core`, which runs when ``pipeline.core`` is imported, guards
against that: with ``CXSTREAM_CORE=auto`` (the default) a stale build is set
aside with one warning, ``interpreted`` always loads the sources, and
``compiled`` refuses to import anything but an up-to-date build.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType

from pipeline.errors import CxstreamError

#: The modules mypyc compiles (the one list; the Makefile rebuilds on any
#: ``pipeline/core/*.py`` change and ``build()`` skips the work when these
#: sources are unchanged). records.py stays interpreted: its frozen records are
#: built through slot descriptors, and the bench modules are not per-event code;
#: logic.py only states the customer state machine's protocol (types, no code).
COMPILED_MODULES: tuple[str, ...] = (
    "calendar",
    "contact",
    "customer",
    "dedup",
    "journey",
    "needs",
    "pairing",
    "partitioning",
    "processor",
    "retraction",
    "rules",
    "sessions",
    "sla",
    "sla_clock",
    "sla_policy",
    "state_codec",
    "switches",
    "timed_work",
)
PACKAGE = "pipeline.core"
#: mypyc names the shared library ``<group>__mypyc``: ``pipeline.core._native``
#: puts it inside ``pipeline/core``, beside the modules and the manifest.
GROUP_NAME = f"{PACKAGE}._native"
OPT_LEVEL = "3"

CORE_DIR = Path(__file__).resolve().parents[1] / "core"
MANIFEST_NAME = "_native.json"
ENV_VAR = "CXSTREAM_CORE"
MODES = ("auto", "interpreted", "compiled")

COMPILED = "compiled"
STALE = "stale"
INTERPRETED = "interpreted"

BUILD_HINT = "run `make native` (or `cxstream native build`)"

log = logging.getLogger(__name__)


class NativeBuildError(CxstreamError):
    """mypyc or the C compiler could not build the compiled core."""


def _ext_suffix() -> str:
    return importlib.machinery.EXTENSION_SUFFIXES[0]


def _shared_lib_stem() -> str:
    return GROUP_NAME.rsplit(".", 1)[1] + "__mypyc"


def _sources(core_dir: Path) -> dict[str, Path]:
    return {f"{PACKAGE}.{name}": core_dir / f"{name}.py" for name in COMPILED_MODULES}


def _source_hashes(core_dir: Path) -> dict[str, str]:
    return {
        module: hashlib.sha256(path.read_bytes()).hexdigest()
        for module, path in _sources(core_dir).items()
    }


def _expected_extensions(core_dir: Path) -> list[Path]:
    """The files a build for this interpreter writes: one shim per module and the library."""
    stems = [*COMPILED_MODULES, _shared_lib_stem()]
    return [core_dir / f"{stem}{_ext_suffix()}" for stem in stems]


def extension_files(core_dir: Path = CORE_DIR) -> list[Path]:
    """Extension files present that this interpreter would load for a compiled-list module.

    Every suffix the path finder accepts counts (``.cpython-311-...so``, ``.abi3.so``,
    ``.so``): any of them would shadow the source.
    """
    stems = [*COMPILED_MODULES, _shared_lib_stem()]
    return [
        core_dir / f"{stem}{suffix}"
        for stem in stems
        for suffix in importlib.machinery.EXTENSION_SUFFIXES
        if (core_dir / f"{stem}{suffix}").exists()
    ]


def read_manifest(core_dir: Path = CORE_DIR) -> dict | None:
    try:
        manifest = json.loads((core_dir / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def write_manifest(core_dir: Path = CORE_DIR, *, mypy_version: str) -> dict:
    """Record what the extension files in ``core_dir`` were built from."""
    manifest = {
        "mypy": mypy_version,
        "opt_level": OPT_LEVEL,
        "ext_suffix": _ext_suffix(),
        "shared_lib": f"{_shared_lib_stem()}{_ext_suffix()}",
        "sources_sha256": _source_hashes(core_dir),
    }
    (core_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def check(core_dir: Path = CORE_DIR) -> tuple[str, list[str]]:
    """``(status, reasons)``; the reasons say why a build is stale."""
    present = extension_files(core_dir)
    if not present:
        return INTERPRETED, []
    manifest = read_manifest(core_dir)
    if manifest is None:
        return STALE, [f"no readable {MANIFEST_NAME} beside the extension files"]
    reasons = [
        f"missing {path.name}" for path in _expected_extensions(core_dir) if not path.exists()
    ]
    built = manifest.get("sources_sha256")
    built = built if isinstance(built, dict) else {}
    for module, digest in _source_hashes(core_dir).items():
        if module not in built:
            reasons.append(f"{module} not in the build")
        elif built[module] != digest:
            reasons.append(f"{module} changed since the build")
    unlisted = sorted(built.keys() - _sources(core_dir).keys())
    reasons += [f"{module} built but no longer listed" for module in unlisted]
    return (STALE, reasons) if reasons else (COMPILED, [])


def describe(state: str) -> str:
    """The compiled core's state in words: ``not built`` rather than ``interpreted``."""
    return "not built" if state == INTERPRETED else state


def status(core_dir: Path = CORE_DIR) -> str:
    """``compiled`` (an up-to-date build), ``stale`` or ``interpreted`` (nothing built)."""
    return check(core_dir)[0]


def clean(core_dir: Path = CORE_DIR) -> list[Path]:
    """Remove the extension files, the shared library, the manifest and the C build dir."""
    removed = extension_files(core_dir)
    manifest = core_dir / MANIFEST_NAME
    if manifest.exists():
        removed.append(manifest)
    for path in removed:
        path.unlink()
    build_dir = core_dir.parents[1] / "build" / "native"
    if build_dir.is_dir():
        shutil.rmtree(build_dir)
        removed.append(build_dir)
    return removed


def build(core_dir: Path = CORE_DIR, *, force: bool = False) -> str:
    """Compile :data:`COMPILED_MODULES` in place; return a one-line summary.

    Skips the compile when the build is up to date for the installed mypy (then
    only the manifest's mtime is refreshed, so make's file target is satisfied).
    Raises :class:`NativeBuildError` when mypy is missing or mypyc or the C
    compiler fails. The previous build is unlinked first: a failed build leaves
    the interpreted core, never a stale one, and a running process that has the
    old extensions mapped keeps them intact (copying over them in place would not).
    """
    try:
        from mypy.version import __version__ as mypy_version
    except ImportError as exc:
        raise NativeBuildError("mypy is not installed: pip install '.[native]'") from exc
    manifest = read_manifest(core_dir)
    if (
        not force
        and status(core_dir) == COMPILED
        and manifest is not None
        and (manifest.get("mypy"), manifest.get("opt_level")) == (mypy_version, OPT_LEVEL)
    ):
        os.utime(core_dir / MANIFEST_NAME)
        return f"native build up-to-date modules={len(COMPILED_MODULES)} mypy={mypy_version}"

    clean(core_dir)
    root = core_dir.parents[1]
    started = time.perf_counter()
    with contextlib.chdir(root):
        _compile([str(path.relative_to(root)) for path in _sources(core_dir).values()])
    missing = [path.name for path in _expected_extensions(core_dir) if not path.exists()]
    if missing:
        raise NativeBuildError(f"the build wrote no {', '.join(missing)}")
    write_manifest(core_dir, mypy_version=mypy_version)
    return (
        f"native build done modules={len(COMPILED_MODULES)} mypy={mypy_version} "
        f"opt_level={OPT_LEVEL} seconds={time.perf_counter() - started:.1f}"
    )


def _compile(paths: list[str]) -> None:
    """mypyc + setuptools' build_ext --inplace, run from the repository root.

    The Distribution is built here rather than from pyproject.toml: the
    project's metadata is not needed to compile, and older setuptools reject
    its SPDX ``license`` string. C sources and objects go under build/native.
    """
    # setuptools first: mypyc builds setuptools Extensions only when it is imported.
    import setuptools
    from mypyc.build import mypycify

    try:
        extensions = mypycify(
            paths, opt_level=OPT_LEVEL, group_name=GROUP_NAME, target_dir="build/native"
        )
        dist = setuptools.Distribution({"name": "cxstream-core-native", "ext_modules": extensions})
        build_ext = dist.get_command_obj("build_ext")
        build_ext.inplace = True
        build_ext.build_temp = "build/native/temp"
        build_ext.parallel = os.cpu_count() or 1
        dist.run_command("build_ext")
    except SystemExit as exc:  # mypyc reports type errors by exiting
        raise NativeBuildError(f"mypyc failed: {exc.code}") from exc
    except Exception as exc:  # the C compiler or linker (distutils' own error types)
        raise NativeBuildError(f"compiling the core failed: {exc}") from exc


class _SourceFinder(importlib.abc.MetaPathFinder):
    """Loads the compiled-list modules from their ``.py`` files, ahead of any extension."""

    def __init__(self, sources: Mapping[str, Path]) -> None:
        self.sources = dict(sources)

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        source = self.sources.get(fullname)
        if source is None:
            return None
        return importlib.util.spec_from_file_location(fullname, source)


def _load_sources(core_dir: Path) -> None:
    if not any(isinstance(finder, _SourceFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _SourceFinder(_sources(core_dir)))


def select_core(environ: Mapping[str, str] | None = None, core_dir: Path = CORE_DIR) -> None:
    """Decide, before any core module is imported, whether extensions may load.

    Runs from ``pipeline/core/__init__.py``. Raises ImportError for an unknown
    mode, or for ``compiled`` without an up-to-date build.
    """
    env = os.environ if environ is None else environ
    mode = env.get(ENV_VAR, "auto").strip().lower() or "auto"
    if mode not in MODES:
        raise ImportError(f"{ENV_VAR}={mode!r}: expected one of {', '.join(MODES)}")
    if mode == INTERPRETED:
        _load_sources(core_dir)
        return
    state, reasons = check(core_dir)
    if mode == COMPILED and state != COMPILED:
        detail = f" ({'; '.join(reasons)})" if reasons else ""
        raise ImportError(
            f"{ENV_VAR}=compiled but the compiled core is {describe(state)}{detail}: {BUILD_HINT}"
        )
    if state == STALE:
        log.warning(
            "compiled core is stale: running interpreted; run `make native` (%s)",
            "; ".join(reasons),
        )
        _load_sources(core_dir)


def core_mode() -> str:
    """``compiled`` or ``interpreted``: what this process actually loaded (imports the core)."""
    modules = [importlib.import_module(module) for module in _sources(CORE_DIR)]
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    compiled = all((module.__file__ or "").endswith(suffixes) for module in modules)
    return COMPILED if compiled else INTERPRETED


def native_command(action: str, *, force: bool = False) -> int:
    """``cxstream native build|status|clean``."""
    if action == "build":
        print(build(force=force))
        print(f"native status={status()}")
    elif action == "status":
        state, reasons = check()
        line = f"native status={state} modules={len(COMPILED_MODULES)}"
        manifest = read_manifest()
        if state == COMPILED and manifest is not None:
            line += f" mypy={manifest.get('mypy')} opt_level={manifest.get('opt_level')}"
        print(line)
        for reason in reasons:
            print(f"native stale: {reason}")
    elif action == "clean":
        removed = clean()
        print(f"native clean removed={len(removed)}")
    else:
        raise ValueError(f"unknown native action {action!r}")
    return 0
