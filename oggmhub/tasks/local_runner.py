"""Runs on this machine: each run's tool as the user's own account, in a cgroup of its own,
as many at once as the user's budget has workers (:mod:`oggmhub.tasks.cluster`).

The service (root on a local hub) plans a run and calls
:func:`oggmhub.tasks.execution.execute` in a thread: root makes a working folder in the
system's temporary folder, fills it with the inputs and hands it to the account; the tool
joins the run's cgroup and becomes the account before it executes
(:func:`oggmhub.tasks.isolation.preexec`), then reads its home inputs and writes its
outputs with the account's own rights. The run's record and log stay in root's run folder
(the tool writes its log through a descriptor root opened).

Nothing listens for runs: no Dask scheduler or worker is started, so there is no port a
user could connect to. Cancelling marks the run (root's folder) and kills every process
of its cgroup; a run's cgroup is emptied and removed when the run ends, whatever ended it,
so nothing the tool started outlives it. Without cgroups (a hub that is not root) a
cancel ends the tool's process group.
"""

from __future__ import annotations

import asyncio
import os
import time
from concurrent.futures import ThreadPoolExecutor

from oggmhub.tasks import execution, isolation
from oggmhub.tasks.cluster import budget_for
from oggmhub.tasks.parameters import TaskInputError
from oggmhub.tasks.runs import Runner
from oggmhub.usage import tasks as usage_tasks
from oggmhub.user_folders import folder_name, home_path


