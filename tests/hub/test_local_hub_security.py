"""One machine, many users (issue 28): what a user's code can do to another user, or to
root, through a local hub's servers, on a real hub running as root in accounts mode (one
hub for the module, a system account per user, removed afterwards).

- T11: user B's kernel finds A's notebook Dask cluster (scheduler and dashboard ports) and
  cannot connect to either; A's own client works, and A's dashboard through A's server;
- X01: a registry entry A's kernel wrote naming a root process: stopping A's server leaves
  that process alive;
- X02: a double-forked ``env -i sleep`` from A's kernel: after the stop, no process of A's
  account is left (the server's cgroup is emptied);
- X03/X05: links A planted in their scratch space (at the Dask registry, at the
  unavailable-datasets notice and its temporary name) and home (``~/datasets``,
  ``~/tutorials``), pointing at root's files: a stop and a start change none of them;
- TMPDIR: each server's temporary folder is its own (0700, the user's), OGGM's extract
  folder in it;
- K07: a fork loop in a kernel stops at the server's pids limit (``pids_limit``, set here in
  the hub's config) while another user starts a server.
"""

import json
import os
import pathlib
import signal
import subprocess
import time

import psutil
import pytest
import requests
import yaml

from oggmhub.backends.local import cgroups
from support.kernels import kernel, run
from support.local_hub import (
    REPO,
    accounts_folder,
    fill_oggm_mirror,
    running_hub,
    wait_until,
)

PASSWORD = "crevasse-2026-x"
PIDS_LIMIT = 256


def _catalog(folder):
    """The repository's catalog, OGGM's mirror in a local folder, and an optional dataset
    that cannot be reached (so that every start writes the unavailable-datasets notice)."""
    with open(os.path.join(REPO, "hub_config", "catalog.yaml")) as f:
        catalog = yaml.safe_load(f)
    mirror = folder / "oggm-mirror"
    mirror.mkdir(parents=True, exist_ok=True)
    fill_oggm_mirror(str(mirror))
    catalog["datasets"]["oggm-mirror"].update(source=str(mirror))
    catalog["datasets"]["optional"] = {"title": "A server with a typo", "required": False,
                                      "source": "https://cluster.klima.uni-bremen.invalid/~oggm/"}
    path = folder / "catalog.yaml"
    path.write_text(yaml.safe_dump(catalog, sort_keys=False))
    return str(path)


@pytest.fixture(scope="module")
def hub():
    if os.geteuid() != 0:
        pytest.skip("accounts mode needs the hub to run as root")
    if cgroups.detect()[0] is None:
        pytest.skip(f"this machine has no usable cgroups: {cgroups.detect()[1]}")
    with accounts_folder() as top:
        folder = pathlib.Path(top)
        config = folder / "config.py"
        config.write_text(f"c = get_config()\nload_subconfig({os.path.join(REPO, 'hub_config', 'jupyterhub_config.py')!r})\n"
                          f"c.LocalEnvSpawner.pids_limit = {PIDS_LIMIT}\n")
        with running_hub(folder / "data", catalog=_catalog(folder), config=str(config), mode="accounts",
                         env={"OGGMHUB_COHORT_CHECK_INTERVAL": "0"}) as hub:
            yield hub


def start(hub, session, name, **options):
    r = hub.api(session, "POST", f"/users/{name}/server", json={"profile": "oggm", **options})
    assert r.status_code in (201, 202), r.text
    return hub.wait_for_server(session, name)


def stop(hub, session, name):
    r = hub.api(session, "DELETE", f"/users/{name}/server")
    assert r.status_code in (202, 204), r.text
    wait_until(lambda: not hub.api(session, "GET", f"/users/{name}").json()["servers"], 120, f"{name}'s stop")


@pytest.fixture(scope="module")
def users(hub):
    sessions = {}
    for name in ("alice", "bruno"):
        sessions[name] = hub.new_user(name, PASSWORD)
        hub.salem_stand_in(name)
        start(hub, sessions[name], name)
    return sessions


def account_processes(uid):
    out = []
    for proc in psutil.process_iter(["uids", "cmdline"]):
        try:
            if proc.info["uids"].real == uid and proc.status() != psutil.STATUS_ZOMBIE:
                out.append(f"{proc.pid} {' '.join(proc.info['cmdline'] or [])}")
        except psutil.Error:
            continue
    return out


