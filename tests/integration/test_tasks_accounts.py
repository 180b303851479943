"""Tool tasks run as the user's own system account on a root local hub (accounts mode).

With real unix accounts (useradd, a distinctive prefix per run, removed afterwards) and
the service's own planning (LocalRunner.check, prepare_account, plan, run_as_for), each plan is executed
the way a Dask worker executes it (oggmhub.tasks.execution.execute, as root). A path
check at submission cannot be the only guard: a user may swap a checked file or folder
for a link before the run reads or writes it, so each test below does exactly that and
asserts that the kernel refuses it, the account being the one that reads and writes.
The tool runs with Debian's /usr/bin/python3 (every account can run it; a pyenv Python
under /root could not).
"""

import asyncio
import json
import os
import pathlib
import shutil
import stat

import fsspec
import pytest
from traitlets import TraitError

from oggmhub.backends.local import file_modes, system_users
from oggmhub.tasks import execution
from oggmhub.tasks.discovery import discover_dir
from oggmhub.tasks.parameters import TaskInputError
from oggmhub.tasks.settings import TasksSettings
from support.local_hub import account_prefix, accounts_folder, remove_accounts
from support.tasks import make_runner

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("useradd") or not os.path.exists("/usr/bin/python3"),
    reason="needs root, useradd and /usr/bin/python3 (it creates system accounts, as a root hub does)")

SPEC = """<?xml version="1.0" encoding="utf-8"?>
<executable>
  <title>Copy</title><description>Copies its input and says who it ran as</description>
  <parameters><label>IO</label><description>files</description>
    <file><name>source</name><label>Source</label><channel>input</channel><index>0</index><description>in</description></file>
    <file><name>copy</name><label>Copy</label><channel>output</channel><index>1</index><description>out</description></file>
  </parameters>
</executable>
"""

TOOL = """import json, os, sys
data = open(sys.argv[1]).read()
with open(sys.argv[2], "w") as f:
    f.write(data)
print(json.dumps({"uid": os.getuid(), "home": os.environ["HOME"], "user": os.environ["USER"],
                  "secrets": sorted(k for k in os.environ if "TOKEN" in k or "SECRET" in k),
                  "lang": os.environ.get("LANG")}))
"""


@pytest.fixture(scope="module")
def hub_folder():
    prefix = account_prefix()
    with accounts_folder("oggmhub-task-accounts-") as folder:
        data = os.path.join(folder, "data")
        homes = os.path.join(data, "homes")
        os.makedirs(homes)
        file_modes.secure_data_dir(data)
        accounts = {}
        try:
            for name in ("alice", "bruno"):
                home = os.path.join(homes, name)
                accounts[name] = system_users.ensure(name, system_users.hub_id(data), home, prefix)
                file_modes.private_dir(home, accounts[name])
            secret = os.path.join(homes, "bruno", "secret.txt")
            with open(secret, "w") as f:
                f.write("bruno's own\n")
            file_modes.give(secret, accounts["bruno"])
            os.chmod(secret, 0o600)
            tasks_dir = os.path.join(folder, "tasks")
            os.makedirs(tasks_dir)
            for name, text in (("Copy.xml", SPEC), ("Copy.py", TOOL)):
                with open(os.path.join(tasks_dir, name), "w") as f:
                    f.write(text)
            os.chmod(tasks_dir, 0o755)
            yield {"folder": folder, "data": data, "homes": homes, "prefix": prefix, "accounts": accounts,
                   "tasks": {t.id: t for t in discover_dir("oggm", tasks_dir).values()}}
        finally:
            remove_accounts(prefix)


@pytest.fixture
def runner(hub_folder, tmp_path, monkeypatch):
    monkeypatch.delenv("OGGMHUB_SHARED_ACCOUNT", raising=False)
    settings = TasksSettings(data_dir=hub_folder["data"], system_account_prefix=hub_folder["prefix"])
    assert settings.system_accounts  # the default of a root service without --shared-account
    return make_runner(hub_folder["tasks"], settings, tmp_path)


