"""Process-wide runtime tuning."""

from __future__ import annotations

import gc

from pipeline.cli import main
from pipeline.runtime import GC_THRESHOLDS


def test_every_cxstream_command_collects_young_objects_less_often_than_cpython_does() -> None:
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        assert main(["schema", "check"]) == 0
        assert gc.get_threshold() == GC_THRESHOLDS
        assert GC_THRESHOLDS[0] > 700
    finally:
        gc.set_threshold(*before)
