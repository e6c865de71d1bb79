"""Progress on stderr: a rich bar on a terminal, plain lines otherwise (issue 17 item 4)."""

from __future__ import annotations

import io
from pathlib import Path

from pipeline.progress import Progress, count_lines


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_without_a_terminal_progress_is_a_plain_line_every_period_with_rate_and_eta() -> None:
    clock = Clock()
    stream = io.StringIO()
    with Progress("replay", 1000, stream=stream, every_s=5.0, clock=clock, terminal=False) as p:
        for _ in range(10):
            clock.now += 1.0
            p.advance(50)
    assert stream.getvalue().splitlines() == [
        "replay done=250/1000 rate=50/s eta=15s",
        "replay done=500/1000 rate=50/s eta=10s",
    ]


def test_an_unknown_total_has_no_eta() -> None:
    clock = Clock()
    progress = Progress("produce", None, stream=io.StringIO(), clock=clock, terminal=False)
    clock.now = 2.0
    progress.advance(300)
    assert progress.line() == "produce done=300 rate=150/s"


def test_on_a_terminal_a_rich_bar_shows_count_rate_and_time_left() -> None:
    stream = io.StringIO()
    with Progress("simulate", 200, stream=stream, terminal=True) as progress:
        progress.advance(200)
    shown = stream.getvalue()
    assert "simulate" in shown
    assert "200/200" in shown
    assert "100%" in shown
    assert "/s" in shown


def test_lines_of_a_file_are_counted(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    path.write_text("a\nb\nc\n")
    assert count_lines(path) == 3
