"""Progress of long commands (replay, simulate, produce, benchmarks), on stderr.

On a terminal a rich progress bar with the rate and the time left; otherwise
(a pipe, a log file, CI) one plain line every ``every_s`` seconds, so logs stay
readable. Stdout is left alone: commands print their summary lines there.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

PLAIN_EVERY_SECONDS = 5.0


class Progress:
    """Counts work done towards ``total`` (None: unknown) and shows it."""

    def __init__(
        self,
        description: str,
        total: int | None,
        *,
        stream: TextIO | None = None,
        every_s: float = PLAIN_EVERY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        terminal: bool | None = None,
    ) -> None:
        self.description = description
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.every_s = every_s
        self.clock = clock
        self.done = 0
        self.started = clock()
        self._last_line = self.started
        is_tty = terminal if terminal is not None else self.stream.isatty()
        self._bar: Any = None
        if is_tty:
            self._bar = _rich_bar(self.stream)
            self._task = self._bar.add_task(description, total=total)
            self._bar.start()

    def advance(self, amount: int = 1) -> None:
        self.done += amount
        if self._bar is not None:
            self._bar.update(self._task, advance=amount)
        elif self.every_s > 0 and self.clock() - self._last_line >= self.every_s:
            self._last_line = self.clock()
            print(self.line(), file=self.stream, flush=True)

    def line(self) -> str:
        """``<description> done=N[/total] rate=R/s[ eta=Ss]``, the plain form."""
        elapsed = max(self.clock() - self.started, 1e-9)
        rate = self.done / elapsed
        text = f"{self.description} done={self.done}"
        if self.total is not None:
            text += f"/{self.total}"
        text += f" rate={rate:.0f}/s"
        if self.total is not None and rate > 0:
            text += f" eta={max(self.total - self.done, 0) / rate:.0f}s"
        return text

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _rich_bar(stream: TextIO) -> Any:
    """A rich bar: description, bar, done/total, percent, items/s, time left."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        ProgressColumn,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.progress import Progress as RichProgress
    from rich.text import Text

    class RateColumn(ProgressColumn):
        """Items per second (rich's own speed column counts bytes)."""

        def render(self, task: Any) -> Text:
            return Text(f"{task.speed or 0:,.0f}/s")

    return RichProgress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        RateColumn(),
        TimeRemainingColumn(),
        console=Console(file=stream),
    )


def count_lines(path: Any) -> int:
    """Lines in a file (the total of a JSON Lines replay or produce), read in blocks."""
    with open(path, "rb") as handle:
        return sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b""))
