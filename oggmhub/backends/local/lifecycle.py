"""How a local server is found again after a hub restart, and stopped with everything it started.

A mixin of :class:`~.spawner.LocalEnvSpawner` (before ``LocalProcessSpawner`` in its bases).

Stopping ends every process of the server, and only those. They are found from what the
user cannot forge:

- the server's cgroup (:meth:`.cgroups.SessionCgroup.kill`): every process it started,
  however it left the process tree (double forks, ``setsid``, ``env -i``), is in it and
  cannot leave it; the cgroup is emptied, again until nothing is left;
- the server's own process tree;
- without cgroups (a machine without them, a hub that is not root): the processes that
  carry the server's session marker *and* run as the server's uid.

Never from a file the user can write: the session's Dask registry only counts clusters
for the limits. The registry folder itself is removed without following links
(:mod:`.safe_files`).
"""

from __future__ import annotations

import asyncio
import os
import signal

import psutil

from oggmhub.backends.local import cgroups, safe_files
from oggmhub.backends.local.processes import end_processes, session_processes


class ServerLifecycle:
    """State across hub restarts, liveness, and a stop that leaves nothing behind."""

    _started_at = None
    _session = None  # this start's SESSION_MARKER value
    _uid = None  # the uid the server runs as

    def _record_process(self):
        try:
            self._started_at = psutil.Process(self.pid).create_time()
        except psutil.Error:
            self._started_at = None
        self._uid = self.account.uid if self.account is not None else os.geteuid()

    def get_state(self):
        state = super().get_state()
        if self.pid and self._started_at:
            state["started_at"] = self._started_at
        if self.pid and self._session:
            state["session"] = self._session
        if self.pid and self._uid is not None:
            state["uid"] = self._uid
        if self.pid and self._cgroup is not None:
            state["cgroup"] = [self._cgroup.kind, self._cgroup.name]
        return state

    def load_state(self, state):
        super().load_state(state)
        self._started_at = state.get("started_at")
        self._session = state.get("session")
        self._uid = state.get("uid")
        if state.get("cgroup"):
            self._cgroup = cgroups.SessionCgroup(*state["cgroup"])

    def clear_state(self):
        super().clear_state()
        self._started_at = None
        self._session = None
        self._uid = None

    async def poll(self):
        """Like LocalProcessSpawner.poll, but a reused pid is not taken for our server."""
        if self.proc is None and self.pid and self._started_at:
            try:
                same = psutil.Process(self.pid).create_time() == self._started_at
            except psutil.Error:
                same = False
            if not same:
                self.log.info("%s's server (pid %s) is gone", self._log_name, self.pid)
                self.clear_state()
                return 0
        return await super().poll()

    async def _signal(self, sig):
        """Signal the server's whole process group (kernels and terminals start their own
        sessions: :meth:`stop` ends those by cgroup and process tree).

        Signal 0 (a liveness check) asks about the server process itself.
        """
        try:
            if sig == 0:
                os.kill(self.pid, 0)
            else:
                os.killpg(self.pid, sig)
        except ProcessLookupError:
            return False
        return True

    @property
    def dask_registry(self):
        """Where this server's Dask clusters are recorded (:class:`oggmhub.session.dask.Registry`)."""
        return os.path.join(self.scratch_dir, "dask", self.name or "default")

    def _server_processes(self):
        """The server's process tree and its cgroup's members; without a cgroup, the
        processes with its session marker that run as its uid (see the module's docstring)."""
        procs = []
        if self.pid:
            try:
                procs = psutil.Process(self.pid).children(recursive=True)
            except psutil.Error:
                pass
        seen = {p.pid for p in procs} | {os.getpid()}
        if self._cgroup is not None:
            for pid in self._cgroup.pids():
                if pid not in seen:
                    try:
                        procs.append(psutil.Process(pid))
                    except psutil.Error:
                        continue
        elif self._session:
            uid = self._uid if self._uid is not None else os.geteuid()
            procs.extend(session_processes(self._session, exclude=seen, uid=uid))
        return procs

    def _end_everything(self, procs):
        """In a thread: SIGTERM, then SIGKILL, ``procs``; then empty the cgroup."""
        end_processes(procs)
        if self._cgroup is not None:
            left = self._cgroup.kill()
            if left:
                self.log.warning("%s: processes %s are still in the server's cgroup", self._log_name, left)

    def _remove_registry(self):
        """The Dask registry folder, without following a link the user put anywhere in it."""
        try:
            safe_files.remove(self.scratch_dir, safe_files.split_under(self.dask_registry, self.scratch_dir))
        except (OSError, ValueError) as e:
            self.log.warning("%s: the Dask registry %s was not removed: %s", self._log_name, self.dask_registry, e)

    async def stop(self, now=False):
        pgid = self.pid
        procs = self._server_processes()  # found while the server still holds them
        await super().stop(now=now)
        if pgid:
            try:  # whatever the server left behind in its session goes too
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._end_everything, procs)
        await loop.run_in_executor(None, self._remove_registry)
        if self._mounting is not None:  # a stop during a start: let its mount finish, then undo it
            await settle(self._mounting)
        self._unmount_datasets()
        await loop.run_in_executor(None, self._remove_cgroup)


async def settle(future):
    """Wait until ``future`` (a mount thread's, which ends on its own in seconds) is done,
    even if this task is cancelled meanwhile: what is cleaning up must see the thread's
    work through. Its result or error is left to whoever awaits it."""
    while not future.done():
        try:
            await asyncio.wait([future])
        except asyncio.CancelledError:
            continue
    if not future.cancelled():
        future.exception()  # retrieved: no 'exception was never retrieved' warning
