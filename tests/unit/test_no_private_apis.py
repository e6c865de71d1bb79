"""The runtime touches no private attribute of faust, aiokafka, kafka or prometheus_client.

Issue 14: a grep in CI over agents/ and pipeline/ (tests excluded), with a short
allow-list (.ci/private-api-allowlist.txt) that explains each remaining entry.
Knowing the type of every object statically is out of reach, so the scan is an
AST heuristic that errs on the side of flagging:

* ``x._name`` is flagged when ``x`` is not ``self``/``cls`` and ``_name`` is not
  defined by one of our own classes (a method, a ``self._name =`` assignment, a
  class-level attribute or a ``__slots__`` entry) that does not derive from one
  of those libraries;
* inside a class deriving from one of those libraries, every ``._name`` access
  (``self``, ``super()`` or anything else) and every ``def _name`` override is
  flagged: its private names may be the library's;
* ``from <library>... import _name`` and imports from a library's ``_module``.

A finding is keyed by (file, name), so a second use of an allowed name in the
same file passes, and a new file or a new name fails.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("agents", "pipeline")
ALLOWLIST = ROOT / ".ci" / "private-api-allowlist.txt"
# mode is faust's own service framework (mode-streaming): its privates are faust's.
LIBRARIES = frozenset({"faust", "mode", "aiokafka", "kafka", "prometheus_client"})
# Underscored by their library's design but public, documented API.
PUBLIC_UNDERSCORED = frozenset({"_exit", "_asdict", "_replace", "_fields", "_make"})

Finding = tuple[str, str]  # (path relative to the repository, attribute name)


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__") and name not in PUBLIC_UNDERSCORED


def _library_names(tree: ast.Module) -> dict[str, str]:
    """Local name -> the top-level library it was imported from (for our four only)."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                root = alias.name.split(".")[0]
                if root in LIBRARIES:
                    names[alias.asname or root] = root
        elif isinstance(node, ast.ImportFrom) and node.module:
            root = node.module.split(".")[0]
            if root in LIBRARIES:
                for alias in node.names:
                    names[alias.asname or alias.name] = root
    return names


def _base_root(base: ast.expr) -> str | None:
    while isinstance(base, ast.Attribute):
        base = base.value
    if isinstance(base, ast.Subscript):  # Generic[...] and the like
        return _base_root(base.value)
    return base.id if isinstance(base, ast.Name) else None


class _Module:
    def __init__(self, path: Path, source: str) -> None:
        self.path = path
        self.tree = ast.parse(source, filename=str(path))
        self.library_names = _library_names(self.tree)
        # ``import argparse`` and the like: modules of other libraries, out of scope.
        self.other_modules = {
            alias.asname or alias.name.split(".")[0]
            for node in ast.walk(self.tree)
            if isinstance(node, ast.Import)
            for alias in node.names
            if alias.name.split(".")[0] not in LIBRARIES
        }

    def classes(self) -> Iterator[ast.ClassDef]:
        return (node for node in ast.walk(self.tree) if isinstance(node, ast.ClassDef))


def _derived_classes(modules: list[_Module]) -> set[str]:
    """Names of our classes deriving (through any of our classes) from a library class."""
    derived: set[str] = set()
    changed = True
    while changed:
        changed = False
        for module in modules:
            for cls in module.classes():
                if cls.name in derived:
                    continue
                roots = {_base_root(base) for base in cls.bases}
                if any(r in module.library_names or r in derived for r in roots if r):
                    derived.add(cls.name)
                    changed = True
    return derived


def _own_private_names(modules: list[_Module], derived: set[str]) -> set[str]:
    """Private names our own classes (not the library-derived ones) define."""
    own: set[str] = set()
    for module in modules:
        for cls in module.classes():
            if cls.name in derived:
                continue
            for node in ast.walk(cls):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    own.add(node.name)
                elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                    if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                        own.add(node.attr)
                elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                    own.add(node.target.id)
                elif isinstance(node, ast.Assign):
                    for target in node.targets:
                        if isinstance(target, ast.Name):
                            own.add(target.id)
                            if target.id == "__slots__":
                                own.update(
                                    c.value
                                    for c in ast.walk(node.value)
                                    if isinstance(c, ast.Constant) and isinstance(c.value, str)
                                )
    return {name for name in own if _is_private(name)}


def _findings(module: _Module, rel: str, derived: set[str], own: set[str]) -> set[Finding]:
    found: set[Finding] = set()
    inside_derived: set[int] = set()
    for cls in module.classes():
        if cls.name in derived:
            inside_derived.update(id(node) for node in ast.walk(cls))
            for item in cls.body:
                is_def = isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
                if is_def and _is_private(item.name):
                    found.add((rel, item.name))
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Attribute) and _is_private(node.attr):
            if id(node) in inside_derived:
                found.add((rel, node.attr))
                continue
            base = node.value
            if isinstance(base, ast.Name) and base.id in ("self", "cls", *module.other_modules):
                continue
            if node.attr not in own:
                found.add((rel, node.attr))
        elif isinstance(node, ast.ImportFrom) and node.module:
            parts = node.module.split(".")
            if parts[0] not in LIBRARIES:
                continue
            if any(_is_private(part) for part in parts):
                found.add((rel, node.module))
            found.update((rel, alias.name) for alias in node.names if _is_private(alias.name))
    return found