# --- T11 -------------------------------------------------------------------------------------

OWNER = """
import json, os, oggmhub.session.dask
from distributed import Client
cluster, client = oggmhub.session.dask.cluster(workers=1)
with Client(cluster.scheduler_address, timeout=10) as by_address:  # dask-labextension's snippet: the loader's key
    again = by_address.submit(sum, [3, 4]).result()
print(json.dumps({"address": cluster.scheduler_address, "port": cluster.scheduler.http_server.port,
                  "link": cluster.dashboard_link, "sum": client.submit(sum, [1, 2]).result(), "again": again,
                  "scheduler_uid": client.run_on_scheduler(os.getuid)}))
"""

INTRUDER = """
import asyncio, concurrent.futures, json, os, urllib.request, urllib.error
from distributed.comm import connect
from distributed.security import Security
import oggmhub.session.dask_local as dask_local
address, port = json.loads(TARGET)
out = {}
def attempt(what, fn):
    try:
        out[what] = "allowed: " + repr(fn())
    except Exception as e:
        out[what] = type(e).__name__
async def identity(address, security):
    comm = await connect(address, timeout=5, **security.get_connection_args("client"))
    try:
        await comm.write({"op": "identity", "reply": True})
        return await comm.read()
    finally:
        comm.abort()
def raw(address, security):  # what a Client does first; in a thread (the kernel runs a loop)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, identity(address, security)).result(timeout=30)
attempt("plain tcp", lambda: raw(address.replace("tls://", "tcp://"), Security()))
attempt("tls, no credentials", lambda: raw(address, Security()))
attempt("tls, own credentials", lambda: raw(address, Security.temporary()))
attempt("tls, own session's loader", lambda: raw(address, dask_local.load_security({"address": address}) or Security()))
for path in ("/", "/status", "/sitemap.json", "/info/main/workers.html", "/json/identity.json"):
    def get(path=path):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read(2000).decode(errors="replace")
    attempt("dashboard " + path, get)
print(json.dumps(out))
"""


def test_another_user_cannot_use_a_notebooks_dask_cluster_nor_its_dashboard(hub, users):
    token_a, _, ws_a = kernel(hub, users["alice"], "alice")
    owner = json.loads(run(ws_a, token_a, OWNER).strip().splitlines()[-1])
    assert owner["sum"] == 3 and owner["scheduler_uid"] == hub.account("alice").uid  # A's own client works
    assert owner["again"] == 7  # and a client given only the address, in A's session
    assert owner["address"].startswith("tls://127.0.0.1:")
    token_b, _, ws_b = kernel(hub, users["bruno"], "bruno")
    code = f"TARGET = {json.dumps(json.dumps([owner['address'], owner['port']]))}\n" + INTRUDER
    seen = json.loads(run(ws_b, token_b, code, timeout=180).strip().splitlines()[-1])
    print(json.dumps(seen, indent=1))
    assert not [k for k, v in seen.items() if v.startswith("allowed")], seen
    assert {seen[k] for k in seen if k.startswith("dashboard")} == {"HTTPError"}  # 404: no route outside the secret
    # A's dashboard, through A's server; B's server proxies the same port to nothing
    assert owner["link"].startswith(f"/user/alice/proxy/{owner['port']}/dask-") and owner["link"].endswith("/status")
    mine = requests.get(hub.url + owner["link"], headers={"Authorization": f"token {token_a}"}, timeout=30)
    assert mine.status_code == 200 and "Dask" in mine.text
    for path in (f"/user/bruno/proxy/{owner['port']}/status", f"/user/bruno/proxy/{owner['port']}/sitemap.json"):
        r = requests.get(hub.url + path, headers={"Authorization": f"token {token_b}"}, timeout=30)
        assert r.status_code == 404, (path, r.status_code)
    r = requests.get(hub.url + owner["link"], headers={"Authorization": f"token {token_b}"}, timeout=30,
                     allow_redirects=False)
    assert r.status_code in (302, 403), r.status_code  # A's server refuses B's token


# --- TMPDIR ----------------------------------------------------------------------------------

