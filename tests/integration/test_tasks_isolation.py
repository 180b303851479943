"""Tool runs on a root local hub cannot reach beyond their user (issue 28's T12, T14, T20/T21, X01).

The service's own local runner (LocalRunner.start: checks, account, cgroup, execute in a
thread) runs real tools as real system accounts (useradd, a distinctive prefix, removed
afterwards) in real cgroups (v1 here); each test plays the attack and asserts it fails,
and that it would have worked without the guard where that can be shown. The tools run
with Debian's /usr/bin/python3 (every account can run it). The hub-level cases (T10, T15,
T23) are in tests/test_tasks_isolation_hub.py.
"""

import asyncio
import http.server
import json
import os
import pathlib
import shutil
import subprocess
import threading
import time

import psutil
import pytest

from oggmhub.backends.local import cgroups, file_modes, system_users
from oggmhub.tasks.discovery import discover_dir
from oggmhub.tasks.parameters import TaskInputError
from oggmhub.tasks.paths import PathPolicy
from oggmhub.tasks.settings import TasksSettings
from oggmhub.user_folders import home_path
from support.local_hub import account_prefix, accounts_folder, remove_accounts
from support.tasks import make_runner

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("useradd") or not os.path.exists("/usr/bin/python3")
    or cgroups.detect()[0] is None,
    reason="needs root, useradd, cgroups and /usr/bin/python3 (it creates system accounts and cgroups, as a root hub does)")

PYTHON = "/usr/bin/python3"


def spec(title, inputs=("source",), outputs=("copy",)):
    files = "".join(f"<file><name>{n}</name><label>{n}</label><channel>input</channel><index>{i}</index>"
                    f"<description>in</description></file>" for i, n in enumerate(inputs))
    files += "".join(f"<file><name>{n}</name><label>{n}</label><channel>output</channel>"
                     f"<index>{len(inputs) + i}</index><description>out</description></file>"
                     for i, n in enumerate(outputs))
    return (f'<?xml version="1.0" encoding="utf-8"?><executable><title>{title}</title><description>t</description>'
            f"<parameters><label>IO</label><description>files</description>{files}</parameters></executable>")


TOOLS = {
    # copies its input; says which cgroups it is in and whether the user's site ran
    "Copy": """import json, os, sys
data = open(sys.argv[1]).read()
with open(sys.argv[2], "w") as f:
    f.write(data)
print(json.dumps({"uid": os.getuid(), "cgroup": open("/proc/self/cgroup").read(), "path": sys.path,
                  "tmp": os.environ["TMPDIR"]}))
""",
    # leaves a double-forked, setsid child behind (its pid in the output), and a "pid" file naming a root process
    "Leave": """import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv("/bin/sleep", ["sleep", "300"])
    os._exit(0)
os.wait()
time.sleep(0.5)
child = [p for p in os.listdir("/proc") if p.isdigit() and open(f"/proc/{p}/cmdline").read() == "sleep\\x00300\\x00"
         and os.stat(f"/proc/{p}").st_uid == os.getuid()]
for where in (os.getcwd(), os.environ["HOME"]):
    with open(os.path.join(where, "pid"), "w") as f:
        f.write(open(sys.argv[1]).read())
with open(sys.argv[2], "w") as f:
    f.write(" ".join(child))
time.sleep(float(os.environ.get("LINGER", "0")))
""",
    # starts as many sleeping children as it can, up to 200
    "Forks": """import subprocess, sys
children, error = [], ""
try:
    for _ in range(200):
        children.append(subprocess.Popen(["/bin/sleep", "60"]))
except OSError as e:
    error = str(e)
with open(sys.argv[2], "w") as f:
    f.write(f"{len(children)} {error}")
""",
}