def scan(sources: dict[str, str]) -> set[Finding]:
    """Findings over ``{relative path: source}``."""
    modules = {rel: _Module(Path(rel), text) for rel, text in sources.items()}
    derived = _derived_classes(list(modules.values()))
    own = _own_private_names(list(modules.values()), derived)
    found: set[Finding] = set()
    for rel, module in modules.items():
        found |= _findings(module, rel, derived, own)
    return found


def runtime_sources() -> dict[str, str]:
    sources: dict[str, str] = {}
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if "tests" in path.relative_to(ROOT).parts:
                continue
            sources[rel] = path.read_text(encoding="utf-8")
    return sources


def read_allowlist(text: str) -> dict[Finding, tuple[str, str]]:
    """``path | name | reason | upstream`` per line; ``#`` starts a comment line."""
    entries: dict[Finding, tuple[str, str]] = {}
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = [field.strip() for field in line.split("|")]
        assert len(fields) == 4, f"allow-list line {line_no}: want path | name | reason | upstream"
        path, name, reason, upstream = fields
        entries[(path, name)] = (reason, upstream)
    return entries


def test_the_runtime_touches_no_private_api_beyond_the_allow_list():
    allowed = read_allowlist(ALLOWLIST.read_text(encoding="utf-8"))
    found = scan(runtime_sources())
    assert sorted(found - set(allowed)) == [], "new private access: fix it or allow-list it"
    assert sorted(set(allowed) - found) == [], "allow-list entries no longer needed: remove them"


def test_every_allow_list_entry_has_a_reason_and_an_upstream_reference():
    allowed = read_allowlist(ALLOWLIST.read_text(encoding="utf-8"))
    assert allowed
    for (path, name), (reason, upstream) in allowed.items():
        assert len(reason.split()) >= 4, f"{path} {name}: the reason is one sentence"
        assert "#" in upstream or upstream.startswith("https://"), f"{path} {name}: {upstream}"


# -- the scan itself, on synthetic sources -------------------------------------------

CLEAN = """
import argparse
import faust
from prometheus_client import Histogram

class Window:
    __slots__ = ("_seen",)
    def __init__(self):
        self._seen = {}
    def _set_oldest(self, at):
        self._oldest = at

def restore(window: Window, other: Window):
    window._set_oldest(other._seen)
    histogram = Histogram("x", "y")
    histogram.observe(1.0)
    os._exit(0)
    argparse._SubParsersAction
"""


def test_private_names_of_our_own_classes_are_not_findings():
    assert scan({"pipeline/clean.py": CLEAN}) == set()


def test_a_new_private_access_on_a_library_object_is_a_finding():
    source = CLEAN + "    histogram._sum.inc(3)\n"
    assert scan({"pipeline/clean.py": source}) == {("pipeline/clean.py", "_sum")}


def test_every_private_access_and_override_inside_a_library_subclass_is_a_finding():
    source = """
from faust.transport.drivers.aiokafka import Consumer

class WorkerConsumer(Consumer):
    async def _commit_offsets(self, offsets):
        self._pending = offsets
        return await super()._commit(offsets)

class Quieter(WorkerConsumer):
    def start(self):
        return self._thread
"""
    assert scan({"agents/c.py": source}) == {
        ("agents/c.py", "_commit_offsets"),
        ("agents/c.py", "_pending"),
        ("agents/c.py", "_commit"),
        ("agents/c.py", "_thread"),
    }


def test_an_override_in_a_library_subclass_does_not_hide_the_same_name_elsewhere():
    sources = {
        "agents/c.py": "import faust\nclass C(faust.Record):\n    def _prepare(self): ...\n",
        "agents/d.py": "def go(record):\n    return record._prepare()\n",
    }
    assert ("agents/d.py", "_prepare") in scan(sources)


@pytest.mark.parametrize(
    ("line", "name"),
    [
        ("from aiokafka.consumer._fetcher import Fetcher", "aiokafka.consumer._fetcher"),
        ("from kafka.partitioner import _murmur", "_murmur"),
    ],
)
def test_imports_of_a_librarys_private_module_or_name_are_findings(line, name):
    assert scan({"pipeline/i.py": line + "\n"}) == {("pipeline/i.py", name)}


def test_an_allow_list_line_needs_four_fields():
    with pytest.raises(AssertionError, match="line 2: want path"):
        read_allowlist("# comment\npipeline/metrics.py | _sum | no reason\n")
