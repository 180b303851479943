"""Usage records and budgets without a hub: the store (written once, counters only raised,
totals in SQL equal to the units' rules), budgets' windows and sentence, projects'
refusals, date ranges, CSV, the abuse signal, pods' records, and the spawner mixin with a
stand-in cgroup (samples, a restart, grace then stop, c.Usage options taking effect)."""

import asyncio
import csv
import io
import logging
import types
from datetime import datetime, timezone

import pytest
from traitlets.config import Config

from oggmhub.catalog import CatalogError, load_catalog
from oggmhub.choice import ChoiceError
from oggmhub.usage import budgets, kubernetes, projects, reports, views
from oggmhub.usage.accounting import UsageAccounting
from oggmhub.usage.settings import Usage, usage_settings
from oggmhub.usage.store import UsageStore
from oggmhub.usage.units import GIB, worth

DAY = 86400
T0 = datetime(2026, 12, 7, 10, 0, tzinfo=timezone.utc).timestamp()  # a Monday, 10:00 UTC


@pytest.fixture
def store(tmp_path):
    return UsageStore(str(tmp_path / "usage.sqlite"))


def server(rid="s1", user="ada", start=T0, **kw):
    return {"id": rid, "kind": "server", "user": user, "cohort": "", "project": "", "environment": "oggm",
            "size": "small", "cpu_limit": 2, "mem_limit": 4 * GIB, "gpus": 0, "start": start, **kw}


def test_a_record_is_written_once_and_its_counters_only_rise(store, tmp_path):
    assert store.open(server()) is True
    assert store.open(server(start=T0 + 50)) is False  # the same session again (a hub restart): no second row
    store.sample("s1", cpu_seconds=30, mem_peak=GIB, now=T0 + 60)
    store.sample("s1", cpu_seconds=20, mem_peak=GIB / 2, now=T0 + 30)  # an old figure sampled again: kept higher
    record = store.get("s1")
    assert (record["cpu_seconds"], record["mem_peak"], record["start"]) == (30, GIB, T0)
    store.close("s1", T0 + 3600)
    store.close("s1", T0 + 7200)  # a stop, once written, stays
    store.sample("s1", cpu_seconds=99, now=T0 + 7200)  # nor does a closed record change
    record = store.get("s1")
    assert (record["stop"], record["cpu_seconds"]) == (T0 + 3600, 30)
    assert len(store.records()) == 1
    assert oct(__import__("os").stat(tmp_path / "usage.sqlite").st_mode & 0o777) == "0o600"


def test_totals_prorate_to_the_range_and_match_the_units(store):
    store.open(server("a", start=T0 - 1800))  # half an hour before the range
    store.sample("a", cpu_seconds=3600, now=T0 + 1800)
    store.close("a", T0 + 1800)
    store.open(server("b", user="bo", start=T0, gpus=1, mem_limit=8 * GIB))
    store.close("b", T0 + 7200)
    rows = {r["user"]: r for r in store.totals(T0, T0 + DAY, by="user", now=T0 + DAY)}
    assert rows["ada"]["core-hours"] == pytest.approx(0.5)  # half its life inside: half its CPU
    assert rows["ada"]["gib-hours"] == pytest.approx(4 * 0.5)
    assert rows["bo"]["gib-hours"] == pytest.approx(16) and rows["bo"]["gpu-hours"] == pytest.approx(2)
    for rid, user in (("a", "ada"), ("b", "bo")):
        expected = worth(store.get(rid), T0, T0 + DAY, T0 + DAY)
        assert all(rows[user][u] == pytest.approx(v) for u, v in expected.items())


def test_a_running_record_counts_up_to_now_and_a_clock_step_back_counts_nothing_negative(store):
    store.open(server("r"))
    rows = store.totals(T0 - DAY, T0 + DAY, now=T0 + 3600)
    assert rows[0]["gib-hours"] == pytest.approx(4)
    store.close("r", T0 - 600)  # the clock went back: no negative time
    assert store.get("r")["stop"] == T0
    assert store.totals(T0 - DAY, T0 + DAY, now=T0)[0]["gib-hours"] == 0


