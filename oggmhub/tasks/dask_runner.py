"""Runs on this machine: each user's runs on their own Dask ``LocalCluster``
(:mod:`oggmhub.tasks.cluster`, sized by the user's Dask limits), one future per run.

A run's future executes :func:`oggmhub.tasks.execution.execute` on a worker; a watcher
per future moves the run's record to ``running`` once its tool started, and to the
result's state at the end. Cancelling marks the run, ends its tool's process group
(:func:`oggmhub.tasks.execution.kill`) and cancels the future; a cancelled batch also
closes the user's cluster when nothing else of theirs runs (no worker left behind).
"""

from __future__ import annotations

import asyncio
import inspect
import os
import time

from oggmhub.tasks import execution
from oggmhub.tasks.parameters import TaskInputError
from oggmhub.tasks.runs import Runner


class DaskRunner(Runner):
    """:class:`~oggmhub.tasks.runs.Runner` on users' Dask LocalClusters."""

    backend = "local"

    def __init__(self, settings, tasks, catalog, store, clusters, log):
        super().__init__(settings, tasks, catalog, store, log)
        self.clusters = clusters
        self.futures = {}  # (user, run id) -> distributed future
        self.watchers = {}

    async def _submit(self, user, task, record, locations, budget):
        loop = asyncio.get_running_loop()
        try:
            python = await loop.run_in_executor(None, self.python, task.environment)
        except Exception as e:  # noqa: BLE001 (the environment cannot be built here: say why)
            self.store.update(user, record["id"], status="failed", finished=time.time(),
                              error=f"environment {task.environment!r}: {e}")
            return
        plan = self.plan(record, task, locations, python)
        client = await self.clusters.client(user, budget)
        if self.store.get(user, record["id"])["status"] == "cancelled":
            return  # cancelled while its cluster started
        future = client.submit(execution.execute, plan, key=f"oggmhub-task-{record['id']}", pure=False)
        self.futures[(user, record["id"])] = future
        self.watchers[(user, record["id"])] = asyncio.ensure_future(self._watch(user, record["id"], future))

    def prepare_account(self, user):
        """With ``system_accounts``: make sure ``user`` has their account and home (0700), as
        a first server start makes them, so a user whose first act is a run needs no server."""
        if not self.settings.system_accounts:
            return
        from oggmhub.backends.local import file_modes, system_users

        home = os.path.join(self.settings.homes_dir, user)
        try:
            account = system_users.ensure(user, system_users.hub_id(self.settings.data_dir), home,
                                          self.settings.system_account_prefix)
        except system_users.SystemAccountError as e:
            raise TaskInputError([f"user: {e}"]) from None
        file_modes.private_dir(home, account)

    def run_as_for(self, user):
        """With ``system_accounts``: ``user``'s account (made by :meth:`prepare_account`)."""
        if not self.settings.system_accounts:
            return None
        from oggmhub.backends.local import system_users

        try:
            account = system_users.lookup(user, system_users.hub_id(self.settings.data_dir),
                                          self.settings.system_account_prefix)
        except system_users.SystemAccountError as e:
            raise TaskInputError([f"user: {e}"]) from None
        if account is None:  # removed since the run was accepted
            raise TaskInputError([f"user: {user!r} has no system account on this machine any more"])
        return {"name": account.name, "uid": account.uid, "gid": account.gid, "groups": account.groups(),
                "home": os.path.join(self.settings.homes_dir, user)}

    def _cancelled(self, user, run_id):
        return self.store.get(user, run_id)["status"] == "cancelled"

    async def _watch(self, user, run_id, future):
        try:
            while not future.done():
                if future.status == "pending" and os.path.exists(os.path.join(self.store.run_dir(user, run_id), execution.PID)):
                    record = self.store.get(user, run_id)
                    if record["status"] == "queued":
                        self.store.update(user, run_id, status="running", started=time.time())
                await asyncio.sleep(0.2)
            result = await future
            status = result["status"]
            if status != "done" and self._cancelled(user, run_id):
                status = "cancelled"  # a cancelled run's tool was killed: it did not fail
            self.store.update(user, run_id, status=status, started=result.get("started"),
                              finished=result.get("finished"), error="" if status == "cancelled" else result.get("error", ""),
                              published=result.get("outputs", {}), cli_seconds=result.get("cli_seconds"),
                              returncode=result.get("returncode"))
        except asyncio.CancelledError:
            self.store.update(user, run_id, status="cancelled", finished=time.time())
        except Exception as e:  # noqa: BLE001 (a worker that died, a cancelled future)
            status = "cancelled" if future.cancelled() or self._cancelled(user, run_id) else "failed"
            self.store.update(user, run_id, status=status, finished=time.time(), error=status == "failed" and str(e) or "")
        finally:
            self.futures.pop((user, run_id), None)
            self.watchers.pop((user, run_id), None)
            self.clusters.touch(user)

    def active_users(self):
        return {user for user, _ in self.futures}

    async def _stop(self, user, run_ids, batch):
        futures = []
        for run_id in run_ids:  # first every run's cancel mark, then the futures: see execution.kill
            execution.kill(self.store.run_dir(user, run_id))
        for run_id in run_ids:
            future = self.futures.get((user, run_id))
            if future is not None:
                futures.append(future)
        for future in futures:
            pending = future.cancel(force=True)  # an asynchronous client returns a coroutine
            if inspect.isawaitable(pending):
                await pending
        watchers = [w for (u, r), w in list(self.watchers.items()) if u == user and r in run_ids]
        if watchers:
            await asyncio.wait(watchers, timeout=30)
        if batch and not any(u == user for u, _ in self.futures):
            await self.clusters.close(user)  # no worker left behind

    async def close(self):
        await self.clusters.close_all()  # no worker outlives the service