@pytest.fixture(scope="module")
def hub_folder():
    prefix = account_prefix()
    with accounts_folder("oggmhub-task-isolation-") as folder:
        data = os.path.join(folder, "data")
        homes = os.path.join(data, "homes")
        os.makedirs(homes)
        file_modes.secure_data_dir(data)
        tasks_dir = os.path.join(folder, "tasks")
        os.makedirs(tasks_dir)
        for name, code in TOOLS.items():
            with open(os.path.join(tasks_dir, f"{name}.xml"), "w") as f:
                f.write(spec(name))
            with open(os.path.join(tasks_dir, f"{name}.py"), "w") as f:
                f.write(code)
        with open(os.path.join(tasks_dir, "Macro.ijm"), "w") as f:
            f.write('#@ File (label="In", style="open") source\n#@ File (label="Out", style="save") copy\n'
                    'print("macro ran");\n')
        os.chmod(tasks_dir, 0o755)
        drop = os.path.join(folder, "drop")  # where an attack that worked would leave its mark
        os.makedirs(drop)
        os.chmod(drop, 0o1777)
        try:
            yield {"drop": drop, "folder": folder, "data": data, "homes": homes, "prefix": prefix,
                   "tasks": {t.id: t for t in discover_dir("oggm", tasks_dir).values()}}
        finally:
            remove_accounts(prefix)


@pytest.fixture
def runner(hub_folder, tmp_path, monkeypatch):
    monkeypatch.delenv("OGGMHUB_SHARED_ACCOUNT", raising=False)
    settings = TasksSettings(data_dir=hub_folder["data"], system_account_prefix=hub_folder["prefix"],
                             environment_python={"oggm": PYTHON}, pids_max=40, run_timeout=60)
    assert settings.system_accounts
    return make_runner(hub_folder["tasks"], settings, tmp_path)


def account_of(runner, user):
    runner.prepare_account(user)
    return system_users.lookup(user, system_users.hub_id(runner.settings.data_dir), runner.settings.system_account_prefix)


def home_file(runner, user, rel, text="input\n"):
    account = account_of(runner, user)
    path = os.path.join(home_path(runner.settings.homes_dir, user), rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    file_modes.give(os.path.dirname(path), account)
    return path


def run(runner, user, task, input_map, output_map, texts=None, cancel_after=None):
    """Start a run the way the service does and wait for its end; its final record."""
    async def go():
        policy = PathPolicy(user, runner.settings.homes_dir, runner.catalog.datasets, runner.settings.user_prefix,
                            runner.settings.data_dir, runner.settings.public_sources)
        body = {"task": task, "input-map": input_map, "output-map": output_map}
        if texts:
            body["input-str"] = texts
        record = await runner.start(user, body, policy)
        if cancel_after is not None:
            deadline = time.monotonic() + 30
            while runner.store.get(user, record["id"])["status"] == "queued" and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await asyncio.sleep(cancel_after)
            await runner.cancel(user, runner.store.get(user, record["id"]))
        while runner.store.get(user, record["id"])["status"] in ("queued", "running"):
            await asyncio.sleep(0.1)
        return runner.store.get(user, record["id"])
    return asyncio.run(go())


def said(runner, record):
    return json.loads(runner.store.log(record["user"], record["id"]).splitlines()[-1])


def gone(pid):
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE  # killed, not reaped by this machine's pid 1
    except psutil.NoSuchProcess:
        return True


# --- T12: a clean interpreter, the run's cgroup, nothing left behind ---------------------------


def test_the_tool_runs_as_the_account_in_its_runs_cgroup_with_a_private_tmpdir(runner):
    home_file(runner, "alice", "in.txt")
    record = run(runner, "alice", "oggm/Copy", {"source": "in.txt"}, {"copy": "out.txt"})
    assert record["status"] == "done", record
    facts = said(runner, record)
    assert facts["uid"] == account_of(runner, "alice").uid
    name = f"--task-{record['id']}"
    lines = dict(line.split(":", 2)[1:] for line in facts["cgroup"].splitlines())
    assert name in lines["memory"] and name in lines["pids"] and name in lines["cpu"] and name in lines["cpuacct"], facts["cgroup"]
    assert facts["tmp"].startswith("/tmp/oggmhub-task-") and not os.path.exists(facts["tmp"])  # the run's own, removed
    assert not [p for p in facts["path"] if p in ("", ".") or p.startswith(os.path.dirname(facts["tmp"]))]
    cgroup_dir = os.path.join(cgroups.default_root(), "pids", cgroups.PREFIX, lines["pids"].split("/")[-1])
    assert not os.path.exists(cgroup_dir)  # removed with the run


def test_a_python_file_of_the_same_name_in_the_work_folder_is_never_imported(runner, hub_folder, tmp_path):
    """input-str files land in the tool's working folder: one named oggmhub.py (or json.py)
    is not imported by the script runner (``python -I``)."""
    marker = os.path.join(hub_folder["drop"], "imported")
    evil = f"open({str(marker)!r}, 'w').write('imported')\n"
    home_file(runner, "alice", "m.txt")
    record = run(runner, "alice", "oggm/Macro", {"source": "m.txt"}, {"copy": "macro-out.txt"},
                 texts={"oggmhub.py": evil, "json.py": evil, "sitecustomize.py": evil})
    log = runner.store.log("alice", record["id"])
    assert "-I" in log.splitlines()[0] and "oggmhub: running" in log, log  # the script runner itself ran
    assert not os.path.exists(marker)
    # the same folder without -I does import it: the guard is what holds
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "json.py").write_text(evil)
    subprocess.run([PYTHON, "-c", "import json"], cwd=folder)
    assert os.path.exists(marker)


