"""Which stream core runs: the mypyc-compiled modules or their sources.

The compiled core is built by :mod:`pipeline.tools.native` (``cxstream native
build``) into extension modules next to the sources of ``pipeline/core``, with a
manifest ``pipeline/core/_native.json`` of the sources they were built from.
CPython's path finder loads ``processor.<EXT_SUFFIX>`` before ``processor.py``,
so an extension built from older source would silently run instead of the
edited source. :func:`select_core`, which runs when ``pipeline.core`` is
imported, guards against that: with ``CXSTREAM_CORE=auto`` (the default) a stale
build is set aside with one warning, ``interpreted`` always loads the sources,
and ``compiled`` refuses to import anything but an up-to-date build.

It sits beside the domain core, not inside it (the core is what gets compiled)
and not among the tools (the core must not depend on them).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType

#: The modules mypyc compiles (the one list; the Makefile rebuilds on any
#: ``pipeline/core/*.py`` change and ``build()`` skips the work when these
#: sources are unchanged). records.py stays interpreted: its frozen records are
#: built through slot descriptors, and the bench modules are not per-event code;
#: logic.py only states the customer state machine's protocol (types, no code).
COMPILED_MODULES: tuple[str, ...] = (
    "avro_binary",
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
    "sla_state",
    "state_codec",
    "switches",
    "timed_work",
)
PACKAGE = "pipeline.core"
#: mypyc names the shared library ``<group>__mypyc``: ``pipeline.core._native``
#: puts it inside ``pipeline/core``, beside the modules and the manifest.
GROUP_NAME = f"{PACKAGE}._native"
OPT_LEVEL = "3"

CORE_DIR = Path(__file__).resolve().parent / "core"
MANIFEST_NAME = "_native.json"
ENV_VAR = "CXSTREAM_CORE"
MODES = ("auto", "interpreted", "compiled")

COMPILED = "compiled"
STALE = "stale"
INTERPRETED = "interpreted"

BUILD_HINT = "run `make native` (or `cxstream native build`)"

log = logging.getLogger(__name__)


def ext_suffix() -> str:
    return importlib.machinery.EXTENSION_SUFFIXES[0]


def shared_lib_stem() -> str:
    return GROUP_NAME.rsplit(".", 1)[1] + "__mypyc"


def sources(core_dir: Path) -> dict[str, Path]:
    return {f"{PACKAGE}.{name}": core_dir / f"{name}.py" for name in COMPILED_MODULES}


def source_hashes(core_dir: Path) -> dict[str, str]:
    return {
        module: hashlib.sha256(path.read_bytes()).hexdigest()
        for module, path in sources(core_dir).items()
    }


def expected_extensions(core_dir: Path) -> list[Path]:
    """The files a build for this interpreter writes: one shim per module and the library."""
    stems = [*COMPILED_MODULES, shared_lib_stem()]
    return [core_dir / f"{stem}{ext_suffix()}" for stem in stems]


def extension_files(core_dir: Path = CORE_DIR) -> list[Path]:
    """Extension files present that this interpreter would load for a compiled-list module.

    Every suffix the path finder accepts counts (``.cpython-311-...so``, ``.abi3.so``,
    ``.so``): any of them would shadow the source.
    """
    stems = [*COMPILED_MODULES, shared_lib_stem()]
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


def check(core_dir: Path = CORE_DIR) -> tuple[str, list[str]]:
    """``(status, reasons)``; the reasons say why a build is stale."""
    present = extension_files(core_dir)
    if not present:
        return INTERPRETED, []
    manifest = read_manifest(core_dir)
    if manifest is None:
        return STALE, [f"no readable {MANIFEST_NAME} beside the extension files"]
    reasons = [
        f"missing {path.name}" for path in expected_extensions(core_dir) if not path.exists()
    ]
    built = manifest.get("sources_sha256")
    built = built if isinstance(built, dict) else {}
    for module, digest in source_hashes(core_dir).items():
        if module not in built:
            reasons.append(f"{module} not in the build")
        elif built[module] != digest:
            reasons.append(f"{module} changed since the build")
    unlisted = sorted(built.keys() - sources(core_dir).keys())
    reasons += [f"{module} built but no longer listed" for module in unlisted]
    return (STALE, reasons) if reasons else (COMPILED, [])


def describe(state: str) -> str:
    """The compiled core's state in words: ``not built`` rather than ``interpreted``."""
    return "not built" if state == INTERPRETED else state


def status(core_dir: Path = CORE_DIR) -> str:
    """``compiled`` (an up-to-date build), ``stale`` or ``interpreted`` (nothing built)."""
    return check(core_dir)[0]


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
        sys.meta_path.insert(0, _SourceFinder(sources(core_dir)))


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
    modules = [importlib.import_module(module) for module in sources(CORE_DIR)]
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    compiled = all((module.__file__ or "").endswith(suffixes) for module in modules)
    return COMPILED if compiled else INTERPRETED
