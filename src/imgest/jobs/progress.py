"""A progress bar for long CLI work (count, rate, elapsed, ETA) on stderr, via rich: corpus
jobs count images, `imgest upload`/`import` count files."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class RateColumn(ProgressColumn):
    """Items per second."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        """The task's current speed, e.g. `41.2 img/s`."""
        speed = task.finished_speed or task.speed
        shown = "--" if speed is None else f"{speed:.1f}"
        return Text(f"{shown} {self.unit}/s", style="cyan")


@contextmanager
def progress_bar(
    description: str, total: int, *, enabled: bool = True, unit: str = "img"
) -> Iterator[Callable[[int], None]]:
    """Yields advance(n); draws nothing when `enabled` is False."""
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(unit),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
    )
    with progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)
