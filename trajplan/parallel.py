"""Run independent tasks in this process, on a local dask cluster, or on an existing one.

Parallelism is never home-made: one worker runs the tasks here, in order; more start a
``dask.distributed.LocalCluster`` of single-threaded processes (one case in memory per
worker), and a scheduler address sends the same tasks to an existing dask cluster.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any


def run_tasks(func: Callable[..., Any], items: Sequence[Any], *, workers: int = 1, scheduler: str | None = None,
              name: Callable[[Any], str] = str, **kwargs: Any) -> Iterator[tuple[Any, Any, Exception | None]]:
    """Call ``func(item, **kwargs)`` for every item; yield ``(item, result, error)`` as each finishes.

    Parameters
    ----------
    workers : int
        1 runs in this process (results in order); more start a local cluster.
    scheduler : str, optional
        Address of an existing dask scheduler (``tcp://host:port``); overrides ``workers``.
    name : callable
        Short name of an item, used in the dask task key.

    Yields
    ------
    tuple
        The item, its result (None on failure) and the exception a remote worker raised
        (None on success). In-process exceptions propagate: ``func`` is expected to
        catch what it can report.
    """
    if scheduler is None and workers <= 1:
        for item in items:
            yield item, func(item, **kwargs), None
        return
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler:
        client = Client(scheduler)
    else:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
    try:
        futures = {client.submit(func, item, pure=False, key=f"trajplan-{name(item)}-{uuid.uuid4().hex[:6]}",
                                 **kwargs): item for item in items}
        for future in as_completed(futures):
            try:
                yield futures[future], future.result(), None
            except Exception as exc:  # noqa: BLE001 - a worker died (e.g. out of memory)
                yield futures[future], None, exc
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
