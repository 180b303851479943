"""Organisers act only on accounts they own or that agreed (C05), and a username whose
folders would be another user's is refused wherever an account is made (T20), on one
real local hub.

C05 as reported: an organiser added an ordinary user who was in no cohort, stopped their
running server and closed the cohort, locking them out. Here that add is an invitation:
until the user accepts (on their home page) the organiser can neither stop their server
nor lock them out by closing; once they accept, the cohort's rules apply. Admins' adds
stay direct.

kubespawner's ``safe_slug`` gives two usernames the same folder name only on a 32-bit hash
collision, so this hub's config stands in a folder-name function that collides (``adv.vic``
and ``adv-vic`` share a folder) to show every way of making an account refuses the clash.
"""

import os
from datetime import timedelta

import pytest
import requests

from oggmhub.cohorts.model import now_utc
from support.local_hub import REPO, LocalHub, _xsrf

PASSWORD = "serac-2026-x"
NOW = now_utc()
WINDOW = {"start": (NOW - timedelta(hours=1)).isoformat(), "end": (NOW + timedelta(days=2)).isoformat()}
COLLIDING = """
import oggmhub.user_folders as _folders
_real = _folders.folder_name
_folders.folder_name = lambda name: _real(name.replace(".", "-"))  # a stand-in that collides (see the test)
"""


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    folder = tmp_path_factory.mktemp("invitations")
    config = folder / "jupyterhub_config.py"
    config.write_text(f"c = get_config()\nload_subconfig({os.path.join(REPO, 'hub_config', 'jupyterhub_config.py')!r})\n"
                      + COLLIDING)
    from support.local_hub import env_cache

    hub = LocalHub(folder / "data", config=str(config), env={"OGGMHUB_COHORT_CHECK_INTERVAL": "0",
                                                             "OGGMHUB_ENV_CACHE": env_cache()}).start()
    try:
        yield hub
    finally:
        hub.stop(servers=True)


def token_session(hub, session, name):
    token = hub.api(session, "POST", f"/users/{name}/tokens", json={"note": "test"}).json()["token"]
    s = requests.Session()
    s.headers["Authorization"] = f"token {token}"
    return s


def group_users(hub, name):
    return sorted(hub.api(hub.admin(), "GET", f"/groups/cohort-{name}").json()["users"])


def server(hub, name):
    return hub.api(hub.admin(), "GET", f"/users/{name}").json()["servers"].get("")


def create(hub, name, **extra):
    r = hub.api(hub.admin(), "POST", "/cohorts", json={"name": name, "environments": ["oggm"], **WINDOW, **extra})
    assert r.status_code == 201, r.text
    return r.json()


def test_an_organisers_add_of_an_existing_account_is_an_invitation_it_cannot_act_on(hub):
    from oggmhub.backends.local.environments import build_local_env, default_root
    from oggmhub.catalog import load_catalog

    build_local_env("oggm", load_catalog(hub.catalog), default_root(), context=os.path.join(REPO, "images", "oggm"))
    create(hub, "trap", organisers=["orga"])
    create(hub, "field", organisers=["orga"], join_code=True)
    orga = token_session(hub, hub.new_user("orga", PASSWORD), "orga")
    walker = hub.new_user("walker", PASSWORD)  # an ordinary user, in no cohort, working
    assert hub.api(walker, "POST", "/users/walker/server", json={}).status_code in (201, 202)
    hub.wait_for_server(walker, "walker")

    for cohort in ("trap", "field"):
        fresh = f"fresh-{cohort}"  # a new account: the cohort creates and owns it
        r = hub.api(orga, "POST", f"/cohorts/{cohort}/members", json={"usernames": ["walker", fresh]})
        assert r.status_code == 200, r.text
        assert (r.json()["added"], r.json()["invited"]) == ([fresh], ["walker"])
        assert group_users(hub, cohort) == [fresh]
        assert hub.api(orga, "GET", f"/cohorts/{cohort}").json()["invited"] == ["walker"]
    # the organiser cannot stop the invited user's server, nor see them
    assert hub.api(orga, "DELETE", "/users/walker/server").status_code in (403, 404)
    assert hub.api(orga, "GET", "/users/walker").status_code in (403, 404)
    # closing a cohort the user never accepted stops nothing of theirs and locks nothing
    r = hub.api(orga, "POST", "/cohorts/trap/close")
    assert r.status_code == 200 and "walker" not in r.json().get("stopped", []), r.text
    assert server(hub, "walker")["ready"]
    assert hub.api(walker, "GET", "/users/walker").json()["servers"][""]["ready"]
    log = hub.log()
    assert "oggmhub audit: orga invited existing accounts (members once they accept) in cohort trap (1): walker" in log
    assert "stopping walker's server" not in log

    # the home page shows the open cohort's invitation (the closed one's is gone); accepting makes a member
    home = walker.get(f"{hub.url}/hub/home").text
    assert 'data-cohort="field"' in home and 'data-cohort="trap"' not in home and "invites you, from orga" in home
    r = walker.post(f"{hub.url}/hub/cohorts/field/invitation", data={"action": "accept", "_xsrf": _xsrf(walker)})
    assert r.status_code == 200 and 'data-cohort="field"' not in r.text, r.text[-1000:]
    assert group_users(hub, "field") == ["fresh-field", "walker"]
    assert hub.api(orga, "GET", "/cohorts/field").json()["invited"] == []
    assert "oggmhub audit: walker accepted the invitation in cohort field (1): walker" in hub.log()
    # now they agreed: the organiser may stop their server
    assert hub.api(orga, "DELETE", "/users/walker/server").status_code in (202, 204)


