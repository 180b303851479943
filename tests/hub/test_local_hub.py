"""The local hub over HTTP: accounts, approval, bad spawn requests (no browser needed)."""

import pytest

from support.local_hub import LocalHub, free_port


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    hub = LocalHub(tmp_path_factory.mktemp("hub") / "data").start()
    yield hub
    hub.stop(servers=True)


@pytest.fixture(scope="module")
def bob(hub):
    session = hub.new_user("bob", "snow-line-7777")
    session.username = "bob"
    return session


def test_first_admin_password_is_random_and_told_once(hub):
    assert hub.admin_password and len(hub.admin_password) >= 12
    assert hub.log().count(hub.admin_password) == 1
    hub.admin()  # it works
    with pytest.raises(PermissionError):
        hub.login("admin", "admin")


def test_sign_up_needs_admin_approval(hub):
    hub.signup("ada", "glacier-flow-1")
    with pytest.raises(PermissionError):
        hub.login("ada", "glacier-flow-1")
    hub.approve("ada")
    session = hub.login("ada", "glacier-flow-1")
    assert hub.api(session, "GET", "/user").json()["name"] == "ada"


@pytest.mark.parametrize(
    "body, message",
    [
        ({"profile": "matlab"}, "unknown environment 'matlab'; choose one of: oggm, slicer, fiji"),
        ({"profile": "oggm", "size": "huge"}, "size 'huge' is not offered for OGGM; choose one of: small, medium, large"),
        ({"profile": "oggm", "gpu": "t4"}, "GPU variant 't4' is not offered for OGGM"),
        ({"profile": "oggm", "cmd": "/bin/sh"}, "unknown server option 'cmd'"),
        ({"profile": 3}, "server option 'profile' must be a string"),
    ],
)
def test_bad_spawn_requests_are_refused_with_the_reason(hub, bob, body, message):
    session = bob
    r = hub.api(session, "POST", f"/users/{session.username}/server", json=body)
    assert r.status_code == 400, r.text
    assert message in r.json()["message"]
    model = hub.api(session, "GET", f"/users/{session.username}").json()
    assert model["servers"] == {} and model["pending"] is None


def test_malformed_body_is_refused(hub, bob):
    session = bob
    r = hub.api(session, "POST", f"/users/{session.username}/server", data=b"{not json",
                headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert hub.api(session, "GET", f"/users/{session.username}").json()["servers"] == {}


def test_an_environment_this_machine_cannot_build_says_what_is_missing(hub, bob):
    r = hub.api(bob, "POST", "/users/bob/server", json={"profile": "slicer"})
    if r.status_code in (201, 202):  # the hub answered before the build gave up
        with pytest.raises(RuntimeError):
            hub.wait_for_server(bob, "bob", timeout=600)
        message = hub.log()
    else:
        assert r.status_code == 500
        message = r.json()["message"]
    assert "slicer" in message and ("apt-get install" in message or "download" in message), message[-2000:]
    assert hub.api(bob, "GET", "/users/bob").json()["servers"] == {}


@pytest.mark.parametrize("option", ["--idle-timeout", "--cohort-check-interval"])
def test_oggmhub_hub_refuses_a_negative_interval_and_starts_nothing(tmp_path, option):
    import subprocess
    import sys

    data = tmp_path / "data"
    result = subprocess.run([sys.executable, "-m", "oggmhub", "hub", "--data-dir", str(data), option, "-5"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"{option} must be 0 (off) or a number of seconds, not -5" in result.stderr
    assert not data.exists()


def test_a_shared_account_hub_says_so_on_the_welcome_page_and_at_start_up(hub):
    """The harness's default mode is --shared-account (tests/local_hub.py)."""
    import requests

    page = requests.get(f"{hub.url}/hub/login", timeout=30).text
    assert 'id="oggmhub-isolation-note"' in page
    assert "runs as the same system account" in page and "read each other&#39;s files" in page
    assert "(--shared-account): users can read each other's files" in hub.log()


@pytest.mark.skipif(__import__("os").geteuid() != 0, reason="accounts mode is the default as root only")
def test_as_root_a_data_dir_accounts_cannot_reach_is_refused_naming_the_options():
    import os
    import pathlib

    from support.local_hub import accounts_folder

    with accounts_folder() as top:
        closed = pathlib.Path(top) / "closed"
        closed.mkdir(mode=0o700)
        os.chmod(closed, 0o700)
        _refused(closed)


def _refused(closed):
    import os
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "oggmhub", "hub", "--data-dir", str(closed / "data"),
                             "--port", str(free_port()), "--hub-port", str(free_port(2))],
                            capture_output=True, text=True, timeout=60, env={**os.environ, "OGGMHUB_ENV_CACHE": ""})
    assert result.returncode == 2, result.stderr
    assert f"{closed} is mode 0700" in result.stderr and "--shared-account" in result.stderr
    assert "--data-dir" in result.stderr
    assert not (closed / "data").exists()
