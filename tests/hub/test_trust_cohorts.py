"""Cohort powers stay inside the cohort (issue 14, F1 and F3), on a real local hub.

An organiser tries to take over accounts (an admin, another cohort's organiser and
member) by adding them to their cohort, exports and deletes homes of accounts their
cohort does not own, and a join code is used to claim another cohort's account. Each
is refused (naming the account and the rule) or skipped (with the reason); the tests
check what was created (nothing) and what is left (every home that is not the cohort's).
"""

import os
from datetime import timedelta

import pytest
import requests

from oggmhub.cohorts.model import now_utc
from support.local_hub import running_hub

PASSWORD = "moraine-2026-x"
NOW = now_utc()
WINDOW = {"start": (NOW - timedelta(hours=1)).isoformat(), "end": (NOW + timedelta(days=2)).isoformat()}


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with running_hub(tmp_path_factory.mktemp("trust-hub"), env={"OGGMHUB_COHORT_CHECK_INTERVAL": "0"}) as hub:
        yield hub


def token_session(hub, session, name):
    token = hub.api(session, "POST", f"/users/{name}/tokens", json={"note": "trust"}).json()["token"]
    s = requests.Session()
    s.headers["Authorization"] = f"token {token}"
    return s


@pytest.fixture(scope="module")
def world(hub):
    """Cohorts ca (organiser orga) and cb (organiser orgb, member bmember); a plain user."""
    admin = hub.admin()
    for name, organiser in (("ca", "orga"), ("cb", "orgb")):
        r = hub.api(admin, "POST", "/cohorts", json={"name": name, "environments": ["oggm"], "organisers": [organiser],
                                                    "join_code": True, **WINDOW})
        assert r.status_code == 201, r.text
    codes = {}
    orga = token_session(hub, hub.new_user("orga", PASSWORD), "orga")
    hub.new_user("orgb", PASSWORD)
    hub.new_user("plain", PASSWORD)
    assert hub.api(admin, "POST", "/cohorts/cb/members", json={"usernames": ["bmember", "cbonly"]}).status_code == 200
    codes["ca"] = hub.api(admin, "POST", "/cohorts/ca/join-code").json()["join_code"]
    return {"admin": admin, "orga": orga, "codes": codes}


def group_users(hub, name):
    return sorted(hub.api(hub.admin(), "GET", f"/groups/cohort-{name}").json()["users"])


def test_an_organiser_cannot_add_admins_organisers_or_other_cohorts_members(hub, world):
    orga = world["orga"]
    assert hub.api(orga, "GET", "/users/admin").status_code == 404  # before
    r = hub.api(orga, "POST", "/cohorts/ca/members", json={"usernames": ["bmember", "admin", "orgb", "fresh"]})
    assert r.status_code == 403, r.text
    problems = r.json()["problems"]
    assert "members: 'bmember' is a member of cohort cb, which you do not organise; only hub admins may add members of other cohorts" in problems
    assert "members: 'admin' is a hub admin; only hub admins may add an admin to a cohort" in problems
    assert "members: 'orgb' organises cohort cb; only hub admins may add an organiser to a cohort" in problems
    assert problems[-1] == "nobody was added"
    # nothing happened: no member, no new account, no access to the admin
    assert group_users(hub, "ca") == []
    assert hub.api(hub.admin(), "GET", "/users/fresh").status_code == 404
    assert hub.api(orga, "GET", "/users/admin").status_code == 404
    refusal = next(line for line in hub.log().splitlines() if "oggmhub audit: orga was refused adding members in cohort ca;" in line)
    assert "'bmember' is a member of cohort cb" in refusal and "'admin' is a hub admin" in refusal
    # the CSV path follows the same rules
    r = hub.api(orga, "POST", "/cohorts/ca/members", json={"csv": "username\nadmin\n"})
    assert r.status_code == 403 and "'admin' is a hub admin" in r.json()["message"]
    # the page, too
    page = hub.login("orga", PASSWORD)
    r = page.post(f"{hub.url}/hub/cohorts/ca", data={"_xsrf": page.cookies.get("_xsrf"), "action": "add", "csv": "orgb"})
    assert r.status_code == 403 and "organises cohort cb" in r.text
    assert group_users(hub, "ca") == []


