"""Cohorts on a running local hub: the ``oggmhub cohort`` CLI, the organisers' page over
HTTP, joining with a code, enforcement, pre-warm with materials, closing with an export,
and state that survives a hub restart.

The OGGM environment comes from the cache (``OGGMHUB_ENV_CACHE``, built on first use).
"""

import os
import sqlite3
import subprocess
import sys
import tarfile
import time
from datetime import timedelta

import pytest
import requests

from oggmhub.cohorts.model import now_utc, parse_time
from support.local_hub import REPO, materials_repo, running_hub

PASSWORD = "ice-core-2026-x"
NOW = now_utc()
OPEN = ["--start", (NOW - timedelta(hours=1)).isoformat(), "--end", (NOW + timedelta(days=3)).isoformat()]


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    # the cohort-window service checks every second
    with running_hub(tmp_path_factory.mktemp("hub"), env={"OGGMHUB_COHORT_CHECK_INTERVAL": "1"}) as hub:
        yield hub


@pytest.fixture(scope="module")
def token(hub):
    return hub.api(hub.admin(), "POST", "/users/admin/tokens", json={"note": "cohort tests"}).json()["token"]


@pytest.fixture(scope="module")
def materials(tmp_path_factory):
    return materials_repo(tmp_path_factory.mktemp("materials"))


def cli(hub, token, *args):
    """Run ``oggmhub cohort ARGS --hub URL --token TOKEN``; (exit status, stdout, stderr)."""
    result = subprocess.run(
        [sys.executable, "-m", "oggmhub", "cohort", *args, "--hub", hub.url, "--token", token],
        capture_output=True, text=True, timeout=600, cwd=REPO,
    )
    return result.returncode, result.stdout, result.stderr


def db_rows(hub, query):
    with sqlite3.connect(os.path.join(hub.data_dir, "jupyterhub.sqlite")) as db:
        return [row[0] for row in db.execute(query)]


def cohort_groups(hub):
    return db_rows(hub, "SELECT name FROM groups WHERE name LIKE 'cohort-%' ORDER BY name")


def signup(hub, username, code, password=PASSWORD):
    s = requests.Session()
    s.get(f"{hub.url}/hub/signup")
    return s.post(f"{hub.url}/hub/signup", data={
        "username": username, "signup_password": password, "signup_password_confirmation": password,
        "join_code": code, "_xsrf": s.cookies.get("_xsrf", ""),
    })


def user_exists(hub, name):
    hub_user = hub.api(hub.admin(), "GET", f"/users/{name}").status_code == 200
    account = bool(db_rows(hub, f"SELECT username FROM users_info WHERE username = '{name}'"))
    return hub_user or account


def create(hub, token, name, *extra):
    rc, out, err = cli(hub, token, "create", name, *OPEN, *extra)
    assert rc == 0, err
    return out.split("join code: ")[1].split()[0] if "join code: " in out else None


# --- creating ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (["--env", "matlab", *OPEN], "environments: unknown environment 'matlab'; choose from: oggm, slicer, fiji"),
        (["--env", "oggm=huge", *OPEN], "environments.oggm: size 'huge' is not offered for OGGM; choose from: small, medium, large"),
        (["--env", "oggm", "--start", "2027-06-05T08:00Z", "--end", "2027-06-01T08:00Z"],
         "end: the window ends (2027-06-01 08:00 UTC) before it starts (2027-06-05 08:00 UTC)"),
        (["--env", "oggm", "--materials", "not-a-url", *OPEN], "materials.repo: 'not-a-url' is not a git repository URL"),
    ],
)
def test_bad_cohorts_are_refused_by_the_cli_and_nothing_is_created(hub, token, args, message):
    rc, out, err = cli(hub, token, "create", "broken", "--organiser", "orla", *args)
    assert rc == 1 and message in err, err
    assert "cohort-broken" not in cohort_groups(hub)
    assert db_rows(hub, "SELECT name FROM roles WHERE name = 'cohort-organiser-broken'") == []
    assert hub.api(hub.admin(), "GET", "/users/orla").status_code == 404  # no organiser account either


