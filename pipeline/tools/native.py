"""The compiled stream core: build it with mypyc, check it, clean it.

``build()`` compiles :data:`COMPILED_MODULES` with mypyc into extension modules
next to their sources (``pipeline/core/<name>.<EXT_SUFFIX>``, each a small shim
into one shared library ``pipeline/core/_native__mypyc.<EXT_SUFFIX>``) and
writes a manifest ``pipeline/core/_native.json`` with the sha256 of every
compiled source. The interpreted sources stay the reference: a machine without a
C compiler runs them, with the same outputs. Which of the two a process runs
is decided by :mod:`pipeline.core_loader` when ``pipeline.core`` is imported.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from pathlib import Path

from pipeline.core_loader import (
    COMPILED,
    COMPILED_MODULES,
    CORE_DIR,
    GROUP_NAME,
    MANIFEST_NAME,
    OPT_LEVEL,
    check,
    expected_extensions,
    ext_suffix,
    extension_files,
    read_manifest,
    shared_lib_stem,
    source_hashes,
    sources,
    status,
)
from pipeline.errors import CxstreamError

log = logging.getLogger(__name__)


class NativeBuildError(CxstreamError):
    """mypyc or the C compiler could not build the compiled core."""


def write_manifest(core_dir: Path = CORE_DIR, *, mypy_version: str) -> dict:
    """Record what the extension files in ``core_dir`` were built from."""
    manifest = {
        "mypy": mypy_version,
        "opt_level": OPT_LEVEL,
        "ext_suffix": ext_suffix(),
        "shared_lib": f"{shared_lib_stem()}{ext_suffix()}",
        "sources_sha256": source_hashes(core_dir),
    }
    (core_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


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
        _compile([str(path.relative_to(root)) for path in sources(core_dir).values()])
    missing = [path.name for path in expected_extensions(core_dir) if not path.exists()]
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
