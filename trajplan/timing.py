"""Named pipeline stages: their wall time, and a progress line while they run.

A :class:`StageTimer` records seconds per stage (reported in ``plan.json`` and the
batch ``summary.csv``) and, when stderr is a terminal, shows a rich spinner with
the stage name when the output goes to a terminal; it stays silent otherwise (batch logs, CI, pipes).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator

log = logging.getLogger("trajplan")


class StageTimer:
    """Collects wall-clock seconds per named stage.

    Parameters
    ----------
    show_progress : bool, optional
        Show a spinner per stage; by default only when stdout and stderr are terminals.
    """

    def __init__(self, show_progress: bool | None = None) -> None:
        self.seconds: dict[str, float] = {}
        self.show_progress = (sys.stderr.isatty() and sys.stdout.isatty()) if show_progress is None else show_progress

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