def test_an_organiser_adds_new_and_plain_accounts_and_an_admin_may_add_anyone(hub, world):
    orga = world["orga"]
    r = hub.api(orga, "POST", "/cohorts/ca/members", json={"usernames": ["newbie", "plain"]})
    # plain existed before: invited (a member once they accept, see test_cohort_invitations.py)
    assert r.status_code == 200 and r.json()["added"] == ["newbie"] and r.json()["invited"] == ["plain"], r.text
    assert hub.api(world["admin"], "GET", "/cohorts/ca").json()["owned"] == ["newbie"]
    plain = hub.login("plain", PASSWORD)
    assert hub.api(plain, "POST", "/cohorts/ca/invitation", json={"action": "accept"}).status_code == 200
    r = hub.api(world["admin"], "POST", "/cohorts/ca/members", json={"usernames": ["bmember"]})
    assert r.status_code == 200 and r.json()["added"] == ["bmember"]
    assert group_users(hub, "ca") == ["bmember", "newbie", "plain"]
    log = hub.log()
    assert "oggmhub audit: orga added members in cohort ca (1): newbie; 1 account(s) created" in log
    assert "oggmhub audit: orga invited existing accounts (members once they accept) in cohort ca (1): plain" in log
    assert "oggmhub audit: plain accepted the invitation in cohort ca (1): plain" in log
    assert "oggmhub audit: admin added members in cohort ca (1): bmember" in log


def test_a_join_code_does_not_claim_another_cohorts_account(hub, world):
    s = requests.Session()
    s.get(f"{hub.url}/hub/signup")
    r = s.post(f"{hub.url}/hub/signup", data={
        "username": "cbonly", "signup_password": PASSWORD, "signup_password_confirmation": PASSWORD,
        "join_code": world["codes"]["ca"], "_xsrf": s.cookies.get("_xsrf", ""),
    })
    assert r.status_code == 400 and "The username &#39;cbonly&#39; is already in use" in r.text
    assert "cbonly" not in group_users(hub, "ca")
    with pytest.raises(PermissionError):
        hub.login("cbonly", PASSWORD)
    s = requests.Session()
    s.get(f"{hub.url}/hub/signup")
    r = s.post(f"{hub.url}/hub/signup", data={
        "username": "joiner", "signup_password": PASSWORD, "signup_password_confirmation": PASSWORD,
        "join_code": world["codes"]["ca"], "_xsrf": s.cookies.get("_xsrf", ""),
    })
    assert r.status_code == 200, r.text
    assert "joiner" in hub.api(world["admin"], "GET", "/cohorts/ca").json()["owned"]
    assert "oggmhub audit: joiner joined with the join code in cohort ca (1): joiner" in hub.log()


def test_export_and_deletion_cover_only_the_accounts_the_cohort_owns(hub, world):
    orga = world["orga"]
    homes = os.path.join(hub.data_dir, "homes")
    for name in ("newbie", "plain", "bmember", "admin", "joiner"):
        os.makedirs(os.path.join(homes, name), exist_ok=True)
        with open(os.path.join(homes, name, "work.txt"), "w") as f:
            f.write(f"{name}'s work")
    assert hub.api(orga, "POST", "/cohorts/ca/close").status_code == 200
    r = hub.api(orga, "POST", "/cohorts/ca/exports")
    assert r.status_code == 201, r.text
    export = r.json()["export"]
    assert sorted(export["members"]) == ["joiner", "newbie"]
    assert export["skipped"]["plain"] == "the account was not created by cohort 'ca' (it existed before it joined)"
    assert export["skipped"]["bmember"].startswith("the account was not created by cohort 'ca'")
    r = hub.api(orga, "POST", "/cohorts/ca/delete-homes", json={"export": export["id"], "sha256": export["sha256"]})
    assert r.status_code == 200, r.text
    assert sorted(r.json()["deleted"]) == ["joiner", "newbie"] and set(r.json()["skipped"]) == {"plain", "bmember"}
    left = sorted(os.listdir(homes))
    assert "newbie" not in left and "joiner" not in left
    for name in ("plain", "bmember", "admin"):
        with open(os.path.join(homes, name, "work.txt")) as f:
            assert f.read() == f"{name}'s work"
    log = hub.log()
    assert f"oggmhub audit: orga exported homes (export {export['id']}) in cohort ca (2): joiner, newbie; skipped: " in log
    assert f"oggmhub audit: orga deleted homes (export {export['id']}) in cohort ca (2): joiner, newbie" in log
    assert "oggmhub audit: orga closed the cohort in cohort ca" in log


