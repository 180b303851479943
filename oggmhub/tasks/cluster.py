"""Each user's Dask cluster for task runs, sized by the same limits as their sessions'.

On one machine a user's runs go to a ``distributed.LocalCluster`` of their own (worker
processes, one thread each, on 127.0.0.1), created on the first run and closed after the
limits' ``idle_timeout`` with nothing to do. Its size is what
:mod:`oggmhub.session.dask_limits` allows the user in the task's environment at its
default size: ``workers``, capped by ``cores`` (one core a worker) and by the size's own CPU
and memory allotment, exactly as a session's clusters are. Dask does the queueing; there
is no other scheduler.
"""

from __future__ import annotations

import asyncio
import math
import time
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


class UserClusters:
    """One asynchronous LocalCluster and Client per user."""

    def __init__(self, log=None):
        self.log = log
        self._clusters = {}  # user -> (cluster, client, budget)
        self._last_used = {}
        self._locks = {}

    async def client(self, user, budget):
        lock = self._locks.setdefault(user, asyncio.Lock())
        async with lock:
            self._last_used[user] = time.monotonic()
            if user in self._clusters:
                return self._clusters[user][1]
            from distributed import Client, LocalCluster

            cluster = await LocalCluster(
                n_workers=budget.workers, threads_per_worker=1, processes=True,
                memory_limit=budget.memory_per_worker, host="127.0.0.1", dashboard_address=None,
                asynchronous=True, silence_logs=40, name=f"oggmhub-tasks-{user}",
            )
            client = await Client(cluster, asynchronous=True)
            self._clusters[user] = (cluster, client, budget)
            if self.log:
                self.log.info("tasks: started %s's Dask cluster: %s", user, budget.describe())
            return client

    def touch(self, user):
        self._last_used[user] = time.monotonic()

    def workers(self, user):
        entry = self._clusters.get(user)
        return len(entry[0].workers) if entry else 0

    async def close(self, user):
        entry = self._clusters.pop(user, None)
        if entry:
            cluster, client, _ = entry
            await client.close()
            await cluster.close()
            if self.log:
                self.log.info("tasks: closed %s's Dask cluster", user)

    async def close_idle(self, busy_users, idle_timeout=None):
        """Close the clusters of users with nothing running for longer than ``idle_timeout``
        seconds (``None``: each user's Dask limit ``idle_timeout``)."""
        now = time.monotonic()
        for user in list(self._clusters):
            timeout = idle_timeout if idle_timeout is not None else self._clusters[user][2].limits.idle_timeout
            if user not in busy_users and now - self._last_used.get(user, now) > timeout:
                await self.close(user)

    async def close_all(self):
        for user in list(self._clusters):
            await self.close(user)
