"""Usage accounting's cost: on a spawn (accounting on vs off), and the admin report over
1,000 users × 30 days of records.

1. Spawns: two real local hubs side by side, the same LocalEnvSpawner and OGGM
   environment; one with accounting (``c.Usage.enabled``, the default, with a budget in
   the catalog so every start is checked against the records), one with it off. Spawns
   alternate between them, each timed from the REST request to the server being ready.
   The accounting hub's records file holds 1,000 users × 30 days beforehand, so the
   budget check reads a full month's table.
2. The report: ``views.admin_view`` + its CSV over those 30,000 records (per user, cohort
   and project totals and the abuse signal), timed in this process, best of 3.

    python benchmarks/usage.py [--spawns 5] [--users 1000] [--days 30]

Targets (issue #25): spawn_ratio <= 1.05, report_s < 2. On a busy machine the two hubs'
medians differ by more than the accounting costs, so the accounting's own work per spawn is
also timed in-process (accounting_ms) and set against the median spawn (in_process_ratio).
The last line is JSON with spawn_ratio, report_s, accounting_ms, in_process_ratio, the
medians and the record count.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))
sys.path.insert(0, REPO)

CONFIG = """
load_subconfig({main!r})  # noqa: F821
c.Usage.enabled = {enabled}
c.Usage.db_path = {db!r}
"""


def fill(store, users, days, now):
    """One server record per user per day (an hour of 2 CPUs, 4 GiB), over ``days`` days."""
    from oggmhub.usage.units import GIB

    rows = []
    for d in range(days):
        for u in range(users):
            start = now - (d + 1) * 86400 + (u % 60) * 60
            rows.append((f"server:u{u:04d}::{d}", "server", f"u{u:04d}", f"c{u % 10}", f"p{u % 25}", "oggm",
                         "small", 2.0, 4.0 * GIB, 0, start, start + 3600, start + 3600, 1800.0, GIB, 0.0))
    with store._lock:
        store._db.execute("BEGIN")
        store._db.executemany("INSERT OR IGNORE INTO records (id, kind, user, cohort, project, environment, size, "
                              "cpu_limit, mem_limit, gpus, start, stop, updated, cpu_seconds, mem_peak, cpu_base) "
                              "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        store._db.execute("COMMIT")
    return len(rows)


def report_seconds(store, now, days):
    from oggmhub.usage import views

    best = None
    for _ in range(3):
        t0 = time.perf_counter()
        view = views.admin_view(store, now - days * 86400, now, abuse_hours=2, now=now)
        views.admin_csv(view)
        elapsed = time.perf_counter() - t0
        best = elapsed if best is None else min(best, elapsed)
    return best, view


def accounting_ms(store, now):
    """The accounting's own work for one spawn, in this process: the budget check over a
    month of a user's records (in a 30,000-record table), opening the record, a poll's
    sample and the stop's close; best of 20, in milliseconds."""
    from oggmhub.usage import budgets

    budget = [budgets.Budget.from_catalog("b", {"user": "u0001", "unit": "core-hours", "amount": 1e9, "window": "month"})]
    best = None
    for i in range(20):
        t0 = time.perf_counter()
        budgets.check_start(budget, store, "u0001", [], "", now=now)
        rid = f"server:u0001::bench{i}"
        store.open({"id": rid, "kind": "server", "user": "u0001", "start": now})
        store.sample(rid, 1.0, 1, now)
        store.close(rid, now + 1)
        elapsed = (time.perf_counter() - t0) * 1000
        best = elapsed if best is None else min(best, elapsed)
    return best


def main(args):
    import yaml

    from support.local_hub import LocalHub
    from oggmhub.backends.local.environments import build_local_env, default_root
    from oggmhub.catalog import load_catalog
    from oggmhub.usage.store import UsageStore

    catalog = load_catalog(os.path.join(REPO, "hub_config", "catalog.yaml"))
    print("building (or reusing) the OGGM environment ...", flush=True)
    build_local_env("oggm", catalog, default_root())
    env = {"OGGMHUB_ENV_CACHE": str(default_root())}
    now = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "usage-on.sqlite")
        store = UsageStore(db)
        records = fill(store, args.users, args.days, now)
        report_s, view = report_seconds(store, now, args.days)
        print(f"admin report over {records} records ({args.users} users × {args.days} days): {report_s:.3f} s "
              f"({len(view['by_user'])} users, {len(view['by_cohort'])} cohorts, {len(view['by_project'])} projects)")
        cost_ms = accounting_ms(store, now)
        print(f"accounting's own work per spawn (budget check, open, sample, close), in-process: {cost_ms:.2f} ms")
        hubs = {}
        for name, enabled in (("on", True), ("off", False)):
            config = os.path.join(tmp, f"config-{name}.py")
            with open(config, "w") as f:
                f.write(CONFIG.format(main=os.path.join(REPO, "hub_config", "jupyterhub_config.py"), enabled=enabled,
                                      db=db if enabled else os.path.join(tmp, "usage-off.sqlite")))
            hubs[name] = LocalHub(os.path.join(tmp, name, "data"), env=env, config=config)
        with open(hubs["on"].catalog) as f:
            data = yaml.safe_load(f)
        data["budgets"] = {"bench": {"user": "bench", "unit": "core-hours", "amount": 1000, "window": "month"}}
        with open(hubs["on"].catalog, "w") as f:
            yaml.safe_dump(data, f, sort_keys=False)
        for hub in hubs.values():
            hub.start(timeout=180)
        times = {"on": [], "off": []}
        try:
            sessions = {n: h.new_user("bench", "bench-password-1") for n, h in hubs.items()}
            for h in hubs.values():
                h.salem_stand_in("bench")
            from spawn_local import stop, timed_spawn  # the same timing as benchmarks/spawn_local.py
            for i in range(args.spawns + 1):  # the first of each warms caches, not counted
                for name in (("on", "off") if i % 2 else ("off", "on")):
                    elapsed = timed_spawn(hubs[name], sessions[name], "bench", {"profile": "oggm"})
                    stop(hubs[name], sessions[name], "bench")
                    if i:
                        times[name].append(elapsed)
        finally:
            for hub in hubs.values():
                hub.stop(servers=True)
        server_records = [r for r in store.records(user="bench")]
    on, off = statistics.median(times["on"]), statistics.median(times["off"])
    print(f"request -> ready over {args.spawns} spawns each (median / min / max, s):")
    print(f"  accounting on   {on:.3f} {min(times['on']):.3f} {max(times['on']):.3f}")
    print(f"  accounting off  {off:.3f} {min(times['off']):.3f} {max(times['off']):.3f}")
    print(f"  records the accounting hub wrote for its spawns: {len(server_records)}")
    print(f"  in-process cost / median spawn without accounting: {1 + cost_ms / 1000 / off:.4f}")
    print(json.dumps({"spawn_ratio": round(on / off, 3), "report_s": round(report_s, 3), "on_median_s": round(on, 3),
                      "accounting_ms": round(cost_ms, 2), "in_process_ratio": round(1 + cost_ms / 1000 / off, 4),
                      "off_median_s": round(off, 3), "spawns_each": args.spawns, "records": records}))


if __name__ == "__main__":
    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spawns", type=int, default=5, help="timed spawns per hub")
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--days", type=int, default=30)
    main(parser.parse_args())