def test_create_show_list_and_a_duplicate_name(hub, token):
    code = create(hub, token, "glaciers", "--env", "oggm=small,medium", "--organiser", "olga",
                  "--title", "Glacier school", "--max-members", "5")
    assert code and len(code) == 14
    rc, out, err = cli(hub, token, "show", "glaciers")
    assert rc == 0 and "environments: oggm (small, medium)" in out and "organisers:   olga" in out
    rc, out, err = cli(hub, token, "list")
    assert "glaciers" in out and "open" in out
    rc, out, err = cli(hub, token, "create", "glaciers", "--env", "oggm", *OPEN)
    assert rc == 1 and "name: a cohort named 'glaciers' already exists; choose another name" in err
    assert code.replace("-", "") not in open(os.path.join(hub.data_dir, "jupyterhub.sqlite"), "rb").read().decode("latin-1")


def test_members_from_csv_all_or_nothing_with_line_numbers_and_the_size_limit(hub, token, tmp_path):
    create(hub, token, "csv-class", "--env", "oggm", "--max-members", "3", "--no-join-code")
    bad = tmp_path / "bad.csv"
    bad.write_text("username,email\nana,ana@example.org\nbad name,x@example.org\n")
    rc, out, err = cli(hub, token, "add", "csv-class", "--csv", str(bad))
    assert rc == 1 and "bad.csv:3: 'bad name' is not a valid username" in err
    assert hub.api(hub.admin(), "GET", "/groups/cohort-csv-class").json()["users"] == []
    good = tmp_path / "good.csv"
    good.write_text("username,email\nana,ana@example.org\nben,ben@example.org\n")
    rc, out, err = cli(hub, token, "add", "csv-class", "--csv", str(good))
    assert rc == 0 and "added 2: ana, ben" in out
    rc, out, err = cli(hub, token, "add", "csv-class", "cat", "dan")
    assert rc == 1 and "limited to 3 members: it has 2, and adding 2 new would make 4; nobody was added" in err
    assert sorted(hub.api(hub.admin(), "GET", "/groups/cohort-csv-class").json()["users"]) == ["ana", "ben"]
    rc, out, err = cli(hub, token, "remove", "csv-class", "ben", "zed")
    assert rc == 1 and "not members of cohort 'csv-class': zed; nobody was removed" in err


# --- joining -------------------------------------------------------------------------------


def test_a_join_code_signs_up_approved_into_the_cohort_and_bad_codes_create_no_user(hub, token):
    code = create(hub, token, "join-class", "--env", "oggm=small", "--max-members", "1")
    r = signup(hub, "wrongcode", "AAAA-BBBB-CCCC")
    assert r.status_code == 400 and "the join code is not valid" in r.text and "No account was created" in r.text
    assert not user_exists(hub, "wrongcode")
    r = signup(hub, "jo", code.lower())
    assert r.status_code == 200 and "Welcome to cohort join-class" in r.text
    session = hub.login("jo", PASSWORD)  # approved at once
    assert hub.api(session, "GET", "/user").json()["groups"] == ["cohort-join-class"]
    r = signup(hub, "late", code)
    assert r.status_code == 400 and "cohort &#39;join-class&#39; is full (1 members)" in r.text
    assert not user_exists(hub, "late")


def test_an_expired_code_is_refused_and_creates_no_user(hub, token):
    # a window that ends while the test waits; wide enough for a slow `cohort create`
    soon = (now_utc() + timedelta(seconds=12)).isoformat()
    rc, out, err = cli(hub, token, "create", "short", "--env", "oggm", "--start", NOW.isoformat(), "--end", soon)
    assert rc == 0, err
    code = out.split("join code: ")[1].split()[0]
    rc, out, err = cli(hub, token, "add", "short", "sam")
    assert rc == 0, err
    time.sleep(max(0, (parse_time(soon, "end") - now_utc()).total_seconds()) + 1)
    r = signup(hub, "tardy", code)
    assert r.status_code == 400 and "the join code has expired: cohort &#39;short&#39; ended on" in r.text
    assert not user_exists(hub, "tardy")
    # and a member's spawn is refused, naming the window
    r = hub.api(hub.admin(), "POST", "/users/sam/server", json={})
    assert r.status_code == 403, r.text
    assert "Your server can only start during your cohort's window: cohort 'short' ended on" in r.json()["message"]


