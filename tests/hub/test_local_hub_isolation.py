"""No user reaches another's files on the local backend (issue 14), on a real local hub
running as root in accounts mode, the way the README runs it: users A and B each get a
system account (useradd; a distinctive prefix per run, removed afterwards). A's notebook
kernel tries to read, list and write B's home, B's dataset mount, the hub's database and
cookie secret, and to lift its own cgroup limit: each is refused with PermissionError. A
still reads and writes its own home and reads its own mount.
"""

import json
import os
import stat

import pytest

from oggmhub.backends.local import cgroups, system_users
from support.kernels import kernel, run
from support.local_hub import accounts_folder, running_hub

PASSWORD = "moraine-2026-x"

PROBE = r'''
import json, os
def attempt(what, fn):
    try:
        fn()
        return "allowed"
    except Exception as e:
        return type(e).__name__
def write(path):
    with open(path, "a") as f:  # appending: nothing is lost should a write ever get through
        f.write("from A")
def read(path):
    with open(path, "rb") as f:
        f.read(1)
targets = json.loads(TARGETS)
out = {}
for name, path in targets["read"].items():
    out["read " + name] = attempt(name, lambda: read(path))
for name, path in targets["list"].items():
    out["list " + name] = attempt(name, lambda: os.listdir(path))
for name, path in targets["write"].items():
    out["write " + name] = attempt(name, lambda: write(path))
out["uid"] = os.getuid()
out["home"] = os.environ["HOME"]
out["user"] = os.environ["USER"]
print(json.dumps(out))
'''


def probe(ws, token, targets):
    code = f"TARGETS = {json.dumps(json.dumps(targets))}\n" + PROBE
    return json.loads(run(ws, token, code).strip().splitlines()[-1])


@pytest.fixture(scope="module")
def hub():
    with accounts_folder() as folder:
        with running_hub(os.path.join(folder, "data"), mode="accounts",
                         env={"OGGMHUB_COHORT_CHECK_INTERVAL": "0"}) as hub:
            yield hub


@pytest.fixture(scope="module")
def two_users(hub):
    mirror = os.path.join(hub.data_dir + "-config", "oggm-mirror")
    with open(os.path.join(mirror, "oggmhub-isolation.txt"), "w") as f:
        f.write("a dataset file\n")
    sessions = {}
    for name in ("alice", "bruno"):
        sessions[name] = hub.new_user(name, PASSWORD)
        hub.salem_stand_in(name)
        r = hub.api(sessions[name], "POST", f"/users/{name}/server", json={"profile": "oggm"})
        assert r.status_code in (201, 202), r.text
    for name, session in sessions.items():
        hub.wait_for_server(session, name)
    return sessions


def paths(hub, name):
    home = os.path.join(hub.data_dir, "homes", name)
    mount = os.path.join(hub.data_dir, "mounts", name, "data", "oggm-mirror")
    return home, mount


def test_each_user_runs_as_an_account_of_their_own(hub, two_users):
    a, b = hub.account("alice"), hub.account("bruno")
    assert a is not None and b is not None, hub.log()[-3000:]
    assert a.name == f"{hub.account_prefix}alice" and b.name == f"{hub.account_prefix}bruno"
    assert a.uid != b.uid and a.uid != 0 and b.uid != 0
    assert a.gecos == f"oggmhub hub={system_users.hub_id(hub.data_dir)} user=alice"
    for name, account in (("alice", a), ("bruno", b)):
        home, mount = paths(hub, name)
        st = os.stat(home)
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (account.uid, 0o700)
        scratch = os.stat(os.path.join(hub.data_dir, "scratch", name))
        assert (scratch.st_uid, stat.S_IMODE(scratch.st_mode)) == (account.uid, 0o700)
        assert os.path.ismount(mount) and os.stat(mount).st_uid == account.uid
        assert stat.S_IMODE(os.stat(mount).st_mode) == 0o500
        tutorials = os.path.join(home, "tutorials")
        if os.path.isdir(tutorials):  # what the hub merged in is the user's
            assert {os.stat(os.path.join(r, f)).st_uid for r, _, fs in os.walk(tutorials) for f in fs} <= {account.uid}
    assert stat.S_IMODE(os.stat(hub.data_dir).st_mode) == 0o711
    for private in ("jupyterhub.sqlite", "jupyterhub_cookie_secret"):
        st = os.stat(os.path.join(hub.data_dir, private))
        assert st.st_uid == 0 and not st.st_mode & 0o077, private
    assert "users' servers run as a system account each" in hub.log()


