"""A faster ``__init__`` for frozen, slotted dataclasses built once per event.

Used by the output records (:mod:`pipeline.core.records`) and the input event
(:class:`pipeline.contract.event.InteractionEvent`). No project imports: both
the contract and the core depend on it.
"""

from __future__ import annotations

from dataclasses import MISSING, fields
from operator import attrgetter
from typing import Any, TypeVar

_ClassT = TypeVar("_ClassT", bound=type)


class _Factory:
    """The default of a field with a default factory (shown as ``<factory>``)."""

    def __repr__(self) -> str:
        return "<factory>"


_FACTORY = _Factory()


def slot_setting_init(cls: _ClassT) -> _ClassT:
    """Give a frozen, slotted dataclass an ``__init__`` that stores each field through
    its slot descriptor, and a ``__reduce__`` that pickles a record as its class and
    field values; the class is otherwise unchanged (same parameters and defaults,
    still frozen: assigning to a built record raises).

    Why: the ``__init__`` that ``dataclass(frozen=True)`` writes must get past the
    class's own ``__setattr__``, so it calls ``object.__setattr__(self, name, value)``
    per field, a generic attribute lookup each time. The core builds about one
    output record per two events, and that lookup cost about a tenth of the
    replay; the worker and the replay build one ``InteractionEvent`` per event.
    Calling the slot descriptor's ``__set__`` stores the same value directly.
    The source is generated as ``dataclasses`` does it, one line per field.

    Pickling (a parallel replay sends its records between processes): the
    ``__getstate__``/``__setstate__`` pair that slotted dataclasses get sets every
    field through ``object.__setattr__`` in a Python loop; rebuilding through
    ``__init__`` from a tuple of values took about a third less (50,000 records).
    """
    namespace: dict[str, Any] = {"_FACTORY": _FACTORY}
    params: list[str] = []
    body: list[str] = []
    for spec in fields(cls):
        name = spec.name
        namespace[f"_set_{name}"] = cls.__dict__[name].__set__
        value = name
        if spec.default is not MISSING:
            namespace[f"_default_{name}"] = spec.default
            params.append(f"{name}=_default_{name}")
        elif spec.default_factory is not MISSING:
            namespace[f"_factory_{name}"] = spec.default_factory
            params.append(f"{name}=_FACTORY")
            value = f"_factory_{name}() if {name} is _FACTORY else {name}"
        else:
            params.append(name)
        body.append(f"    _set_{name}(self, {value})")
    source = f"def __init__(self, {', '.join(params)}):\n" + "\n".join(body) + "\n"
    exec(source, namespace)
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    cls.__init__ = init  # type: ignore[misc]  # replacing the generated one is the point
    values = attrgetter(*(spec.name for spec in fields(cls)))

    def __reduce__(self: Any) -> tuple[type, tuple[Any, ...]]:
        return (cls, values(self))

    cls.__reduce__ = __reduce__  # type: ignore[assignment,method-assign]
    return cls