def test_a_running_server_stops_when_its_cohorts_window_ends(hub, token):
    from oggmhub.backends.local.environments import build_local_env, default_root
    from oggmhub.catalog import load_catalog

    # built first (minutes on a cold cache), so that the window below times a start, not a build
    build_local_env("oggm", load_catalog(os.path.join(REPO, "hub_config", "catalog.yaml")), default_root(),
                    context=os.path.join(REPO, "images", "oggm"))
    end = now_utc() + timedelta(seconds=40)  # long enough to join and start a built environment, on a busy machine too
    rc, out, err = cli(hub, token, "create", "evening", "--env", "oggm", "--start", NOW.isoformat(), "--end", end.isoformat())
    assert rc == 0, err
    assert signup(hub, "owl", out.split("join code: ")[1].split()[0]).status_code == 200
    owl = hub.login("owl", PASSWORD)
    assert hub.api(owl, "POST", "/users/owl/server", json={}).status_code in (201, 202)
    hub.wait_for_server(owl, "owl")
    assert now_utc() < end, "the server took longer to start than the window lasted; widen it"
    time.sleep(2)
    assert "" in hub.api(owl, "GET", "/users/owl").json()["servers"], "stopped while the window was open"

    deadline = time.monotonic() + (end - now_utc()).total_seconds() + 30
    while hub.api(owl, "GET", "/users/owl").json()["servers"] and time.monotonic() < deadline:
        time.sleep(0.5)
    assert hub.api(owl, "GET", "/users/owl").json()["servers"] == {}, "the server outlived its cohort's window"
    assert now_utc() >= end
    assert "stopping owl's server: cohort 'evening' ended on" in hub.log()
    assert hub.log().count("stopping owl's server") == 1, "asked to stop again while stopping"


# --- enforcement and organisers ------------------------------------------------------------------


def test_a_member_sees_and_may_start_only_the_cohorts_environments(hub, token):
    code = create(hub, token, "picker-class", "--env", "oggm=small,medium")
    assert signup(hub, "mia", code).status_code == 200
    mia = hub.login("mia", PASSWORD)
    form = mia.get(f"{hub.url}/hub/spawn").text
    assert "profile-item-oggm" in form and "profile-item-fiji" not in form and "profile-item-slicer" not in form
    assert 'value="large"' not in form
    for body, message in [({"profile": "fiji"}, "unknown environment 'fiji'; choose one of: oggm"),
                          ({"profile": "oggm", "size": "large"}, "size 'large' is not offered for OGGM; choose one of: small, medium")]:
        r = hub.api(mia, "POST", "/users/mia/server", json=body)
        assert r.status_code == 400 and message in r.json()["message"]
    assert hub.api(mia, "GET", "/user").json()["servers"] == {}
    # members get no Cohorts link and no cohort API
    assert "oggmhub-cohorts-link" not in mia.get(f"{hub.url}/hub/home").text
    assert hub.api(mia, "GET", "/cohorts/picker-class").status_code == 403


def test_an_organiser_manages_only_their_own_cohort(hub, token):
    olga = hub.new_user("olga", PASSWORD)  # named organiser of 'glaciers' before she had an account
    olga_token = hub.api(olga, "POST", "/users/olga/tokens", json={"note": "t"}).json()["token"]
    rc, out, err = cli(hub, olga_token, "list")
    assert rc == 0 and out.split()[0] == "glaciers" and "csv-class" not in out
    assert "oggmhub-cohorts-link" in olga.get(f"{hub.url}/hub/home").text
    rc, out, err = cli(hub, olga_token, "add", "glaciers", "gus")
    assert rc == 0, err
    rc, out, err = cli(hub, olga_token, "show", "csv-class")
    assert rc == 1 and "only hub admins and the organisers of cohort 'csv-class' may manage it" in err
    rc, out, err = cli(hub, olga_token, "create", "mine", "--env", "oggm", *OPEN)
    assert rc == 1 and "only hub admins create cohorts" in err
    # JupyterHub's own API lets her see her members, not others
    assert hub.api(olga, "GET", "/users/gus").status_code == 200
    assert hub.api(olga, "GET", "/users/ana").status_code == 404