TMP = """
import json, os, stat, tempfile
d = tempfile.gettempdir()
st = os.stat(d)
print(json.dumps({"tmp": d, "mode": stat.S_IMODE(st.st_mode), "uid": st.st_uid,
                  "extract": os.environ.get("OGGM_EXTRACT_DIR"), "TMPDIR": os.environ.get("TMPDIR")}))
"""


def test_each_server_has_a_private_temporary_folder(hub, users):
    seen = {}
    for name in ("alice", "bruno"):
        token, _, ws = kernel(hub, users[name], name)
        seen[name] = json.loads(run(ws, token, TMP).strip().splitlines()[-1])
    for name, tmp in seen.items():
        assert tmp["tmp"] == tmp["TMPDIR"] == os.path.join(hub.data_dir, "scratch", name, "tmp", "default")
        assert (tmp["mode"], tmp["uid"]) == (0o700, hub.account(name).uid)
        assert tmp["extract"] == os.path.join(tmp["tmp"], "oggm-extract")
    assert seen["alice"]["tmp"] != seen["bruno"]["tmp"]
    token, _, ws = kernel(hub, users["bruno"], "bruno")
    probe = f"import os\ntry:\n    os.listdir({seen['alice']['tmp']!r}); print('allowed')\nexcept Exception as e:\n    print(type(e).__name__)"
    assert run(ws, token, probe).strip() == "PermissionError"


# --- X01, X02 --------------------------------------------------------------------------------

PLANT = """
import json, os, subprocess, psutil
registry = os.environ["OGGMHUB_DASK_REGISTRY"]
os.makedirs(registry, exist_ok=True)
victim = VICTIM
me = [os.getpid(), psutil.Process().create_time()]
entry = {"name": "forged", "owner": me, "processes": [[victim, psutil.Process(victim).create_time()]],
         "usage": {"clusters": 1, "workers": 1, "cores": 1, "memory": 1, "gpus": 0}}
with open(os.path.join(registry, "forged.json"), "w") as f:
    json.dump(entry, f)
# a process that leaves the server's tree, its session and its environment
out = subprocess.run("setsid env -i sleep 600 > /dev/null 2>&1 & echo $!", shell=True, capture_output=True, text=True)
print(json.dumps({"escaped": int(out.stdout.split()[-1])}))
"""


def test_stopping_a_server_kills_all_of_it_and_nothing_a_registry_names(hub, users):
    victim = subprocess.Popen(["sleep", "600"], start_new_session=True)  # root's
    try:
        token, _, ws = kernel(hub, users["alice"], "alice")
        planted = json.loads(run(ws, token, f"VICTIM = {victim.pid}\n" + PLANT).strip().splitlines()[-1])
        escaped = psutil.Process(planted["escaped"])
        uid = hub.account("alice").uid
        assert escaped.uids().real == uid and "OGGMHUB_SESSION" not in escaped.environ()
        group = cgroups.SessionCgroup(cgroups.detect()[0], cgroups.session_name(hub.data_dir, "alice"))
        assert escaped.pid in group.pids()
        stop(hub, users["alice"], "alice")
        assert victim.poll() is None, "stopping alice's server killed root's process named in her registry"
        assert not escaped.is_running() or escaped.status() == psutil.STATUS_ZOMBIE
        assert account_processes(uid) == []  # nothing of alice's account is left
        assert not os.path.exists(group.dirs.get("pids") or group.dirs.get("unified"))
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait()


# --- X03, X05 --------------------------------------------------------------------------------

LINKS = """
import json, os, shutil
scratch, home = os.environ["OGGMHUB_SCRATCH"], os.environ["HOME"]
root = json.loads(ROOT)
shutil.rmtree(os.path.join(scratch, "dask"), ignore_errors=True)
os.symlink(root["etc"], os.path.join(scratch, "dask"))                      # X05
for name, target in (("datasets-unavailable.json.tmp", root["passwd"]),      # X03
                     ("datasets-unavailable.json", root["shadow"])):
    path = os.path.join(scratch, name)
    if os.path.lexists(path):
        os.remove(path)
    os.symlink(target, path)
for name in ("datasets", "tutorials"):
    shutil.rmtree(os.path.join(home, name), ignore_errors=True)
    if os.path.lexists(os.path.join(home, name)):
        os.remove(os.path.join(home, name))
    os.symlink(root["etc"], os.path.join(home, name))
print(sorted(os.listdir(scratch)))
"""