class LocalRunner(Runner):
    """:class:`~oggmhub.tasks.runs.Runner` on this machine (see the module's docstring)."""

    backend = "local"

    def __init__(self, settings, tasks, catalog, store, slots, log):
        super().__init__(settings, tasks, catalog, store, log)
        self.slots = slots
        self.pool = ThreadPoolExecutor(max_workers=64, thread_name_prefix="oggmhub-task")
        self.runs = {}  # (user, run id) -> asyncio task
        self.cgroups = {}  # (user, run id) -> RunCgroup of a run whose tool may run
        left = isolation.end_leftovers(settings.data_dir)  # their runs were marked failed (RunStore.mark_lost)
        if left:
            log.warning("tasks: ended %d run cgroup(s) a previous service left: %s", len(left), ", ".join(left))

    def budget(self, task):
        """The user's Dask limits in the task's environment at its default size: as many runs
        at once as they give workers, each with one worker's memory (:func:`.cluster.budget_for`)."""
        environment = self.catalog.environments[task.environment]
        return budget_for(environment, max_workers=self.settings.max_workers or None)

    def python(self, environment):
        """The environment's Python on this machine (built the first time, like a server's),
        or ``c.TasksSettings.environment_python``'s."""
        override = self.settings.environment_python.get(environment)
        if override:
            return override
        from oggmhub.backends.local.environments import build_local_env

        venv = build_local_env(environment, self.catalog, self.settings.env_cache or None)
        return str(venv / "bin" / "python")

    async def _submit(self, user, task, record, locations, budget):
        loop = asyncio.get_running_loop()
        try:
            python = await loop.run_in_executor(None, self.python, task.environment)
        except Exception as e:  # noqa: BLE001 (the environment cannot be built here: say why)
            self.store.update(user, record["id"], status="failed", finished=time.time(),
                              error=f"environment {task.environment!r}: {e}")
            return
        plan = self.plan(record, task, locations, python)
        key = (user, record["id"])
        self.runs[key] = asyncio.ensure_future(self._run(user, record["id"], plan, budget, task.environment))

    async def _run(self, user, run_id, plan, budget, environment=""):
        loop = asyncio.get_running_loop()
        key = (user, run_id)
        try:
            async with self.slots.slot(user, budget):
                if self._cancelled(user, run_id):
                    return
                cgroup = await loop.run_in_executor(
                    self.pool, isolation.run_cgroup, self.settings.data_dir, folder_name(user), run_id,
                    1, budget.memory_per_worker, self.settings.pids_max)
                if cgroup is not None:
                    self.cgroups[key] = cgroup
                preexec = isolation.preexec(cgroup, plan["run_as"] if os.geteuid() == 0 else None) \
                    if cgroup is not None else None

                def started():  # in the run's thread, once the tool runs
                    loop.call_soon_threadsafe(self._started, user, run_id)

                try:
                    result = await loop.run_in_executor(self.pool, execution.execute, plan, preexec, started)
                finally:
                    self.cgroups.pop(key, None)
                    await loop.run_in_executor(self.pool, self._record_usage, user, run_id, environment, cgroup,
                                               budget.memory_per_worker)
                    if cgroup is not None:
                        await loop.run_in_executor(self.pool, cgroup.end)  # nothing of the run outlives it
            status = result["status"]
            if status != "done" and self._cancelled(user, run_id):
                status = "cancelled"  # a cancelled run's tool was killed: it did not fail
            self.store.update(user, run_id, status=status, started=result.get("started"),
                              finished=result.get("finished"), error="" if status == "cancelled" else result.get("error", ""),
                              published=result.get("outputs", {}), cli_seconds=result.get("cli_seconds"),
                              returncode=result.get("returncode"))
        except asyncio.CancelledError:
            self.store.update(user, run_id, status="cancelled", finished=time.time())
        except Exception as e:  # noqa: BLE001 (a cgroup that could not be made, a thread that failed)
            status = "cancelled" if self._cancelled(user, run_id) else "failed"
            self.store.update(user, run_id, status=status, finished=time.time(), error=status == "failed" and str(e) or "")
        finally:
            self.runs.pop(key, None)

    def _record_usage(self, user, run_id, environment, cgroup, mem_limit):
        """The run's usage record (:mod:`oggmhub.usage.tasks`), from its cgroup before it goes."""
        record = self.store.get(user, run_id)
        try:
            usage_tasks.record_run(self.settings.data_dir, user, run_id, environment, cgroup, record.get("started"), time.time(), mem_limit)
        except Exception:  # noqa: BLE001 (accounting never fails a run)
            self.log.exception("tasks: usage of run %s not recorded", run_id)

    def prepare_account(self, user):
        """With ``system_accounts``: make sure ``user`` has their account and home (0700), as
        a first server start makes them, so a user whose first act is a run needs no server.
        A home folder that already belongs to another account is refused, never adopted."""
        if not self.settings.system_accounts:
            return
        from oggmhub.backends.local import file_modes, system_users

        home = home_path(self.settings.homes_dir, user)
        try:
            account = system_users.ensure(user, system_users.hub_id(self.settings.data_dir), home,
                                          self.settings.system_account_prefix)
        except system_users.SystemAccountError as e:
            raise TaskInputError([f"user: {e}"]) from None
        self.check_home(user, account)
        file_modes.private_dir(home, account)

    def check_home(self, user, account=None):
        """:class:`TaskInputError` if ``user``'s home folder exists but is another account's
        (a username whose folder name is someone else's: it is never adopted)."""
        if not self.settings.system_accounts:
            return
        from oggmhub.backends.local.file_modes import FolderTaken, check_not_taken

        home = home_path(self.settings.homes_dir, user)
        try:
            check_not_taken(home, account if account is not None else self._lookup(user))
        except FolderTaken:  # the user is told less than the admin's log: not whose it is
            raise TaskInputError([f"user: the home folder {os.path.basename(home)!r} belongs to another account on "
                                  f"this machine, so {user!r} cannot use it; ask the hub's admin"]) from None

    def _lookup(self, user):
        from oggmhub.backends.local import system_users

        try:
            return system_users.lookup(user, system_users.hub_id(self.settings.data_dir),
                                       self.settings.system_account_prefix)
        except system_users.SystemAccountError as e:
            raise TaskInputError([f"user: {e}"]) from None

    def run_as_for(self, user):
        """With ``system_accounts``: ``user``'s account (made by :meth:`prepare_account`)."""
        if not self.settings.system_accounts:
            return None
        account = self._lookup(user)
        if account is None:  # removed since the run was accepted
            raise TaskInputError([f"user: {user!r} has no system account on this machine any more"])
        return {"name": account.name, "uid": account.uid, "gid": account.gid, "groups": account.groups(),
                "home": home_path(self.settings.homes_dir, user)}

    def _started(self, user, run_id):
        if self.store.get(user, run_id)["status"] == "queued":
            self.store.update(user, run_id, status="running", started=time.time())

    def _cancelled(self, user, run_id):
        return self.store.get(user, run_id)["status"] == "cancelled"

    def active_users(self):
        return {user for user, _ in self.runs}

    def running(self, user):
        """How many of ``user``'s runs execute now."""
        return self.slots.running(user)

    def _kill(self, user, run_id):
        run_dir = self.store.run_dir(user, run_id)
        cgroup = self.cgroups.get((user, run_id))
        if cgroup is None:
            return execution.kill(run_dir)  # no cgroup here: the tool's process group (pid in the service's folder)
        execution.mark_cancelled(run_dir)
        return cgroup.kill_all()

    async def _stop(self, user, run_ids, batch):
        loop = asyncio.get_running_loop()
        for run_id in run_ids:  # first every run's cancel mark, then the processes: see execution.kill
            execution.mark_cancelled(self.store.run_dir(user, run_id))
        for run_id in run_ids:
            await loop.run_in_executor(self.pool, self._kill, user, run_id)
        runs = [t for (u, r), t in list(self.runs.items()) if u == user and r in run_ids]
        if runs:
            await asyncio.wait(runs, timeout=30)

    async def close(self):
        """Stop every run (the service is stopping): no tool outlives the service."""
        loop = asyncio.get_running_loop()
        for (user, run_id) in list(self.runs):
            self.store.update(user, run_id, status="cancelled", finished=time.time())
            execution.mark_cancelled(self.store.run_dir(user, run_id))
            await loop.run_in_executor(self.pool, self._kill, user, run_id)
        if self.runs:
            await asyncio.wait(list(self.runs.values()), timeout=30)
        self.pool.shutdown(wait=False, cancel_futures=True)