def test_a_notebook_cannot_reach_another_users_files_nor_the_hubs(hub, two_users):
    a = hub.account("alice")
    b_home, b_mount = paths(hub, "bruno")
    a_home, a_mount = paths(hub, "alice")
    # something of B's to try to read: a file B wrote itself
    token_b, _, ws_b = kernel(hub, two_users["bruno"], "bruno")
    run(ws_b, token_b, "open('secret.txt', 'w').write('only bruno')")
    assert os.stat(os.path.join(b_home, "secret.txt")).st_uid == hub.account("bruno").uid
    group = cgroups.SessionCgroup(cgroups.detect()[0], cgroups.session_name(hub.data_dir, "alice"))
    limit_file = (os.path.join(group.dirs["memory"], "memory.limit_in_bytes") if "memory" in group.dirs
                  else os.path.join(group.dirs["unified"], "memory.max"))
    top_procs = os.path.join(os.path.dirname(os.path.dirname(limit_file)), "cgroup.procs")
    targets = {
        "read": {"B's file": os.path.join(b_home, "secret.txt"),
                 "B's mounted file": os.path.join(b_mount, "oggmhub-isolation.txt"),
                 "the database": os.path.join(hub.data_dir, "jupyterhub.sqlite"),
                 "the cookie secret": os.path.join(hub.data_dir, "jupyterhub_cookie_secret"),
                 "own file": os.path.join(a_home, "mine.txt"),
                 "own mounted file": os.path.join(a_mount, "oggmhub-isolation.txt")},
        "list": {"B's home": b_home, "B's mount": b_mount, "the homes": os.path.join(hub.data_dir, "homes"),
                 "the data dir": hub.data_dir, "own home": a_home, "own mount": a_mount},
        "write": {"B's home": os.path.join(b_home, "from-a.txt"),
                  "B's file": os.path.join(b_home, "secret.txt"),
                  "B's mount": os.path.join(b_mount, "from-a.txt"),
                  "the database": os.path.join(hub.data_dir, "jupyterhub.sqlite"),
                  "the data dir": os.path.join(hub.data_dir, "from-a.txt"),
                  "own cgroup's memory limit": limit_file,
                  "the parent cgroup (leaving own)": top_procs,
                  "own file": os.path.join(a_home, "mine.txt")},
    }
    token, _, ws = kernel(hub, two_users["alice"], "alice")
    run(ws, token, "open('mine.txt', 'w').write('alice')")
    seen = probe(ws, token, targets)
    print(json.dumps(seen, indent=1))
    assert (seen["uid"], seen["user"], seen["home"]) == (a.uid, a.name, a_home)
    own = {k: v for k, v in seen.items() if k.endswith(("own file", "own home", "own mount", "own mounted file"))}
    assert set(own.values()) == {"allowed"}, own
    others = {k: v for k, v in seen.items() if k not in own and k not in ("uid", "user", "home")}
    assert others and set(others.values()) == {"PermissionError"}, others
    assert open(os.path.join(b_home, "secret.txt")).read() == "only bruno"
    assert not os.path.exists(os.path.join(b_home, "from-a.txt"))
    # the limit is still the size's, and A's kernel is still inside its cgroup
    pid = int(run(ws, token, "import os; print(os.getpid())").strip())
    assert pid in group.pids()
