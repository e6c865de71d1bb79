"""The stream core: sessions, SLA clocks, switch failures (pure Python, no broker).

Importing this package chooses, before any core module loads, whether the
mypyc-compiled modules may run (``CXSTREAM_CORE``, see :mod:`pipeline.core_loader`);
:func:`core_mode` says which core this process actually runs.
"""

from pipeline.core_loader import core_mode, select_core

select_core()

__all__ = ["core_mode"]