def test_budget_windows_and_the_refusal_sentence(store):
    assert budgets.window_of("day", T0) == (T0 - 10 * 3600, T0 + 14 * 3600)
    assert budgets.window_of("week", T0 + 3 * DAY)[0] == T0 - 10 * 3600  # Monday 00:00
    month = budgets.window_of("month", T0)
    assert datetime.fromtimestamp(month[1], timezone.utc).date().isoformat() == "2027-01-01"
    budget = budgets.Budget.from_catalog("ws", {"cohort": "glacier-101", "unit": "gib-hours", "amount": 8})
    store.open(server("w", cohort="glacier-101", start=T0 - 3 * 3600))  # 3 h × 4 GiB = 12 GiB-hours
    with pytest.raises(budgets.BudgetExceeded) as e:
        budgets.check_start([budget], store, "ada", ["glacier-101"], "", now=T0)
    assert e.value.status_code == 403
    assert str(e.value) == ("Budget 'ws' (8 GiB-hours per member per day for cohort glacier-101) is used up: "
                            "12.00 GiB-hours used this day; it resets at 2026-12-08 00:00 UTC.")
    budgets.check_start([budget], store, "bo", ["glacier-101"], "", now=T0)  # per member: bo used nothing
    budgets.check_start([budget], store, "ada", [], "", now=T0)  # not a member: not theirs
    total = budgets.Budget.from_catalog("t", {"cohort": "glacier-101", "unit": "gib-hours", "amount": 8, "per": "total"})
    with pytest.raises(budgets.BudgetExceeded):
        budgets.check_start([total], store, "bo", ["glacier-101"], "", now=T0)  # shared: ada's counts for bo


def test_catalog_budgets_and_projects_are_checked_with_file_line_and_field(tmp_path, catalog_path):
    import yaml

    data = yaml.safe_load(open(catalog_path))
    data["projects"] = {"era5-grant": {"members": ["ada"]}}
    data["budgets"] = {"ok": {"project": "era5-grant", "unit": "gpu-hours", "amount": 10, "window": "month"},
                       "bad": {"user": "ada", "unit": "cpu-years", "amount": 3}}
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(CatalogError) as e:
        load_catalog(str(path))
    assert len(e.value.problems) == 1
    problem = e.value.problems[0]
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "cpu-years" in text)
    assert problem.startswith(f"{path}:{line}: budgets.bad.unit: 'cpu-years' is invalid: unknown unit")
    assert "core-hours, gib-hours, gpu-hours" in problem
    del data["budgets"]["bad"]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    catalog = load_catalog(str(path))
    assert catalog.projects["era5-grant"]["members"] == ["ada"] and catalog.budgets["ok"]["unit"] == "gpu-hours"


def test_projects_a_user_may_charge_and_clear_refusals():
    catalog = types.SimpleNamespace(projects={"era5": {"members": ["ada"]}, "other": {"members": ["bo"]}})
    assert projects.user_projects(catalog, "ada", ["glacier-101"]) == ["era5", "glacier-101"]
    assert projects.choose_project(catalog, "ada", ["glacier-101"], None) == "era5"
    assert projects.choose_project(catalog, "ada", ["glacier-101"], "glacier-101") == "glacier-101"
    assert projects.choose_project(catalog, "cy", [], "") == ""
    with pytest.raises(ChoiceError) as e:
        projects.choose_project(catalog, "ada", [], "nope")
    assert e.value.status_code == 400 and str(e.value) == "unknown project 'nope'; your projects: era5"
    with pytest.raises(ChoiceError) as e:
        projects.choose_project(catalog, "ada", [], "other")
    assert str(e.value) == "you do not belong to project 'other'; your projects: era5"
    assert 'name="project"' in projects.picker_html(["era5", "glacier-101"], "era5")
    assert projects.picker_html(["era5"]) == ""  # one project: no choice to make


@pytest.mark.parametrize("start,end,message", [
    ("2026-12-07", "2026-12-01", "the range is inverted: end 2026-12-01 is before start 2026-12-07"),
    ("1970-01-01", "2026-12-01", "is absurd"),
    ("yesterday", None, "start: 'yesterday' is not a date; use YYYY-MM-DD"),
])
def test_bad_date_ranges_are_named(start, end, message):
    with pytest.raises(reports.RangeError, match=message):
        reports.parse_range(start, end, now=T0)


def test_views_csv_sums_equal_the_page_totals_and_abuse_is_flagged(store):
    for i, user in enumerate(("ada", "bo", "cy")):
        store.open(server(f"r{i}", user=user, start=T0 - 5 * 3600, project="era5" if i else ""))
        store.sample(f"r{i}", cpu_seconds=3600 * (i + 1), now=T0)
    store.sample("r2", now=T0, last_activity=T0 - 5 * 3600, busy_since=T0 - 4 * 3600)  # cy: busy, nobody there
    begin, end = reports.parse_range("2026-12-01", "2026-12-07", now=T0)
    view = views.admin_view(store, begin, end, abuse_hours=2, now=T0)
    rows = list(csv.DictReader(io.StringIO(views.admin_csv(view))))
    for unit in ("core-hours", "gib-hours"):
        for section in ("user", "project"):
            assert sum(float(r[unit]) for r in rows if r["section"] == section) == pytest.approx(view["totals"][unit])
    assert view["totals"]["core-hours"] == pytest.approx(6)
    assert [a["user"] for a in view["abuse"]] == ["cy"]
    mine = views.user_view(store, types.SimpleNamespace(budgets={}, projects={}), "bo", now=T0)
    assert mine["week"]["core-hours"] == pytest.approx(2) and mine["by_project"][0]["project"] == "era5"


