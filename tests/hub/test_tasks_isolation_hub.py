"""Tool tasks on a real root hub with a system account per user (accounts mode): issue 28's
T10 (no task listener a user could reach as root), T15 (an output download never follows a
link the user flips), T21 (a dotted username's output lands in its Jupyter home) and T23
(a member of a closed cohort cannot run).

The tools run with Debian's /usr/bin/python3 (``c.TasksSettings.environment_python``;
every account can run it, while root's pyenv Python cannot be); inputs are input-str texts,
so no home needs preparing. Cohorts are made and closed with ``oggmhub cohort``.
"""

import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import psutil
import pytest
import requests

from oggmhub.cohorts.model import now_utc
from oggmhub.session import tasks as session_tasks
from oggmhub.session.tasks import TaskError
from oggmhub.user_folders import home_path
from support.local_hub import REPO, LocalHub, accounts_folder

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("useradd") or not os.path.exists("/usr/bin/python3"),
    reason="needs root, useradd and /usr/bin/python3 (a root hub with a system account per user)")

COPY_XML = """<?xml version="1.0" encoding="utf-8"?>
<executable><category>Testing</category><title>Copy</title><description>Copy a file, slowly if asked</description>
<parameters><label>IO</label><description>io</description>
<double><name>seconds</name><longflag>--seconds</longflag><label>Seconds</label><description>s</description>
<default>0</default></double>
<file><name>source</name><label>In</label><channel>input</channel><index>0</index><description>i</description></file>
<file><name>copy</name><label>Out</label><channel>output</channel><index>1</index><description>o</description></file>
</parameters></executable>
"""
COPY_PY = """import shutil, sys, time
args = sys.argv[1:]
time.sleep(float(args[args.index("--seconds") + 1]) if "--seconds" in args else 0)
shutil.copyfile(args[-2], args[-1])
"""
NOW = now_utc()
OPEN = ["--start", (NOW - timedelta(hours=1)).isoformat(), "--end", (NOW + timedelta(days=3)).isoformat()]


@pytest.fixture(scope="module")
def hub():
    with accounts_folder("oggmhub-tasks-isolation-hub-") as folder:
        tasks = os.path.join(folder, "images", "oggm", "tasks")
        os.makedirs(tasks)
        for name, text in (("Copy.xml", COPY_XML), ("Copy.py", COPY_PY)):
            with open(os.path.join(tasks, name), "w") as f:
                f.write(text)
        for path in (os.path.join(folder, "images"), os.path.dirname(tasks), tasks):
            os.chmod(path, 0o755)
        config = os.path.join(folder, "tasks_config.py")
        with open(config, "w") as f:
            f.write("c.TasksSettings.environment_python = {'oggm': '/usr/bin/python3'}\n")
        hub = LocalHub(os.path.join(folder, "data"), mode="accounts", images_dir=os.path.join(folder, "images"),
                       env={"OGGMHUB_TASKS_CONFIG": config})
        hub.start()
        hub.tasks_url = f"{hub.url}/services/tasks/"
        try:
            yield hub
        finally:
            hub.stop(servers=True)


def client(hub, name):
    session = hub.new_user(name)
    r = hub.api(session, "POST", f"/users/{name}/tokens", json={"scopes": ["access:services!service=tasks"], "note": "t"})
    assert r.status_code == 201, r.text
    c = session_tasks.Client(hub.tasks_url, r.json()["token"])
    c.home = home_path(os.path.join(hub.data_dir, "homes"), name)
    return c


def copy(c, out, text="hello\n", seconds=0):
    return c.start("oggm/Copy", {"seconds": seconds}, input_map={"source": "input-str:in.txt"},
                   output_map={"copy": out}, input_str={"in.txt": text})


def tree(hub):
    root = psutil.Process(hub.proc.pid)
    return [root, *root.children(recursive=True)]


def listening_ports(processes):
    ports = set()
    for proc in processes:
        try:
            conns = proc.net_connections(kind="tcp")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        ports.update(c.laddr.port for c in conns if c.status == psutil.CONN_LISTEN)
    return ports


ATTACK = """import os, sys
from distributed import Client
client = Client(sys.argv[1], timeout="5s")
print("ran as", client.run_on_scheduler(os.getuid))
"""