def test_an_owned_account_still_in_an_open_cohort_keeps_its_home(hub, world):
    """An admin deletes a closed cohort's homes while a member it created is in another open cohort."""
    admin = world["admin"]
    r = hub.api(admin, "POST", "/cohorts", json={"name": "cc", "environments": ["oggm"], **WINDOW})
    assert r.status_code == 201
    assert hub.api(admin, "POST", "/cohorts/cc/members", json={"usernames": ["twice", "once"]}).status_code == 200
    assert hub.api(admin, "POST", "/cohorts/cb/members", json={"usernames": ["twice"]}).status_code == 200
    homes = os.path.join(hub.data_dir, "homes")
    for name in ("twice", "once"):
        os.makedirs(os.path.join(homes, name), exist_ok=True)
    assert hub.api(admin, "POST", "/cohorts/cc/close").status_code == 200
    export = hub.api(admin, "POST", "/cohorts/cc/exports").json()["export"]
    assert export["members"] == ["once"]
    assert export["skipped"] == {"twice": "the account is also a member of cohort cb, which is open or still to come"}
    r = hub.api(admin, "POST", "/cohorts/cc/delete-homes", json={"export": export["id"], "sha256": export["sha256"]})
    assert r.json()["deleted"] == ["once"]
    assert os.path.isdir(os.path.join(homes, "twice")) and not os.path.exists(os.path.join(homes, "once"))


def test_a_member_csv_with_a_byte_order_mark_is_accepted_by_the_api_and_the_page(hub, world):
    admin = world["admin"]
    assert hub.api(admin, "POST", "/cohorts", json={"name": "excel", "environments": ["oggm"], **WINDOW}).status_code == 201
    r = hub.api(admin, "POST", "/cohorts/excel/members", json={"csv": "\ufeffusername,email\nxana,a@example.org\n"})
    assert r.status_code == 200 and r.json()["added"] == ["xana"], r.text
    page = hub.admin()
    r = page.post(f"{hub.url}/hub/cohorts/excel", data={"_xsrf": page.cookies.get("_xsrf"), "action": "add"},
                  files={"csv_file": ("class.csv", "\ufeffusername\r\nxben\r\n".encode("utf-8"), "text/csv")})
    assert r.status_code == 200 and "Added 1 member(s)" in r.text, r.text[-2000:]
    assert group_users(hub, "excel") == ["xana", "xben"]


def test_a_huge_username_is_refused_with_a_short_quote(hub, world):
    admin = world["admin"]  # its own cohort: other tests close theirs
    assert hub.api(admin, "POST", "/cohorts", json={"name": "huge", "environments": ["oggm"], **WINDOW}).status_code == 201
    r = hub.api(admin, "POST", "/cohorts/huge/members", json={"usernames": ["x" * 100_000 + " y"]})
    assert r.status_code == 400, r.text[:500]
    assert group_users(hub, "huge") == []
    assert len(r.text) < 2000 and "(100002 characters)" in r.json()["message"]
    assert "x" * 1000 not in hub.log()