# --- pre-warm, materials, closing ------------------------------------------------------------------


def test_admins_change_a_cohorts_organisers_and_the_role_follows(hub, token):
    zoe = hub.new_user("zoe", PASSWORD)
    zoe_token = hub.api(zoe, "POST", "/users/zoe/tokens", json={"note": "t"}).json()["token"]
    assert cli(hub, zoe_token, "show", "glaciers")[0] == 1
    rc, out, err = cli(hub, token, "organisers", "glaciers", "--add", "zoe")
    assert rc == 0 and out.strip() == "organisers of cohort glaciers: olga, zoe", err
    assert cli(hub, zoe_token, "show", "glaciers")[0] == 0
    # an organiser does not choose the other organisers
    rc, out, err = cli(hub, zoe_token, "organisers", "glaciers", "--remove", "olga")
    assert rc == 1 and "only hub admins change the organisers of cohort 'glaciers'" in err
    # a bad request names what was wrong and changes nothing (no account is made for ivy)
    rc, out, err = cli(hub, token, "organisers", "glaciers", "--add", "ivy", "--remove", "nobody")
    assert rc == 1 and "remove: 'nobody' is not an organiser of cohort 'glaciers'" in err
    assert hub.api(hub.admin(), "GET", "/users/ivy").status_code == 404
    rc, out, err = cli(hub, token, "organisers", "glaciers", "--remove", "zoe")
    assert rc == 0 and out.strip() == "organisers of cohort glaciers: olga", err
    rc, out, err = cli(hub, zoe_token, "show", "glaciers")
    assert rc == 1 and "only hub admins and the organisers of cohort 'glaciers' may manage it" in err


def test_prewarm_pulls_the_materials_and_close_exports_before_deleting_homes(hub, token, materials, tmp_path):
    create(hub, token, "workshop", "--env", "oggm=small", "--materials", materials, "--no-join-code")
    assert cli(hub, token, "add", "workshop", "pia", "rui")[0] == 0
    rc, out, err = cli(hub, token, "prewarm", "workshop", "--concurrency", "2", "--json")
    assert rc == 0, out + err + hub.log()[-3000:]
    assert "[   2/2]" in out and '"ready": 2' in out and '"lost": 0' in out
    for name in ("pia", "rui"):
        assert os.path.exists(os.path.join(hub.data_dir, "homes", name, "tutorials", "01-glacier-flowline.ipynb"))
    with open(os.path.join(hub.data_dir, "homes", "pia", "tutorials", "my-notes.txt"), "w") as f:
        f.write("calving front at 3.2 km")

    archive = tmp_path / "workshop.tar.gz"
    rc, out, err = cli(hub, token, "close", "workshop", "--export", str(archive), "--delete-homes")
    assert rc == 0, err
    assert "servers stopped: pia, rui" in out and "homes deleted after the export: pia, rui" in out
    with tarfile.open(archive) as tar:
        assert tar.extractfile("pia/tutorials/my-notes.txt").read() == b"calving front at 3.2 km"
        assert "rui/tutorials/01-glacier-flowline.ipynb" in tar.getnames()
    assert not os.path.exists(os.path.join(hub.data_dir, "homes", "pia"))
    model = hub.api(hub.admin(), "GET", "/users/pia").json()
    assert model["servers"] == {}
    r = hub.api(hub.admin(), "POST", "/users/pia/server", json={})
    assert r.status_code == 403 and "cohort 'workshop' was closed on" in r.json()["message"]


