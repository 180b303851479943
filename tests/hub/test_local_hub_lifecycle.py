"""The local hub over time: a hub restart keeps state, homes and running servers; idle
servers are culled. Real hub, real proxy, real servers from the built OGGM environment."""

import os
import signal
import time

import psutil
import pytest
import requests

from oggmhub.backends.local.environments import default_root
from support.local_hub import LocalHub

ENV = {"OGGMHUB_ENV_CACHE": str(default_root())}


def server_pid(hub, username):
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any("jupyterhub-singleuser" in p for p in proc.info["cmdline"] or []) \
                    and proc.environ().get("JUPYTERHUB_USER") == username \
                    and proc.environ().get("HOME", "").startswith(hub.data_dir):
                return proc.pid
        except psutil.Error:
            continue
    return None


def start_server(hub, session, username, options=None):
    r = hub.api(session, "POST", f"/users/{username}/server", json=options or {"profile": "oggm"})
    assert r.status_code in (201, 202), r.text
    return hub.wait_for_server(session, username)


def test_a_hub_restart_keeps_accounts_homes_and_running_servers(tmp_path):
    hub = LocalHub(tmp_path / "data", env=ENV).start()
    try:
        session = hub.new_user("ada", "crevasse-depth-9")
        start_server(hub, session, "ada")
        pid = server_pid(hub, "ada")
        assert pid
        home = os.path.join(hub.data_dir, "homes", "ada")
        with open(os.path.join(home, "notes.txt"), "w") as f:
            f.write("mass balance")
        password = hub.admin_password

        hub.stop()  # the hub goes away; ada's server keeps running
        assert psutil.pid_exists(pid)
        hub.start()
        assert hub.admin_password == password  # not created (nor printed) again
        assert hub.log().count("This is shown only once") == 1

        session = hub.login("ada", "crevasse-depth-9")  # the account survived
        model = hub.api(session, "GET", "/users/ada").json()
        assert model["servers"][""]["ready"] is True  # found again, by pid
        # and reachable again through the (restarted) proxy
        assert requests.get(f"{hub.url}/user/ada/api", timeout=10).status_code == 200
        assert open(os.path.join(home, "notes.txt")).read() == "mass balance"

        # the server dies while the hub is down: it is cleanly marked stopped
        hub.stop()
        os.killpg(pid, signal.SIGKILL)
        time.sleep(0.5)
        hub.start()
        session = hub.login("ada", "crevasse-depth-9")
        assert hub.api(session, "GET", "/users/ada").json()["servers"] == {}
        # and starts again on the same home
        start_server(hub, session, "ada")
        assert os.path.exists(os.path.join(home, "notes.txt"))
    finally:
        hub.stop(servers=True)
    assert server_pid(hub, "ada") is None


def test_idle_servers_are_culled(tmp_path):
    hub = LocalHub(tmp_path / "data", env=ENV, idle_timeout=20).start()
    try:
        session = hub.new_user("idle", "nunatak-peak-3")
        start_server(hub, session, "idle")
        pid = server_pid(hub, "idle")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if hub.api(session, "GET", "/users/idle").json()["servers"] == {}:
                break
            time.sleep(2)
        else:
            pytest.fail("the idle server was not culled within 120 s (timeout 20 s)")
        assert "idle-culler" in hub.log()
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    finally:
        hub.stop(servers=True)
