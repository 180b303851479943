"""Usage of local tool-task runs: each run's own cgroup is read when the run ends, so a
batch of runs that burn CPU as the user's account shows that CPU time, one record per run,
charged to the user's running server's cohort and project; a budget used up refuses the
next run with its sentence.

Needs root, useradd and cgroups (the runner makes accounts and cgroups, as a root hub
does); the hub's server record is written directly (no hub runs here).
"""

import asyncio
import json
import os
import shutil
import time
import types

import pytest

from oggmhub.backends.local import cgroups, file_modes
from oggmhub.tasks.discovery import discover_dir
from oggmhub.tasks.paths import PathPolicy
from oggmhub.tasks.settings import TasksSettings
from oggmhub.usage import tasks as usage_tasks
from oggmhub.usage.store import UsageStore
from support.local_hub import account_prefix, accounts_folder, remove_accounts
from support.tasks import make_runner

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("useradd") or not os.path.exists("/usr/bin/python3")
    or cgroups.detect()[0] is None,
    reason="needs root, useradd, cgroups and /usr/bin/python3 (it creates system accounts and cgroups, as a root hub does)")

SPEC = ('<?xml version="1.0" encoding="utf-8"?><executable><title>Burn</title><description>t</description>'
        "<parameters><label>IO</label><description>files</description>"
        "<file><name>source</name><label>source</label><channel>input</channel><index>0</index><description>in"
        "</description></file><file><name>copy</name><label>copy</label><channel>output</channel><index>1</index>"
        "<description>out</description></file></parameters></executable>")
BURN = """import json, sys, time
while time.process_time() < 1.5:  # 1.5 CPU-seconds, however slow the shared cores are
    pass
with open(sys.argv[2], "w") as f:
    f.write(open(sys.argv[1]).read())
print(json.dumps({"cpu": time.process_time()}))
"""


@pytest.fixture
def setup(tmp_path, monkeypatch):
    prefix = account_prefix()
    monkeypatch.delenv("OGGMHUB_SHARED_ACCOUNT", raising=False)
    monkeypatch.setenv("OGGMHUB_USAGE_DB", str(tmp_path / "usage.sqlite"))
    with accounts_folder("oggmhub-usage-tasks-") as folder:
        data = os.path.join(folder, "data")
        os.makedirs(os.path.join(data, "homes"))
        file_modes.secure_data_dir(data)
        tasks_dir = os.path.join(folder, "tasks")
        os.makedirs(tasks_dir)
        for name, text in (("Burn.xml", SPEC), ("Burn.py", BURN)):
            with open(os.path.join(tasks_dir, name), "w") as f:
                f.write(text)
        os.chmod(tasks_dir, 0o755)
        settings = TasksSettings(data_dir=data, system_account_prefix=prefix,
                                 environment_python={"oggm": "/usr/bin/python3"}, run_timeout=120)
        tasks = {t.id: t for t in discover_dir("oggm", tasks_dir).values()}
        try:
            yield make_runner(tasks, settings, tmp_path), UsageStore(str(tmp_path / "usage.sqlite"))
        finally:
            remove_accounts(prefix)


def run(runner, user, n):
    async def go():
        policy = PathPolicy(user, runner.settings.homes_dir, runner.catalog.datasets, runner.settings.user_prefix,
                            runner.settings.data_dir, runner.settings.public_sources)
        ids = []
        for i in range(n):
            body = {"task": "oggm/Burn", "input-map": {"source": "input-str:in.txt"},
                    "output-map": {"copy": f"out{i}.txt"}, "input-str": {"in.txt": "x\n"}}
            ids.append((await runner.start(user, body, policy))["id"])
        while any(runner.store.get(user, i)["status"] in ("queued", "running") for i in ids):
            await asyncio.sleep(0.1)
        return [runner.store.get(user, i) for i in ids]
    return asyncio.run(go())


def test_a_batch_of_runs_is_charged_to_the_users_session_and_its_cpu_measured(setup):
    runner, store = setup
    store.open({"id": "server:alice::m1", "kind": "server", "user": "alice", "cohort": "glacier-101",
                "project": "era5-grant", "environment": "oggm", "size": "small", "start": time.time()})
    runner.prepare_account("alice")
    runs = run(runner, "alice", 2)
    assert [r["status"] for r in runs] == ["done", "done"], runs
    burnt = [json.loads(runner.store.log("alice", r["id"]).splitlines()[-1])["cpu"] for r in runs]
    records = {r["id"]: r for r in store.records() if r["kind"] == "task"}
    assert set(records) == {f"task:alice:{r['id']}" for r in runs}
    for run_record, cpu in zip(runs, burnt):
        record = records[f"task:alice:{run_record['id']}"]
        assert (record["cohort"], record["project"], record["environment"]) == ("glacier-101", "era5-grant", "oggm")
        assert record["stop"] is not None and record["mem_limit"] > 0
        # the interpreter's start-up is in the cgroup too: a little more than the tool measured
        assert cpu <= record["cpu_seconds"] <= cpu + 1.5, (record["cpu_seconds"], cpu)
    catalog = types.SimpleNamespace(budgets={"runs": {"project": "era5-grant", "unit": "core-hours", "amount": 0.0005}})
    why = usage_tasks.refusal(runner.settings.data_dir, catalog, "alice", ["glacier-101"])
    assert why.startswith("Budget 'runs' (0.0005 core-hours per member per day for project era5-grant) is used up: ")
    assert usage_tasks.refusal(runner.settings.data_dir, catalog, "bob", []) is None  # another user, charging no project
