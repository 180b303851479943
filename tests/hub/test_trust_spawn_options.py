"""Refused spawn requests leave no trace (issue 14: F2, F5, F6), on a real local hub.

JupyterHub saves a request's options before the spawner validates them; a refusal must
put the previous ones back (no replay), and a huge value must not be stored, echoed or
logged. The OGGM environment comes from the shared cache (built on first use).
"""

import json
import os
import sqlite3
import threading
import time

import psutil
import pytest

from support.local_hub import running_hub, wait_until

PASSWORD = "firn-line-2026"
SECRET = "write-key-5f1c9a0e7d"


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    # a bucket credential in the hub's environment (where a {env: VAR} catalog reference
    # finds it for the hub-side mount processes): no session may hold it
    env = {"OGGMHUB_COHORT_CHECK_INTERVAL": "0", "OGGMHUB_TEST_BUCKET_KEY": SECRET}
    with running_hub(tmp_path_factory.mktemp("trust-options"), env=env) as hub:
        yield hub


@pytest.fixture(scope="module")
def bob(hub):
    return hub.new_user("bob", PASSWORD)


def stored_options(hub, name):
    with sqlite3.connect(os.path.join(hub.data_dir, "jupyterhub.sqlite")) as db:
        rows = db.execute("SELECT s.user_options FROM spawners s JOIN users u ON s.user_id = u.id "
                          "WHERE u.name = ? AND s.name = ''", (name,)).fetchall()
    return json.loads(rows[0][0]) if rows and rows[0][0] else {}


def no_server(hub, session, name):
    model = hub.api(session, "GET", f"/users/{name}").json()
    return model["servers"] == {} and model["pending"] is None


def test_an_empty_environment_is_refused_with_the_list(hub, bob):
    r = hub.api(bob, "POST", "/users/bob/server", json={"profile": ""})
    assert r.status_code == 400, r.text
    assert r.json()["message"].endswith("the environment is empty; choose one of: oggm, slicer, fiji")
    assert no_server(hub, bob, "bob") and stored_options(hub, "bob") == {}


def test_a_form_field_the_environment_does_not_offer_is_refused(hub, bob):
    bob.get(f"{hub.url}/hub/spawn")
    r = bob.post(f"{hub.url}/hub/spawn", data={
        "_xsrf": bob.cookies.get("_xsrf"), "profile": "oggm", "profile-option-oggm--size": "small",
        "profile-option-oggm--gpu": "t4",
    })
    assert "OGGM offers no gpu option; its options: size" in r.text, r.text[-3000:]
    assert no_server(hub, bob, "bob") and stored_options(hub, "bob") == {}


def test_a_refused_request_is_not_replayed_and_huge_values_go_nowhere(hub, bob):
    good = {"profile": "oggm", "size": "small"}
    r = hub.api(bob, "POST", "/users/bob/server", json=good)
    assert r.status_code in (201, 202), r.text
    hub.wait_for_server(bob, "bob")
    hub.api(bob, "DELETE", "/users/bob/server")
    hub.stop_servers()
    canonical = stored_options(hub, "bob")
    assert canonical == {"profile": "oggm", "size": "small", "gpu": "none", "datasets": []}

    r = hub.api(bob, "POST", "/users/bob/server", json={"profile": "oggm", "image": "x"})
    assert r.status_code == 400 and "unknown server option 'image'" in r.json()["message"]
    assert stored_options(hub, "bob") == canonical  # as it was

    log_before = len(hub.log())
    huge = "g" * 1_000_000
    r = hub.api(bob, "POST", "/users/bob/server", json={"profile": huge})
    assert r.status_code == 400 and len(r.content) < 2000, r.text[:300]
    message = r.json()["message"]
    assert "server option 'profile' is too long" in message and "g" * 41 not in message, message
    assert stored_options(hub, "bob") == canonical
    db_size = os.path.getsize(os.path.join(hub.data_dir, "jupyterhub.sqlite"))
    assert db_size < 1_000_000, db_size
    assert len(hub.log()) - log_before < 20_000  # no megabytes of log per request
    assert no_server(hub, bob, "bob")

    # a start with no body, by bob and by the admin, uses the previous (good) options
    r = hub.api(bob, "POST", "/users/bob/server")
    assert r.status_code in (201, 202), r.text
    model = hub.wait_for_server(bob, "bob")
    assert model["servers"][""]["user_options"]["profile"] == "oggm"
    [server] = _server_processes("bob")
    assert not [k for k, v in server.environ().items() if SECRET in v]  # the session holds no credential
    hub.stop_servers()
    r = hub.api(hub.admin(), "POST", "/users/bob/server")
    assert r.status_code in (201, 202), r.text
    hub.wait_for_server(bob, "bob")
    hub.stop_servers()


def _processes_mentioning(text):
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if text in " ".join(proc.info["cmdline"] or []):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _server_processes(username):
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any("jupyterhub-singleuser" in p for p in proc.info["cmdline"] or []) \
                    and proc.environ().get("JUPYTERHUB_USER") == username:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def test_a_stop_while_the_mount_comes_up_leaves_no_mount_no_mount_process_no_server(hub):
    """F7: the mount runs in a thread; a stop during the start waits for it and undoes it."""
    session = hub.new_user("halt", PASSWORD)
    mounts = os.path.join(hub.data_dir, "mounts", "halt")
    log_start = len(hub.log())
    # the POST answers only when the start is done or 10 s have passed: send it aside
    posted = {}
    thread = threading.Thread(target=lambda: posted.update(
        r=hub.api(session, "POST", "/users/halt/server", json={"profile": "oggm"})))
    thread.start()
    wait_until(lambda: "halt: Mounting dataset" in hub.log()[log_start:] or "halt: Datasets are not mounted" in hub.log()[log_start:],
               300, "halt's start reaching the mounts", every=0.02)
    assert "halt: Datasets are not mounted" not in hub.log()[log_start:], "no FUSE here: the case cannot be made"
    r = hub.api(session, "DELETE", "/users/halt/server")
    assert r.status_code in (202, 204), r.text
    thread.join()
    assert posted["r"].status_code in (201, 202, 500), posted["r"].text
    wait_until(lambda: no_server(hub, session, "halt"), 120, "halt's server to stop")
    time.sleep(3)  # what a leaked mount thread would do, it has done by now
    mounted = [os.path.join(root, d) for root, dirs, _ in os.walk(mounts) for d in dirs
               if os.path.ismount(os.path.join(root, d))]
    assert mounted == []
    assert _processes_mentioning(mounts) == []
    assert _server_processes("halt") == []
    assert "Interrupting spawner halt" in hub.log()[log_start:]  # it was a stop during the start