def test_invitations_are_declined_withdrawn_or_answered_with_the_join_code_and_admins_add_directly(hub):
    orga = token_session(hub, hub.login("orga", PASSWORD), "orga")
    dora = hub.new_user("dora", PASSWORD)
    eve = hub.new_user("eve", PASSWORD)
    hub.new_user("finn", PASSWORD)
    assert hub.api(orga, "POST", "/cohorts/field/members", json={"usernames": ["dora", "eve"]}).json()["invited"] == ["dora", "eve"]
    page = hub.login("orga", PASSWORD).get(f"{hub.url}/hub/cohorts/field").text
    assert '<span class="invited-user">dora</span>' in page and '<span class="invited-user">eve</span>' in page
    r = hub.api(dora, "POST", "/cohorts/field/invitation", json={"action": "decline"})
    assert r.status_code == 200 and r.json()["member"] is False
    r = hub.api(dora, "POST", "/cohorts/field/invitation", json={"action": "accept"})
    assert r.status_code == 404 and "'dora' has no invitation to cohort 'field'" in r.json()["message"]
    r = hub.api(orga, "DELETE", "/cohorts/field/members", json={"usernames": ["eve"]})
    assert r.status_code == 200 and r.json()["withdrawn"] == ["eve"] and r.json()["stopped"] == []
    assert hub.api(eve, "POST", "/cohorts/field/invitation", json={"action": "accept"}).status_code == 404
    assert "dora" not in group_users(hub, "field") and "eve" not in group_users(hub, "field")
    # a logged-in user joins with the code themselves (their own choice); a wrong code is refused
    code = hub.api(hub.admin(), "POST", "/cohorts/field/join-code").json()["join_code"]
    assert hub.api(dora, "POST", "/cohorts/join", json={"join_code": "wrong"}).status_code == 403
    r = hub.api(dora, "POST", "/cohorts/join", json={"join_code": code})
    assert r.status_code == 200 and "dora" in group_users(hub, "field")
    # an admin's add is direct, as before
    r = hub.api(hub.admin(), "POST", "/cohorts/field/members", json={"usernames": ["finn"]})
    assert r.status_code == 200 and r.json()["added"] == ["finn"] and r.json()["invited"] == []


def signup_form(hub, username, code=""):
    s = requests.Session()
    s.get(f"{hub.url}/hub/signup")
    return s.post(f"{hub.url}/hub/signup", data={
        "username": username, "signup_password": PASSWORD, "signup_password_confirmation": PASSWORD,
        "join_code": code, "_xsrf": _xsrf(s)})


def test_a_username_sharing_another_users_folders_is_refused_everywhere(hub):
    """T20: ``adv.vic``'s folders would be ``adv-vic``'s (this hub's stand-in folder names)."""
    hub.new_user("adv-vic", PASSWORD)
    clash = "its folders would be named &#39;adv-vic&#39;, which are those of the existing user &#39;adv-vic&#39;"
    r = signup_form(hub, "adv.vic")
    assert r.status_code == 400 and clash in r.text
    code = hub.api(hub.admin(), "POST", "/cohorts/field/join-code").json()["join_code"]
    r = signup_form(hub, "adv.vic", code)
    assert r.status_code == 400 and clash in r.text
    r = hub.api(hub.admin(), "POST", "/users", json={"usernames": ["adv.vic"]})
    assert r.status_code == 400 and "which are those of the existing user 'adv-vic'" in r.json()["message"]
    r = hub.api(hub.admin(), "POST", "/users/adv.vic")  # JupyterHub says only "Failed to create user"
    assert r.status_code == 400
    assert "User 'adv.vic' refused: the username 'adv.vic' is not available: its folders would be" in hub.log()
    orga = token_session(hub, hub.login("orga", PASSWORD), "orga")
    for who in (orga, hub.admin()):
        r = hub.api(who, "POST", "/cohorts/field/members", json={"usernames": ["adv.vic", "newcomer"]})
        assert r.status_code == 409 and "which are those of the existing user 'adv-vic'" in r.text, r.text
    # nothing was created: no account, no sign-up, no member; adv-vic's own login still works
    assert hub.api(hub.admin(), "GET", "/users/adv.vic").status_code == 404
    assert hub.api(hub.admin(), "GET", "/users/newcomer").status_code == 404
    with pytest.raises(PermissionError):
        hub.login("adv.vic", PASSWORD)
    hub.login("adv-vic", PASSWORD)
    assert "adv.vic" not in group_users(hub, "field")
    assert "Sign-up of 'adv.vic' refused: its folders would be 'adv-vic''s" in hub.log()
