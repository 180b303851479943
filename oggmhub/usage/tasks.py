"""Usage records of tool-task runs (local backend: each run's own cgroup, measured when the
run ends and before the cgroup is removed), and the budget check before a run.

A run is charged to the user's cohort and project of their running server (the session
that starts runs), else to none. The tasks service writes to the same records file as the
hub: ``<data dir>/usage.sqlite`` (its ``c.TasksSettings.data_dir``), or ``$OGGMHUB_USAGE_DB``.
"""

from __future__ import annotations

import time

from oggmhub.usage import budgets
from oggmhub.usage.settings import usage_settings


def _charged_to(store, user):
    open_servers = [r for r in store.records(user=user, open_only=True) if r["kind"] == "server"]
    return (open_servers[-1]["cohort"], open_servers[-1]["project"]) if open_servers else ("", "")


def record_run(data_dir, user, run_id, environment, cgroup, started, finished, mem_limit, cpu_limit=1):
    """Write the record of one finished run (once: the run id keys it), in ``data_dir``'s store."""
    settings = usage_settings(None)
    if not settings.enabled:
        return
    store = settings.store_in(data_dir)
    cohort, project = _charged_to(store, user)
    cpu = peak = None
    if cgroup is not None:
        try:
            cpu, peak = cgroup.cpu_seconds(), cgroup.memory_peak()
        except (OSError, KeyError, ValueError):
            pass
    finished = finished or time.time()
    record_id = f"task:{user}:{run_id}"
    store.open({"id": record_id, "kind": "task", "user": user, "cohort": cohort, "project": project,
                "environment": environment, "size": "task", "cpu_limit": cpu_limit, "mem_limit": mem_limit or 0,
                "gpus": 0, "start": started or finished, "source": "cgroup" if cgroup is not None else "wall"})
    store.sample(record_id, cpu, peak, finished)
    store.close(record_id, finished)


def refusal(data_dir, catalog, user, cohort_names=()):
    """The budget sentence refusing a run of ``user`` now, or None."""
    settings = usage_settings(None)
    found = budgets.catalog_budgets(catalog)
    if not settings.enabled or not found:
        return None
    store = settings.store_in(data_dir)
    _, project = _charged_to(store, user)
    over = budgets.exceeded(found, store, user, list(cohort_names), project)
    return budgets.sentence(*over[0]) if over else None