def test_the_users_site_packages_pth_files_do_not_run(runner, hub_folder):
    marker = os.path.join(hub_folder["drop"], "pth-ran")
    account = account_of(runner, "alice")
    site = subprocess.run([PYTHON, "-c", "import site; print(site.USER_SITE)"], capture_output=True, text=True,
                          env={"HOME": home_path(runner.settings.homes_dir, "alice")}).stdout.strip()
    os.makedirs(site, exist_ok=True)
    with open(os.path.join(site, "evil.pth"), "w") as f:
        f.write(f"import os; open({str(marker)!r}, 'w').write(str(os.getuid()))\n")
    file_modes.give(os.path.join(home_path(runner.settings.homes_dir, "alice"), ".local"), account)
    home_file(runner, "alice", "in-pth.txt")
    record = run(runner, "alice", "oggm/Copy", {"source": "in-pth.txt"}, {"copy": "out-pth.txt"})
    assert record["status"] == "done", record
    assert not os.path.exists(marker)
    # the account's own python without -I runs it: the .pth is real
    subprocess.run([PYTHON, "-c", "pass"], user=account.uid, group=account.gid, cwd="/",
                   env={"HOME": home_path(runner.settings.homes_dir, "alice")})
    assert open(marker).read() == str(account.uid)


def test_a_child_the_tool_left_behind_dies_with_the_run_and_no_user_pid_file_is_trusted(runner):
    root_sleeper = subprocess.Popen(["/bin/sleep", "300"])  # a root process a user would like killed
    try:
        home_file(runner, "alice", "pid-in.txt", text=str(root_sleeper.pid))
        record = run(runner, "alice", "oggm/Leave", {"source": "pid-in.txt"}, {"copy": "left.txt"})
        assert record["status"] == "done", record
        left = [int(p) for p in open(os.path.join(home_path(runner.settings.homes_dir, "alice"), "left.txt")).read().split()]
        assert len(left) == 1  # the double-forked child was running when the tool ended
        assert gone(left[0])
        # cancelled while the tool and its child run: both end, the root process named in "pid" files stays
        os.environ["LINGER"] = "60"
        try:
            record = run(runner, "alice", "oggm/Leave", {"source": "pid-in.txt"}, {"copy": "left2.txt"}, cancel_after=1.5)
        finally:
            del os.environ["LINGER"]
        assert record["status"] == "cancelled", record
        mine = [p for p in psutil.process_iter(["cmdline", "uids"])
                if p.info["uids"] and p.info["uids"].real == account_of(runner, "alice").uid
                and p.status() != psutil.STATUS_ZOMBIE]
        assert mine == []
        assert root_sleeper.poll() is None
    finally:
        root_sleeper.kill()
        root_sleeper.wait()