def test_no_home_is_deleted_without_a_successful_export(hub, token, tmp_path):
    create(hub, token, "keep", "--env", "oggm", "--no-join-code")
    assert cli(hub, token, "add", "keep", "kim")[0] == 0
    home = os.path.join(hub.data_dir, "homes", "kim")
    os.makedirs(home)
    with open(os.path.join(home, "thesis.txt"), "w") as f:
        f.write("chapter 1")
    admin = hub.admin()
    r = hub.api(admin, "POST", "/cohorts/keep/delete-homes", json={"export": "x", "sha256": "y"})
    assert r.status_code == 409 and "close it before deleting homes" in r.json()["message"]
    rc, out, err = cli(hub, token, "close", "keep", "--delete-homes")
    assert rc == 1 and "--delete-homes needs --export FILE" in err
    assert cli(hub, token, "close", "keep")[0] == 0
    assert os.path.exists(os.path.join(home, "thesis.txt"))  # closing keeps homes
    r = hub.api(admin, "POST", "/cohorts/keep/delete-homes", json={"export": "20200101T000000Z", "sha256": "y"})
    assert r.status_code == 409 and "homes are deleted only after an export succeeded" in r.json()["message"]
    rc, out, err = cli(hub, token, "export", "keep", str(tmp_path / "keep.tar.gz"))
    assert rc == 0, err
    export = hub.api(admin, "GET", "/cohorts/keep").json()["exports"][0]
    r = hub.api(admin, "POST", "/cohorts/keep/delete-homes", json={"export": export["id"], "sha256": "0" * 64})
    assert r.status_code == 409 and "download and check the archive first" in r.json()["message"]
    assert os.path.exists(os.path.join(home, "thesis.txt"))


# --- the page ----------------------------------------------------------------------------------


def test_the_page_creates_a_cohort_and_shows_errors_and_the_join_code(hub):
    admin = hub.admin()
    page = admin.get(f"{hub.url}/hub/cohorts")
    assert page.status_code == 200 and 'id="create-cohort"' in page.text
    assert "oggmhub-cohorts-link" in admin.get(f"{hub.url}/hub/home").text
    form = {"_xsrf": admin.cookies.get("_xsrf"), "name": "page-class", "start": "2027-06-05T08:00Z",
            "end": "2027-06-01T08:00Z", "env-oggm": "1", "size-oggm-small": "1"}
    r = admin.post(f"{hub.url}/hub/cohorts", data=form)
    assert r.status_code == 400 and "the window ends (2027-06-01 08:00 UTC) before it starts" in r.text
    assert "cohort-page-class" not in cohort_groups(hub)
    form.update(start=OPEN[1], end=OPEN[3], max_members="10")
    r = admin.post(f"{hub.url}/hub/cohorts", data=form)
    assert r.status_code == 200 and 'id="join-code"' in r.text
    assert hub.api(admin, "GET", "/cohorts/page-class").json()["environments"] == {"oggm": ["small"]}
    r = admin.post(f"{hub.url}/hub/cohorts/page-class", data={
        "_xsrf": admin.cookies.get("_xsrf"), "action": "add", "csv": "username\nlea\n\"broken"})
    assert r.status_code == 400 and "members.csv:3: not valid CSV" in r.text


# --- restart (last: it restarts the module's hub) -----------------------------------------------------


def test_cohorts_roles_and_codes_survive_a_hub_restart(hub, token):
    code = create(hub, token, "restart-class", "--env", "oggm", "--organiser", "olga")
    hub.stop()
    hub.start()
    rc, out, err = cli(hub, token, "list")
    assert rc == 0 and "restart-class" in out and "glaciers" in out
    assert db_rows(hub, "SELECT name FROM roles WHERE name = 'cohort-organiser-restart-class'")
    olga = hub.login("olga", PASSWORD)
    olga_token = hub.api(olga, "POST", "/users/olga/tokens", json={"note": "after restart"}).json()["token"]
    rc, out, err = cli(hub, olga_token, "show", "restart-class")
    assert rc == 0, err
    assert signup(hub, "newcomer", code).status_code == 200
    assert "newcomer" in hub.api(hub.admin(), "GET", "/groups/cohort-restart-class").json()["users"]