def alice_file(hub_folder, rel, text="alice's input\n"):
    path = os.path.join(hub_folder["homes"], "alice", rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    file_modes.give(path, hub_folder["accounts"]["alice"])
    return path


def planned(runner, input_map, output_map):
    """The plan of alice's run, as the service makes it (checks included)."""
    from oggmhub.tasks.paths import PathPolicy

    policy = PathPolicy("alice", runner.settings.homes_dir, runner.catalog.datasets, "", runner.settings.data_dir)
    body = {"task": "oggm/Copy", "input-map": input_map, "output-map": output_map}
    task, values, locations = runner.check("alice", body, policy)
    record = runner.store.save(runner.record("alice", task, body, values, locations))
    return runner.plan(record, task, locations, "/usr/bin/python3")


def test_a_run_executes_as_the_users_account_and_its_output_is_theirs(hub_folder, runner, monkeypatch):
    alice = hub_folder["accounts"]["alice"]
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "the-service-token")  # what the hub gives its service
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "the-service-bucket-key")
    monkeypatch.setenv("LANG", "C.UTF-8")
    alice_file(hub_folder, "in.txt")
    plan = planned(runner, {"source": "in.txt"}, {"copy": "results/copy.txt"})
    assert plan["run_as"]["uid"] == alice.uid and plan["run_as"]["name"] == alice.name
    result = execution.execute(plan)
    assert result["status"] == "done", result
    out = os.path.join(hub_folder["homes"], "alice", "results", "copy.txt")
    assert open(out).read() == "alice's input\n"
    assert (os.stat(out).st_uid, os.stat(os.path.dirname(out)).st_uid) == (alice.uid, alice.uid)  # hers to edit
    said = json.loads(open(os.path.join(plan["run_dir"], execution.LOG)).read().splitlines()[-1])
    assert said == {"uid": alice.uid, "home": os.path.join(hub_folder["homes"], "alice"), "user": alice.name,
                    "secrets": [], "lang": "C.UTF-8"}  # the service's token and keys stay with it
    assert stat.S_IMODE(os.stat(runner.store.root).st_mode) == 0o700  # records: no account reads them
    assert not [n for n in os.listdir(plan["run_dir"]) if n.startswith("work") or n == "upload"]


def test_an_input_swapped_for_a_link_to_another_home_is_refused_by_the_kernel(hub_folder, runner):
    path = alice_file(hub_folder, "swap-in.txt")
    plan = planned(runner, {"source": "swap-in.txt"}, {"copy": "stolen.txt"})  # checked: a file of hers
    os.unlink(path)
    os.symlink(os.path.join(hub_folder["homes"], "bruno", "secret.txt"), path)  # then swapped, as a race would
    result = execution.execute(plan)
    assert result["status"] == "failed"
    assert "PermissionError" in result["error"] and "swap-in.txt" in result["error"]
    assert not os.path.exists(os.path.join(hub_folder["homes"], "alice", "stolen.txt"))


def test_an_output_folder_swapped_for_a_link_into_another_home_writes_nothing_there(hub_folder, runner):
    alice_file(hub_folder, "in2.txt")
    folder = os.path.join(hub_folder["homes"], "alice", "drop")
    os.makedirs(folder)
    file_modes.give(folder, hub_folder["accounts"]["alice"])
    plan = planned(runner, {"source": "in2.txt"}, {"copy": "drop/planted.txt"})
    os.rmdir(folder)
    os.symlink(os.path.join(hub_folder["homes"], "bruno"), folder)
    before = sorted(os.listdir(os.path.join(hub_folder["homes"], "bruno")))
    result = execution.execute(plan)
    assert result["status"] == "failed" and result["error"].startswith("output copy: could not write"), result
    assert "Permission denied" in result["error"]
    assert sorted(os.listdir(os.path.join(hub_folder["homes"], "bruno"))) == before


