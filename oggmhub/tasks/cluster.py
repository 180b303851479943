"""Each user's budget for task runs on this machine, sized by the same limits as their
sessions' Dask clusters.

A user's :class:`Budget` is what :mod:`oggmhub.session.dask_limits` allows them in the
task's environment at its default size: ``workers``, capped by ``cores`` (one core a
worker) and by the size's own CPU and memory allotment, exactly as a session's clusters
are. On the local backend each run takes one worker's share (one core,
``memory_per_worker`` bytes, in a cgroup of its own: :mod:`oggmhub.tasks.isolation`) and
:class:`UserSlots` lets ``workers`` runs execute at once; the others wait in order.

No Dask scheduler or worker is started for runs: nothing listens on a port for them (an
earlier version ran a LocalCluster per user inside the service, as root, without
authentication).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from dataclasses import dataclass

from oggmhub.session import dask_limits


@dataclass(frozen=True)
class Budget:
    workers: int
    memory_per_worker: int
    limits: dask_limits.DaskLimits

    def describe(self):
        return (f"{self.workers} worker{'s' if self.workers != 1 else ''} of 1 core and "
                f"{dask_limits.format_memory(self.memory_per_worker)} (workers set by {self.limits.sources['workers']}, "
                f"cores by {self.limits.sources['cores']})")


def budget_for(environment, cohort_workers=None, max_workers=None):
    """The :class:`Budget` of one user's task cluster for catalog ``environment``."""
    size = environment.default_size
    limits = dask_limits.limits_for(environment, size)
    if cohort_workers is not None:
        limits = limits.override({"workers": cohort_workers}, "your cohort's dask_workers limit")
    limits = dask_limits.within_allotment(limits, size.cpu_limit, size.mem_limit, size.name)
    if max_workers is not None:
        limits = limits.cap("workers", int(max_workers), "the hub's Tasks.max_workers")
    workers = max(0, min(limits.workers, math.floor(limits.cores + 1e-9)))
    if workers < 1 or limits.clusters < 1:
        raise dask_limits.DaskLimitError("workers", f"your limits allow no Dask worker for tasks in {environment.name!r} "
                                         f"(workers {limits.workers}, cores {limits.cores:g}, clusters {limits.clusters})")
    return Budget(workers, int(limits.memory // workers), limits)


class UserSlots:
    """How many runs each user has executing, at most their budget's ``workers`` at once
    (the rest wait their turn, in order)."""

    def __init__(self):
        self._slots = {}  # user -> (semaphore, workers)
        self._running = {}

    @contextlib.asynccontextmanager
    async def slot(self, user, budget):
        semaphore, workers = self._slots.get(user, (None, None))
        if semaphore is None or workers != budget.workers:
            if not self._running.get(user):  # a changed budget applies once nothing runs
                semaphore, workers = asyncio.Semaphore(budget.workers), budget.workers
                self._slots[user] = (semaphore, workers)
        async with semaphore:
            self._running[user] = self._running.get(user, 0) + 1
            try:
                yield
            finally:
                self._running[user] -= 1

    def running(self, user):
        return self._running.get(user, 0)