def test_a_tools_processes_stop_at_pids_max(runner):
    home_file(runner, "alice", "f.txt")
    record = run(runner, "alice", "oggm/Forks", {"source": "f.txt"}, {"copy": "forks.txt"})
    count, _, error = open(os.path.join(home_path(runner.settings.homes_dir, "alice"), "forks.txt")).read().partition(" ")
    assert int(count) < runner.settings.pids_max and "Resource temporarily unavailable" in error, (count, error)
    assert record["status"] == "done"


# --- T14: URL inputs with the user's rights -------------------------------------------------------


class _Server(http.server.BaseHTTPRequestHandler):
    seen = []

    def do_GET(self):  # noqa: N802
        self.seen.append((self.path, self.headers.get("Authorization")))
        if self.headers.get("Authorization") != "Bearer service-secret":
            self.send_response(401)
            self.end_headers()
            return
        body = f"private bytes of {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET  # noqa: N815

    def log_message(self, *args):
        pass


@pytest.fixture
def private_web():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Server.seen.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_url_input_is_fetched_without_the_services_credentials(runner, private_web, hub_folder, tmp_path):
    import fsspec

    options = {"http": {"client_kwargs": {"headers": {"Authorization": "Bearer service-secret"}}}}
    runner.settings.storage_options = options
    assert fsspec.filesystem("http", **options["http"]).cat(f"{private_web}/other/secret.txt") == \
        b"private bytes of /other/secret.txt"  # the service's credentials do read it
    _Server.seen.clear()
    record = run(runner, "alice", "oggm/Copy", {"source": f"{private_web}/other/secret.txt"}, {"copy": "stolen.txt"})
    assert record["status"] == "failed" and "could not read input source" in record["error"], record
    assert _Server.seen and all(auth is None for _, auth in _Server.seen), _Server.seen
    assert not os.path.exists(os.path.join(home_path(runner.settings.homes_dir, "alice"), "stolen.txt"))
    # a source the admin marks public is read with them (c.TasksSettings.public_sources)
    runner.settings.public_sources = [f"{private_web}/public/"]
    record = run(runner, "alice", "oggm/Copy", {"source": f"{private_web}/public/a.txt"}, {"copy": "public.txt"})
    assert record["status"] == "done", record
    assert open(os.path.join(home_path(runner.settings.homes_dir, "alice"), "public.txt")).read() == \
        "private bytes of /public/a.txt"


def test_bucket_inputs_outside_the_users_prefix_are_anonymous():
    from oggmhub.tasks.paths import anonymous_options

    policy = PathPolicy("alice", "/h", {}, "gs://results/users/{username}/", public_sources=["gs://open-data"])
    service = {"gs": {"endpoint_url": "http://e", "token": "/etc/sa.json"},
               "s3": {"key": "K", "secret": "S", "client_kwargs": {"endpoint_url": "http://s3", "region_name": "r"}}}
    plan = lambda text: policy.input("i", text).to_plan({}, service)["options"]  # noqa: E731
    assert plan("gs://results/users/bob/x.nc") == {"endpoint_url": "http://e", "token": "anon"}
    assert plan("gs://results/users/alice/x.nc") == service["gs"]  # the user's own prefix
    assert plan("gs://open-data/x.nc") == service["gs"]
    assert plan("gs://open-database/x.nc")["token"] == "anon"  # a prefix is a folder, not a string start
    assert plan("s3://b/x") == {"anon": True, "client_kwargs": {"endpoint_url": "http://s3", "region_name": "r"}}
    assert anonymous_options("https", {"headers": {"Authorization": "x"}}) == {}


# --- T20/T21: one home per user, never another's -----------------------------------------------


