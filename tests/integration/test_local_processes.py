"""Finding and ending a local server's processes (issue 28: X01, X02, K07) with real
processes: a session marker alone names nothing of another uid, and a real cgroup with a
pids limit is emptied of double-forked escapes."""

import os
import secrets
import subprocess
import time

import psutil
import pytest

from oggmhub.backends.local import cgroups
from oggmhub.backends.local.processes import session_processes


def test_a_session_marker_counts_only_with_the_servers_uid():
    marker = secrets.token_hex(8)
    proc = subprocess.Popen(["sleep", "60"], env={"OGGMHUB_SESSION": marker, "PATH": os.defpath})
    try:
        assert [p.pid for p in session_processes(marker, uid=os.getuid())] == [proc.pid]
        assert session_processes(marker, uid=os.getuid() + 4242) == []  # someone else's: never
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def cgroup():
    kind, why = cgroups.detect()
    if kind is None:
        pytest.skip(f"no usable cgroups here: {why}")
    group = cgroups.session_cgroup(f"test-{secrets.token_hex(4)}", 1, 512 * 2**20, pids_limit=64)
    yield group
    group.kill()
    group.remove()


def test_a_cgroup_is_emptied_of_double_forked_escapes_and_holds_its_pids_limit(cgroup):
    if "pids" not in cgroup.dirs and cgroup.kind == "v1":
        pytest.skip("this machine has no cgroup v1 pids hierarchy")
    assert cgroup.pids_max() == 64
    # a shell in the cgroup that leaves three processes behind, each in a session of its own
    shell = subprocess.run(
        ["sh", "-c", "for i in 1 2 3; do setsid env -i sleep 300 >/dev/null 2>&1 & done; echo started"],
        preexec_fn=cgroup.join, capture_output=True, text=True, timeout=30)
    assert shell.stdout.strip() == "started"
    escaped = cgroup.pids()
    assert len(escaped) == 3 and all(psutil.Process(p).ppid() != os.getpid() for p in escaped)
    # a fork loop inside it stops at the limit
    loop = subprocess.run(
        ["python3", "-c", "import os, time\nn = 0\ntry:\n    while True:\n        if os.fork() == 0:\n"
         "            os.close(1); os.close(2); time.sleep(300); os._exit(0)\n        n += 1\nexcept BlockingIOError:\n    print(n)"],
        preexec_fn=cgroup.join, capture_output=True, text=True, timeout=60)
    started = int(loop.stdout.strip())
    assert 50 < started < 64, loop.stderr
    assert cgroup.kill() == [] and cgroup.pids() == []
    time.sleep(0.2)
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in escaped)