def _root_files(folder):
    etc = folder / "etc"
    (etc / "default").mkdir(parents=True)
    (etc / "default" / "keep.conf").write_text("root's\n")
    (folder / "passwd").write_text("root:x:0:0\n")
    (folder / "shadow").write_text("root:!:1::::::\n")
    for path in (folder, etc, etc / "default"):
        os.chmod(path, 0o755)
    return {"etc": str(etc), "passwd": str(folder / "passwd"), "shadow": str(folder / "shadow")}


def _snapshot(folder):
    out = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = os.path.join(root, name)
            st = os.lstat(path)
            content = open(path, "rb").read() if os.path.isfile(path) else None
            out[os.path.relpath(path, folder)] = (st.st_uid, st.st_gid, st.st_mode, content)
    return out


def test_links_a_user_plants_change_nothing_of_roots_across_stop_and_start(hub, users, tmp_path):
    session = users["alice"]
    start(hub, session, "alice", datasets=["optional"])  # unreachable: every start writes the notice
    targets = _root_files(tmp_path)
    before = _snapshot(tmp_path)
    token, _, ws = kernel(hub, session, "alice")
    run(ws, token, f"ROOT = {json.dumps(json.dumps(targets))}\n" + LINKS)
    stop(hub, session, "alice")  # X05: the registry's clean-up
    assert _snapshot(tmp_path) == before
    start(hub, session, "alice", datasets=["optional"])  # X03: the notice; the datasets links; the tutorials
    assert _snapshot(tmp_path) == before, "a start wrote through a link of the user's"
    scratch = os.path.join(hub.data_dir, "scratch", "alice")
    notice = os.path.join(scratch, "datasets-unavailable.json")
    assert not os.path.islink(notice) and list(json.load(open(notice))) == ["optional"]
    assert "Tutorials not merged into ~/tutorials/oggm" in hub.log()  # as alice, who cannot write there
    assert "Datasets are not linked into ~/datasets" in hub.log()
    stop(hub, session, "alice")
    assert _snapshot(tmp_path) == before


# --- K07 -------------------------------------------------------------------------------------

FORK_LOOP = """
import json, os, time
kids, refused = [], 0
for _ in range(5000):
    try:
        pid = os.fork()
    except (BlockingIOError, OSError):
        refused += 1
        if refused >= 20:
            break
        time.sleep(0.01)
        continue
    if pid == 0:
        time.sleep(300)
        os._exit(0)
    kids.append(pid)
print(json.dumps({"kids": len(kids), "refused": refused}))
"""


def test_a_fork_loop_stops_at_the_pids_limit_while_another_user_starts_a_server(hub):
    forker = hub.new_user("forker", PASSWORD)
    hub.salem_stand_in("forker")
    start(hub, forker, "forker")
    group = cgroups.SessionCgroup(cgroups.detect()[0], cgroups.session_name(hub.data_dir, "forker"))
    assert group.pids_max() == PIDS_LIMIT  # the hub's c.LocalEnvSpawner.pids_limit
    token, _, ws = kernel(hub, forker, "forker")
    t0 = time.monotonic()
    result = json.loads(run(ws, token, FORK_LOOP, timeout=300).strip().splitlines()[-1])
    print(json.dumps({**result, "seconds": round(time.monotonic() - t0, 2)}))
    assert result["refused"] >= 20 and 50 < result["kids"] < PIDS_LIMIT, result
    # at the limit, the machine still has pids for everyone else
    other = hub.new_user("another", PASSWORD)
    hub.salem_stand_in("another")
    start(hub, other, "another")
    stop(hub, forker, "forker")  # and the stop ends every forked child
    assert account_processes(hub.account("forker").uid) == []
    stop(hub, other, "another")


def test_pids_limit_is_validated():
    from traitlets import TraitError

    from oggmhub.backends.local.spawner import LocalEnvSpawner

    assert LocalEnvSpawner.class_traits()["pids_limit"].default_value == 512
    with pytest.raises(TraitError, match="pids_limit 10 is too small: a server needs at least 64"):
        LocalEnvSpawner(pids_limit=10)