def test_a_dotted_username_reads_and_writes_its_own_jupyter_home(runner):
    home = home_path(runner.settings.homes_dir, "a.b")
    assert os.path.basename(home) == "a-b---2e7336dc"  # the spawner's folder for a.b
    home_file(runner, "a.b", "in.txt", text="a.b's\n")
    record = run(runner, "a.b", "oggm/Copy", {"source": "in.txt"}, {"copy": "results/out.txt"})
    assert record["status"] == "done", record
    out = os.path.join(home, "results", "out.txt")
    assert open(out).read() == "a.b's\n" and os.stat(out).st_uid == account_of(runner, "a.b").uid
    assert not os.path.exists(os.path.join(runner.settings.homes_dir, "a.b"))
    assert runner.run_as_for("a.b")["home"] == home


def test_a_lookalike_username_cannot_take_over_anothers_home(runner):
    """T20: signing up as adv.vic's folder name (``adv-vic---<hash>``) and posting a run
    used to chown adv.vic's home to the newcomer: the folder is now the newcomer's own slug,
    and a folder that belongs to another account is never adopted."""
    from oggmhub.tasks import pages
    from oggmhub.user_folders import folder_name

    victim_file = home_file(runner, "adv.vic", "diary.txt", text="adv.vic's own\n")
    victim_home = os.path.dirname(victim_file)
    victim = account_of(runner, "adv.vic")
    lookalike = folder_name("adv.vic")  # 'adv-vic---ba06fd82': the victim's folder name as a username
    assert os.path.basename(victim_home) == lookalike
    home_file(runner, lookalike, "mine.txt")
    record = run(runner, lookalike, "oggm/Copy", {"source": "mine.txt"}, {"copy": "copy.txt"})
    assert record["status"] == "done", record
    assert home_path(runner.settings.homes_dir, lookalike) != victim_home
    assert (os.stat(victim_home).st_uid, os.stat(victim_file).st_uid) == (victim.uid, victim.uid)
    assert sorted(os.listdir(victim_home)) == ["diary.txt"]
    policy = PathPolicy(lookalike, runner.settings.homes_dir, runner.catalog.datasets)
    runner.catalog.datasets.clear()  # the picker's home part only
    assert pages.pickable_files(policy, runner)["home"] == ["home:copy.txt", "home:mine.txt"]
    # a user whose folder already exists under another account (left by an earlier hub) gets it refused
    stale = home_path(runner.settings.homes_dir, "carl")
    os.makedirs(stale)
    with open(os.path.join(stale, "notes.txt"), "w") as f:
        f.write("adv.vic's\n")
    file_modes.give(stale, victim)
    with pytest.raises(TaskInputError, match="the home folder 'carl' belongs to another account"):
        runner.check_home("carl")  # what the service asks before the file picker or a run
    with pytest.raises(TaskInputError, match="belongs to another account"):
        run(runner, "carl", "oggm/Copy", {"source": "notes.txt"}, {"copy": "copy.txt"})
    assert os.stat(stale).st_uid == victim.uid and os.stat(os.path.join(stale, "notes.txt")).st_uid == victim.uid


def test_run_cgroups_a_stopped_service_left_are_ended_by_the_next(runner, hub_folder):
    from oggmhub.tasks import isolation

    left = isolation.run_cgroup(runner.settings.data_dir, "alice", "deadbeef0001", 1, 64 << 20, 10)
    other_hub = isolation.run_cgroup(hub_folder["folder"] + "/other", "alice", "deadbeef0002", 1, 64 << 20, 10)
    orphan = subprocess.Popen(["/bin/sleep", "300"], preexec_fn=isolation.preexec(left, None))
    try:
        assert left.pids() == [orphan.pid]
        make_runner(hub_folder["tasks"], runner.settings, pathlib.Path(hub_folder["folder"], "again"))  # restarted
        assert orphan.wait(timeout=10) == -9 and not any(os.path.exists(d) for d in left.dirs.values())
        assert all(os.path.exists(d) for d in other_hub.dirs.values())  # another hub's runs are not this one's
    finally:
        orphan.kill()
        other_hub.end()