def test_the_daily_summary_line_is_logged_once_per_day(store, caplog):
    log = logging.getLogger("test-usage")
    store.open(server("d", start=T0))
    store.close("d", T0 + 3600)
    with caplog.at_level(logging.INFO, logger="test-usage"):
        reports.daily_summary(store, log, now=T0)  # the first: remembers the day
        reports.daily_summary(store, log, now=T0 + DAY)
        reports.daily_summary(store, log, now=T0 + DAY + 60)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["usage on 2026-12-07: 1 user(s), 1 record(s), 0.00 core-hours, 4.00 GiB-hours, 0.00 GPU-hours"]


def pod(name, labels, start, resources, phase="Running", finished=None, annotations=None, uid=None):
    status = {"phase": phase, "startTime": start}
    if finished:
        status["containerStatuses"] = [{"state": {"terminated": {"finishedAt": finished}}}]
    return {"metadata": {"name": name, "uid": uid or name, "labels": labels, "annotations": annotations or {}},
            "spec": {"containers": [{"resources": resources}]}, "status": status}


def test_records_from_pods_lifetimes_and_requests(store):
    pods = [
        pod("jupyter-ada", {"component": "singleuser-server", "oggmhub.org/environment": "slicer",
                            "oggmhub.org/size": "medium"}, "2026-12-07T08:00:00Z",
            {"requests": {"cpu": "1"}, "limits": {"cpu": "2", "memory": "8Gi", "nvidia.com/gpu": "1"}},
            annotations={"hub.jupyter.org/username": "ada"}),
        pod("dask-worker-1", {kubernetes.OWNER_LABEL: "jupyter-ada"}, "2026-12-07T09:00:00Z",
            {"requests": {"cpu": "500m"}, "limits": {"memory": "2Gi"}}, phase="Succeeded",
            finished="2026-12-07T09:30:00Z"),
        pod("task-x", {"oggmhub.org/task-run": "x", "oggmhub.org/user": "bo", "oggmhub.org/environment": "fiji"},
            "2026-12-07T09:00:00Z", {"requests": {"cpu": "1"}, "limits": {"memory": "4Gi"}}, phase="Failed",
            finished="2026-12-07T10:00:00Z"),
        pod("other", {"app": "something-else"}, "2026-12-07T09:00:00Z", {}),
    ]
    records = {r["kind"]: r for r in kubernetes.collect(store, pods, now=T0, projects={"ada": "era5"})}
    assert set(records) == {"server", "dask", "task"}
    assert records["dask"]["user"] == "ada" and records["task"]["user"] == "bo"
    rows = {r["kind"]: r for r in store.totals(T0 - DAY, T0 + DAY, by="kind", now=T0)}
    assert rows["server"]["gpu-hours"] == pytest.approx(2) and rows["server"]["gib-hours"] == pytest.approx(16)
    assert rows["dask"]["core-hours"] == pytest.approx(0.25) and rows["task"]["gib-hours"] == pytest.approx(4)
    kubernetes.collect(store, pods, now=T0 + 60)  # collected again: replaced, not added
    assert len(store.records()) == 3
    kubernetes.collect(store, [], now=T0 + 120)  # the notebook pod vanished: closed at its last sighting
    assert store.get(records["server"]["id"])["stop"] == T0 + 60


class FakeCgroup:
    def __init__(self):
        self.cpu, self.peak = 0.0, 0

    def cpu_seconds(self):
        return self.cpu

    def memory_peak(self):
        return self.peak


