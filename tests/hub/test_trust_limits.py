"""The chosen size's CPU and memory limits hold on the local backend (issue 14), through
cgroups on a real local hub: a notebook kernel that allocates twice its size's memory is
killed (inside its cgroup only) while its server and the hub stay up, and a CPU-bound
loop stays within the size's CPU limit, measured from the cgroup's own accounting.

This machine has cgroup v1 (memory, cpu, cpuacct) writable as root; on a machine without
cgroups the hub says so at start-up and the picker marks sizes as not enforced.

The hub runs in accounts mode (as the README's hub does as root): each server runs as its
user's system account, which joined the cgroup while still root and cannot leave it.
"""

import json
import os
import pathlib
import time

import pytest
import requests
import yaml

from oggmhub.backends.local import cgroups
from oggmhub.backends.local.environments import default_root
from support.kernels import KernelDied, kernel, run
from support.local_hub import REPO, LocalHub, accounts_folder, running_hub

MEM_LIMIT = 600 * 2**20
CPU_LIMIT = 0.5


def tiny_catalog(folder):
    """The repository's catalog with a 'tiny' OGGM size (0.5 CPU, 600 MiB) and the mirror
    in a local folder (no bucket here)."""
    with open(os.path.join(REPO, "hub_config", "catalog.yaml")) as f:
        catalog = yaml.safe_load(f)
    mirror = folder / "oggm-mirror"
    mirror.mkdir(parents=True, exist_ok=True)
    catalog["datasets"]["oggm-mirror"]["source"] = str(mirror)
    catalog["environments"]["oggm"]["sizes"]["tiny"] = {
        "display_name": "Tiny (0.5 CPU, 600 MiB)", "cpu": {"guarantee": 0.25, "limit": CPU_LIMIT},
        "memory": {"guarantee": "300Mi", "limit": "600Mi"}}
    path = folder / "catalog.yaml"
    path.write_text(yaml.safe_dump(catalog, sort_keys=False))
    return str(path)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    if cgroups.detect()[0] is None:
        pytest.skip(f"this machine has no usable cgroups: {cgroups.detect()[1]}")
    with accounts_folder() as top:
        folder = pathlib.Path(top)
        with running_hub(folder / "data", catalog=tiny_catalog(folder), mode="accounts",
                         env={"OGGMHUB_COHORT_CHECK_INTERVAL": "0"}) as hub:
            yield hub



def test_the_hub_says_at_start_up_that_sizes_are_enforced(hub):
    assert "oggmhub: sizes' CPU and memory limits are enforced through cgroup" in hub.log()


def test_a_kernel_past_its_memory_limit_dies_and_the_server_and_hub_stay_up(hub):
    session = hub.new_user("memhog", "moulin-2026-x")
    hub.salem_stand_in("memhog")
    assert hub.api(session, "POST", "/users/memhog/server", json={"profile": "oggm", "size": "tiny"}).status_code in (201, 202)
    hub.wait_for_server(session, "memhog")
    group = cgroups.SessionCgroup(cgroups.detect()[0], cgroups.session_name(hub.data_dir, "memhog"))
    token, kernel_id, ws = kernel(hub, session, "memhog")
    pid, uid = map(int, run(ws, token, "import os; print(os.getpid(), os.getuid())").split())
    assert pid in group.pids()  # the kernel runs inside the server's cgroup
    assert uid == hub.account("memhog").uid != 0  # as the user's own account
    before = group.oom_kills() or 0
    with pytest.raises(KernelDied):  # the kernel dies mid-cell, and the server says so
        run(ws, token, f"x = b'\\x01' * {2 * MEM_LIMIT}\nprint('allocated')", timeout=60)
    time.sleep(2)
    assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
    assert (group.oom_kills() or 0) > before  # killed by the OOM killer, in this cgroup
    auth = {"Authorization": f"token {token}"}
    # the kernel restarts (Jupyter's restarter), and its first cell says why the old one went
    deadline = time.monotonic() + 60
    while True:
        try:
            said = run(ws, token, "print('after')", timeout=30)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(2)
    assert "the previous kernel was stopped for using more than this size's memory limit (600 MiB)" in said, said
    assert said.rstrip().endswith("after")
    assert "memory limit" not in run(ws, token, "print('again')")  # once
    assert requests.get(f"{hub.url}/user/memhog/api/status", headers=auth, timeout=30).status_code == 200
    assert hub.api(session, "GET", "/users/memhog").json()["servers"][""]["ready"]
    assert hub.api(hub.admin(), "GET", "/users").status_code == 200  # the hub, for everyone else
    hub.stop_servers()
    assert not os.path.exists(group.dirs.get("memory") or group.dirs["unified"])  # removed with the server


def test_a_cpu_bound_loop_stays_within_the_sizes_cpu_limit(hub):
    session = hub.new_user("spinner", "moulin-2026-x")
    hub.salem_stand_in("spinner")
    assert hub.api(session, "POST", "/users/spinner/server", json={"profile": "oggm", "size": "tiny"}).status_code in (201, 202)
    hub.wait_for_server(session, "spinner")
    group = cgroups.SessionCgroup(cgroups.detect()[0], cgroups.session_name(hub.data_dir, "spinner"))
    token, _, ws = kernel(hub, session, "spinner")
    code = ("import multiprocessing as mp, time\n"
            "def spin(s):\n    t = time.time()\n    while time.time() - t < s: pass\n"
            "ps = [mp.Process(target=spin, args=(6,)) for _ in range(2)]\n"
            "[p.start() for p in ps]; [p.join() for p in ps]\nprint('done')")
    used, t0 = group.cpu_seconds(), time.monotonic()
    assert run(ws, token, code).strip() == "done"
    wall = time.monotonic() - t0
    share = (group.cpu_seconds() - used) / wall
    print(json.dumps({"cpu_limit": CPU_LIMIT, "cpu_share": round(share, 3), "wall_s": round(wall, 2)}))
    assert 0 < share <= CPU_LIMIT * 1.15, share  # two spinning processes, half a CPU between them
    hub.stop_servers()


def test_without_cgroups_the_hub_says_so_and_the_picker_marks_sizes(tmp_path):
    hub = LocalHub(tmp_path / "data", env={"OGGMHUB_CGROUP_ROOT": str(tmp_path / "no-cgroups"),
                                           "OGGMHUB_ENV_CACHE": str(default_root())}).start()
    try:
        assert "oggmhub: sizes' CPU and memory limits are NOT enforced on this machine: no cgroup v2" in hub.log()
        session = hub.new_user("nolimits", "moulin-2026-x")
        form = session.get(f"{hub.url}/hub/spawn").text
        assert "Small (1 CPU, 4 GB) (limits not enforced on this machine)" in form
    finally:
        hub.stop(servers=True)