def dask_client_runs_code(port):
    """Whether a Dask Client without credentials runs code through 127.0.0.1:``port``."""
    try:
        done = subprocess.run([sys.executable, "-c", ATTACK, f"tcp://127.0.0.1:{port}"], capture_output=True,
                              text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0 and "ran as" in done.stdout


def test_no_task_listener_runs_code_and_no_task_process_is_root(hub):
    """T10: while a run executes, every port the hub's processes listen on refuses a Dask
    Client (the service starts no scheduler), and the run's processes are the user's."""
    alice = client(hub, "alice")
    before = listening_ports(tree(hub))
    run = copy(alice, "slow.txt", seconds=300)  # held until the attacks below are done, then cancelled
    deadline = time.monotonic() + 60
    while not [p for p in tree(hub) if "Copy.py" in " ".join(p.cmdline())] and time.monotonic() < deadline:
        time.sleep(0.2)
    tools = [p for p in tree(hub) if "Copy.py" in " ".join(p.cmdline())]
    assert tools, hub.log()[-3000:]
    uid = tools[0].uids().real
    assert uid != 0 and all(p.uids().real == uid and p.uids().effective == uid for p in tools)
    during = listening_ports(tree(hub))
    assert during == before  # nothing new listens for a run
    service = next(p for p in tree(hub) if "oggmhub.tasks.service" in " ".join(p.cmdline()))
    root_children = [p.cmdline() for p in service.children(recursive=True) if p.uids().real == 0]
    assert root_children == []  # the service starts nothing as root for a run
    assert not [p for p in psutil.process_iter(["cmdline", "uids"])
                if p.info["uids"] and p.info["uids"].real == 0
                and any(w in " ".join(p.info["cmdline"] or []) for w in ("distributed.cli", "dask-scheduler", "dask-worker"))
                and p.pid in {q.pid for q in tree(hub)}]
    # a TCP client's rights do not matter to a listener: root's test tries, every port at once,
    # while the run holds its slot
    with ThreadPoolExecutor(len(during) or 1) as pool:
        ran = dict(zip(sorted(during), pool.map(dask_client_runs_code, sorted(during))))
    assert not [port for port, yes in ran.items() if yes], f"ports that ran code for a Dask client: {ran}"
    assert [p for p in tree(hub) if "Copy.py" in " ".join(p.cmdline())], "the run ended before every port was tried"
    alice.cancel(run)
    assert alice.wait(run, timeout=120, check=False)["status"] == "cancelled"
    assert not [p for p in tree(hub) if "Copy.py" in " ".join(p.cmdline())]  # its processes went with it
    assert not os.path.exists(os.path.join(alice.home, "slow.txt"))
    assert alice.wait(copy(alice, "quick.txt"), timeout=120)["status"] == "done"
    assert open(os.path.join(alice.home, "quick.txt")).read() == "hello\n"
    assert os.stat(os.path.join(alice.home, "quick.txt")).st_uid == uid  # written as the user's account


def test_a_link_flipped_during_downloads_never_yields_its_target(hub):
    """T15: the user swaps the published output for a link to /etc/shadow and back, as
    fast as it can (as their own account), while the output is downloaded many times."""
    bruno = client(hub, "bruno")
    run = copy(bruno, "published.txt", text="bruno's result\n")
    assert bruno.wait(run, timeout=120)["status"] == "done"
    account = os.stat(bruno.home).st_uid
    shadow = open("/etc/shadow", "rb").read()
    flipper = subprocess.Popen([
        "/usr/bin/python3", "-c",
        "import os, sys\n"
        "target = os.path.join(sys.argv[1], 'published.txt')\n"
        "while True:\n"
        "    try: os.unlink(target + '.l')\n"
        "    except OSError: pass\n"
        "    os.symlink('/etc/shadow', target + '.l'); os.rename(target + '.l', target)\n"
        "    with open(target + '.f', 'w') as f: f.write('bruno again\\n')\n"
        "    os.rename(target + '.f', target)\n", bruno.home], user=account, group=account, cwd="/")
    answers = {}
    try:
        for _ in range(400):
            try:
                data = bruno.fetch(run, "copy")
            except TaskError as e:  # 400: the path check saw the link; 404: the no-follow open did
                assert e.status in (400, 404), e
                answers[e.status] = answers.get(e.status, 0) + 1
                continue
            assert data != shadow and b"root:" not in data
            answers[data] = answers.get(data, 0) + 1
    finally:
        flipper.kill()
        flipper.wait()
    assert (answers.get(400) or answers.get(404)) and answers.get(b"bruno again\n"), answers  # both sides were hit
    print("download answers:", {k if isinstance(k, int) else k.decode(): v for k, v in answers.items()})


def test_a_dotted_usernames_output_lands_in_its_jupyter_home(hub):
    """T21: a.b's home is the spawner's folder for a.b (``a-b---<hash>``)."""
    ab = client(hub, "a.b")
    assert os.path.basename(ab.home).startswith("a-b---")
    assert ab.wait(copy(ab, "results/out.txt", text="a.b's\n"), timeout=120)["status"] == "done"
    out = os.path.join(ab.home, "results", "out.txt")
    assert open(out).read() == "a.b's\n"
    assert os.stat(out).st_uid == os.stat(ab.home).st_uid != 0
    assert not os.path.exists(os.path.join(hub.data_dir, "homes", "a.b"))


def cohort_cli(hub, token, *args):
    done = subprocess.run([sys.executable, "-m", "oggmhub", "cohort", *args, "--hub", hub.url, "--token", token],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_a_member_of_a_closed_cohort_cannot_run(hub):
    """T23: runs follow the cohort's closure as server starts do (403 naming the cohort)."""
    token = hub.api(hub.admin(), "POST", "/users/admin/tokens", json={"note": "t23"}).json()["token"]
    carla = client(hub, "carla")
    cohort_cli(hub, token, "create", "lab", "--env", "oggm", *OPEN, "--no-join-code")
    cohort_cli(hub, token, "add", "lab", "carla")
    first = copy(carla, "open.txt")
    assert carla.wait(first, timeout=120)["status"] == "done"  # open: runs
    cohort_cli(hub, token, "close", "lab")
    with pytest.raises(TaskError) as refused:
        copy(carla, "closed.txt")
    assert refused.value.status == 403 and "cohort 'lab' was closed on" in str(refused.value), refused.value
    assert not os.path.exists(os.path.join(carla.home, "closed.txt"))
    r = requests.post(f"{carla.url}api/runs/{first['id']}/rerun", headers={"Authorization": f"token {carla.token}"},
                      json={})
    assert r.status_code == 403 and "cohort 'lab' was closed on" in r.json()["message"], r.text
