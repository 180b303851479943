"""Usage records of local servers: a spawner mixin (before the lifecycle and size-limit
mixins in :class:`~oggmhub.backends.local.spawner.LocalEnvSpawner`'s bases).

- a start opens the server's record, keyed by its session marker (kept in the hub's state,
  so a server found again after a hub restart is the same record, never a second one);
- every poll of the hub (``c.Spawner.poll_interval``) samples the server's cgroup: its
  CPU time (``cpuacct.usage`` / ``cpu.stat``) and memory peak, cumulative counters the
  store only ever raises; the same poll checks the user's budgets (warned, on the hub's
  home page and inside JupyterLab through :meth:`UsageAccounting.budget_notice`, then
  stopped after ``c.Usage.grace_seconds``) and writes the day's summary line once a day;
- the stop samples the cgroup a last time, once its processes are gone and before it is
  removed, and closes the record; a server that died while the hub was down is closed at
  its last sample.

Dask clusters started from a session run their scheduler and workers as processes of the
server (:mod:`oggmhub.session.dask_local`), in its cgroup: locally their CPU and memory are
in the server's record (the record's ``kind`` stays ``server``).
"""

from __future__ import annotations

import time

from oggmhub.cohorts import model as cohorts
from oggmhub.usage import budgets, reports
from oggmhub.usage.settings import usage_settings


class UsageAccounting:
    """The mixin (see the module's docstring)."""

    _usage_id = None  # the open record of the running server
    _usage_prev = None  # (time, cpu seconds) of the previous sample
    _usage_stopping = False

    @property
    def usage(self):
        settings = getattr(self, "_usage_settings", None)
        if settings is None:
            settings = self._usage_settings = usage_settings(self.config)
        return settings

    @property
    def _usage_store(self):
        return self.usage.store_in(getattr(self, "data_dir", None))

    def _usage_measure(self):
        """(CPU seconds, memory peak in bytes) of the server's cgroup, or (None, None)."""
        cgroup = getattr(self, "_cgroup", None)
        if cgroup is None:
            return None, None
        try:
            return cgroup.cpu_seconds(), cgroup.memory_peak()
        except (OSError, KeyError, ValueError):
            return None, None

    def _usage_cohort(self):
        names = [c.name for c in cohorts.user_cohorts(self.user) if c.is_open()]
        return names[0] if names else ""

    async def start(self):
        result = await super().start()
        if self.usage.enabled:
            try:
                self._usage_open()
            except Exception:  # noqa: BLE001 (accounting never stops a server from starting)
                self.log.exception("%s: usage record not opened", self._log_name)
        return result

    def budget_notice(self, text):
        """Show ``text`` inside the running session (None: take it back). The backend's;
        the local spawner leaves it in the session's scratch for its kernels."""

    def _usage_lab_notice(self, text):
        try:
            self.budget_notice(text)
        except Exception:  # noqa: BLE001 (a notice never fails the accounting)
            self.log.exception("%s: the budget notice was not left in the session", self._log_name)

    def _usage_open(self):
        self._usage_lab_notice(None)  # a previous server's
        choice, now = self.choice, time.time()
        key = getattr(self, "_session", None) or f"{now:.6f}"
        record_id = f"server:{self.user.name}:{self.name or ''}:{key}"
        self._usage_store.open({
            "id": record_id, "kind": "server", "user": self.user.name, "cohort": self._usage_cohort(),
            "project": (self.user_options or {}).get("project") or "", "environment": choice.environment.name,
            "size": choice.size.name, "cpu_limit": self.cpu_limit or 0, "mem_limit": self.mem_limit or 0,
            "gpus": choice.gpu.count if choice.gpu else 0, "start": now, "source": "cgroup",
        })
        self._usage_id, self._usage_prev = record_id, None

    def get_state(self):
        state = super().get_state()
        if self._usage_id:
            state["usage_id"] = self._usage_id
        return state

    def load_state(self, state):
        super().load_state(state)
        self._usage_id = state.get("usage_id") or self._usage_id

    async def poll(self):
        status = await super().poll()
        if self._usage_id and self.usage.enabled and not self._usage_stopping:
            try:
                if status is None:
                    stopped = await self._usage_tick()
                    return 0 if stopped else None
                self._usage_close(at_last_sample=True)  # died meanwhile (e.g. while the hub was down)
            except Exception:  # noqa: BLE001 (a failed sample never takes a server down)
                self.log.exception("%s: usage sample failed", self._log_name)
        return status

    def _usage_sample(self, now):
        cpu, peak = self._usage_measure()
        busy_since = ...
        if cpu is not None and self._usage_prev is not None:
            then, cpu_then = self._usage_prev
            rate = (cpu - cpu_then) / max(now - then, 1e-6)
            record = self._usage_store.get(self._usage_id) or {}
            limit = record.get("cpu_limit") or 0  # the record's: a spawner made after a hub restart has no choice yet
            busy = limit and rate >= self.usage.abuse_cpu_share * limit
            busy_since = (record.get("busy_since") or then) if busy else None
        if cpu is not None:
            self._usage_prev = (now, cpu)
        activity = getattr(getattr(self, "orm_spawner", None), "last_activity", None)
        last = activity.replace(tzinfo=activity.tzinfo or __import__("datetime").timezone.utc).timestamp() \
            if activity is not None else None
        self._usage_store.sample(self._usage_id, cpu, peak, now, last_activity=last, busy_since=busy_since)

    async def _usage_tick(self):
        """Sample; write the day's summary; warn, then stop, a server over its budget. True if stopped."""
        now, store = time.time(), self._usage_store
        self._usage_sample(now)
        reports.daily_summary(store, self.log, now)
        record = store.get(self._usage_id)
        over = budgets.exceeded(budgets.catalog_budgets(self.catalog), store, self.user.name,
                                [record["cohort"]] if record["cohort"] else [], record["project"], now)
        if not over:
            return False
        message = budgets.sentence(*over[0])
        if record["warned_at"] is None:
            store.set_warned(self._usage_id, now)
            self.log.warning("%s: %s The server stops in %ds.", self._log_name, message, self.usage.grace_seconds)
            self._usage_lab_notice(budgets.lab_notice(over[0][0], over[0][1], now + self.usage.grace_seconds))
            if self.usage.grace_seconds > 0:
                return False
        elif now - record["warned_at"] < self.usage.grace_seconds:
            return False
        self.log.warning("%s: %s Its grace of %ds is over: stopping the server.", self._log_name, message,
                         self.usage.grace_seconds)
        self._usage_stopping = True
        try:
            await self.stop(now=True)
        finally:
            self._usage_stopping = False
        return True

    def _remove_cgroup(self):  # at every stop (and before a start makes its cgroup)
        if self._usage_id:
            try:
                self._usage_close()
            except Exception:  # noqa: BLE001
                self.log.exception("%s: usage record not closed", self._log_name)
        super()._remove_cgroup()

    def _usage_close(self, at_last_sample=False):
        """Sample a last time (the cgroup keeps its counters once its processes are gone) and close."""
        record_id, self._usage_id = self._usage_id, None
        self._usage_lab_notice(None)
        store, now = self._usage_store, time.time()
        cpu, peak = self._usage_measure()
        store.sample(record_id, cpu, peak, now if not at_last_sample else 0)
        record = store.get(record_id)
        stop = record["updated"] if at_last_sample and record and record["updated"] else now
        store.close(record_id, stop)
