"""Named pipeline stages: their wall time, and a progress line while they run.

A :class:`StageTimer` records seconds per stage (reported in ``plan.json`` and the
batch ``summary.csv``) and shows a rich spinner with the stage name when stdout and
stderr are terminals; :func:`progress` shows a bar over many cases the same way.
Both stay silent otherwise (batch logs, CI, pipes).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

log = logging.getLogger("trajplan")
T = TypeVar("T")


def on_terminal() -> bool:
    """True when stdout and stderr are both terminals (progress display is wanted)."""
    return sys.stderr.isatty() and sys.stdout.isatty()


class StageTimer:
    """Collects wall-clock seconds per named stage.

    Parameters
    ----------
    show_progress : bool, optional
        Show a spinner per stage; by default only when stdout and stderr are terminals.
    """

    def __init__(self, show_progress: bool | None = None) -> None:
        self.seconds: dict[str, float] = {}
        self.show_progress = on_terminal() if show_progress is None else show_progress

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the enclosed block as stage ``name`` (log it, show a spinner on a terminal)."""
        start = time.perf_counter()
        log.info("%s ...", name)
        if self.show_progress:
            from rich.console import Console

            with Console(stderr=True).status(f"[bold]{name}[/bold] ..."):
                yield
        else:
            yield
        elapsed = time.perf_counter() - start
        self.seconds[name] = self.seconds.get(name, 0.0) + elapsed
        log.info("%s done in %.1f s", name, elapsed)


def progress(items: Iterable[T], total: int, label: str) -> Iterator[T]:
    """Yield ``items``, with a progress bar of ``total`` steps when on a terminal."""
    if not on_terminal() or total == 0:
        yield from items
        return
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task(label, total=total)
        for item in items:
            bar.advance(task)
            yield item