class Base:
    """What the mixin sits on: LocalEnvSpawner's lifecycle, reduced."""

    def __init__(self, config):
        self.config, self.log = config, logging.getLogger("test-usage")
        self.user = types.SimpleNamespace(name="ada", groups=[])
        self.name, self._log_name, self.user_options = "", "ada", {"project": "era5"}
        self.cpu_limit, self.mem_limit = 2, 4 * GIB
        self.catalog = types.SimpleNamespace(budgets={}, projects={})
        env = types.SimpleNamespace(name="oggm")
        self.choice = types.SimpleNamespace(environment=env, size=types.SimpleNamespace(name="small"), gpu=None)
        self._cgroup, self.running, self.stopped = FakeCgroup(), True, 0

    async def start(self):
        self._session = "marker1"
        return ("127.0.0.1", 1)

    async def poll(self):
        return None if self.running else 0

    async def stop(self, now=False):
        self.stopped += 1
        self.running = False
        self._remove_cgroup()

    def get_state(self):
        return {}

    def load_state(self, state):
        pass

    def _remove_cgroup(self):
        self._cgroup = None


class Spawner(UsageAccounting, Base):
    pass


def config(tmp_path, **usage):
    c = Config()
    c.Usage.db_path = str(tmp_path / "u.sqlite")
    for k, v in usage.items():
        setattr(c.Usage, k, v)
    return c


def test_the_mixin_records_a_server_once_across_a_hub_restart(tmp_path):
    c = config(tmp_path)
    sp = Spawner(c)
    asyncio.run(sp.start())
    sp._cgroup.cpu = 12.5
    asyncio.run(sp.poll())
    state = sp.get_state()
    again = Spawner(c)  # the hub restarted: the same server, found again from its state
    again.load_state(state)
    again._cgroup.cpu = 20.0
    asyncio.run(again.poll())
    asyncio.run(again.stop())
    store = usage_settings(c).store
    [record] = store.records()
    assert record["id"] == "server:ada::marker1" and record["project"] == "era5"
    assert record["cpu_seconds"] == 20.0 and record["stop"] is not None


def test_a_server_over_its_budget_is_warned_then_stopped_after_the_grace(tmp_path):
    c = config(tmp_path, grace_seconds=3600)
    sp = Spawner(c)
    sp.catalog.budgets = {"tiny": {"user": "ada", "unit": "core-hours", "amount": 0.001}}
    asyncio.run(sp.start())
    sp._cgroup.cpu = 10.0
    assert asyncio.run(sp.poll()) is None  # over: warned, still running (the grace)
    store = usage_settings(c).store
    assert store.get(sp._usage_id)["warned_at"] is not None and sp.stopped == 0
    assert "server stops at" in views.home_notice(store, "ada", 3600)
    c2 = config(tmp_path, grace_seconds=0)  # c.Usage.grace_seconds takes effect
    sp.config, sp._usage_settings = c2, None
    assert asyncio.run(sp.poll()) == 0 and sp.stopped == 1
    assert store.records()[0]["stop"] is not None


def test_usage_options_take_effect(tmp_path):
    c = config(tmp_path, enabled=False)
    sp = Spawner(c)
    asyncio.run(sp.start())
    assert sp._usage_id is None and not (tmp_path / "u.sqlite").exists()  # enabled=False: nothing recorded
    c = config(tmp_path, abuse_cpu_share=0.5)
    sp = Spawner(c)
    asyncio.run(sp.start())
    sp._usage_prev = (T0, 0.0)
    sp._cgroup.cpu = 1.2 * 3600  # 1.2 of 2 CPUs over the hour: busy at a share of 0.5, not at 0.9
    sp._usage_sample(T0 + 3600)
    assert usage_settings(c).store.get(sp._usage_id)["busy_since"] == T0
    assert Usage(config=config(tmp_path, abuse_hours=5)).abuse_hours == 5


def test_the_store_is_in_the_hubs_data_dir_unless_db_path_says_otherwise(tmp_path, monkeypatch):
    monkeypatch.delenv("OGGMHUB_USAGE_DB", raising=False)
    data = str(tmp_path / "data")
    assert Usage(config=Config()).store_in(data).path == str(tmp_path / "data" / "usage.sqlite")
    assert Usage(config=config(tmp_path)).store_in(data).path == str(tmp_path / "u.sqlite")  # c.Usage.db_path
    monkeypatch.setenv("OGGMHUB_USAGE_DB", str(tmp_path / "env.sqlite"))
    assert Usage(config=Config()).store_in(data).path == str(tmp_path / "env.sqlite")


def test_the_home_page_says_which_project_a_running_server_charges(catalog):
    from oggmhub.running_session import describe_server

    spawner = types.SimpleNamespace(active=True, choice=None, catalog=catalog,
                                    user_options={"profile": "oggm", "project": "era5-grant"})
    assert describe_server(types.SimpleNamespace(spawner=spawner))["project"] == "era5-grant"
    spawner.user_options = {"profile": "oggm"}
    assert describe_server(types.SimpleNamespace(spawner=spawner))["project"] is None