def test_a_bucket_output_is_read_through_the_account(hub_folder, runner):
    """An output bound for a bucket (an in-memory one here) is read by the account: the
    user's tool leaving a link to a root-only file uploads nothing."""
    alice_file(hub_folder, "in3.txt")
    plan = planned(runner, {"source": "in3.txt"}, {"copy": "x.txt"})
    plan["outputs"]["copy"] = {"kind": "url", "url": "memory://results/alice/x.txt"}
    assert execution.execute(plan)["status"] == "done"
    assert fsspec.filesystem("memory").cat("/results/alice/x.txt") == b"alice's input\n"
    hub_secret = os.path.join(hub_folder["data"], "jupyterhub_cookie_secret")
    with open(hub_secret, "w") as f:
        f.write("root's alone\n")
    os.chmod(hub_secret, 0o600)
    plan = planned(runner, {"source": "in3.txt"}, {"copy": "y.txt"})
    plan["outputs"]["copy"] = {"kind": "url", "url": "memory://results/alice/y.txt"}
    plan["command"] = ["/bin/sh", "-c", f'ln -s {hub_secret} "$2"', "sh"]  # the tool plants a link as its output
    result = execution.execute(plan)
    assert result["status"] == "failed" and "could not read the output" in result["error"], result
    assert not fsspec.filesystem("memory").exists("/results/alice/y.txt")


def test_a_users_first_run_makes_their_account_and_home_as_a_first_start_would(hub_folder, runner):
    from oggmhub.tasks.paths import PathPolicy

    hub = system_users.hub_id(hub_folder["data"])
    policy = PathPolicy("carol", runner.settings.homes_dir, runner.catalog.datasets, "", runner.settings.data_dir)
    with pytest.raises(TaskInputError, match="oggm/Nope"):  # a refused request makes no account
        asyncio.run(runner.start("carol", {"task": "oggm/Nope"}, policy))
    assert system_users.lookup("carol", hub, hub_folder["prefix"]) is None
    with pytest.raises(TaskInputError, match="'carol' has no system account"):
        runner.run_as_for("carol")
    home = os.path.join(hub_folder["homes"], "carol")
    runner.prepare_account("carol")  # what an accepted request does before its record
    run_as = runner.run_as_for("carol")
    account = system_users.lookup("carol", hub, hub_folder["prefix"])
    assert account is not None and run_as["uid"] == account.uid and run_as["home"] == home
    assert run_as["name"] == system_users.account_name("carol", hub_folder["prefix"])
    assert (os.stat(home).st_uid, stat.S_IMODE(os.stat(home).st_mode)) == (account.uid, 0o700)
    runner.prepare_account("carol")
    assert runner.run_as_for("carol")["uid"] == account.uid  # the same account every time, never another


def test_the_account_options_take_effect(hub_folder, monkeypatch):
    monkeypatch.setenv("OGGMHUB_SHARED_ACCOUNT", "1")
    assert not TasksSettings().system_accounts  # a --shared-account hub: runs are the service's
    monkeypatch.delenv("OGGMHUB_SHARED_ACCOUNT")
    monkeypatch.setenv("OGGMHUB_ACCOUNT_PREFIX", hub_folder["prefix"])
    settings = TasksSettings(data_dir=hub_folder["data"])
    assert settings.system_accounts and settings.system_account_prefix == hub_folder["prefix"]
    runner = make_runner(hub_folder["tasks"], settings, pathlib.Path(hub_folder["folder"], "b"))
    assert runner.run_as_for("bruno")["uid"] == hub_folder["accounts"]["bruno"].uid
    other_prefix = hub_folder["prefix"] + "z-"  # removed with the test's accounts
    other = make_runner(hub_folder["tasks"], TasksSettings(data_dir=hub_folder["data"], system_account_prefix=other_prefix),
                        pathlib.Path(hub_folder["folder"], "c"))
    home = os.path.join(hub_folder["homes"], "bruno")
    with pytest.raises(TaskInputError, match="the home folder 'bruno' belongs to another account"):
        other.prepare_account("bruno")  # another prefix: another account, which never adopts bruno's home
    assert other.run_as_for("bruno")["name"] == other_prefix + "bruno"
    assert os.stat(home).st_uid == hub_folder["accounts"]["bruno"].uid
    with pytest.raises(TraitError, match="system_account_prefix 'Bad Prefix' is not allowed: 1-16 characters"):
        TasksSettings(system_account_prefix="Bad Prefix")
