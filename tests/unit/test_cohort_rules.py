"""CohortRules without tornado: who may do what to which cohort and member, on a real
JupyterHub database (SQLite in memory) and the shipped catalog, with no hub running."""

import asyncio
import logging
from datetime import timedelta

import pytest
from jupyterhub import orm
from tornado import web

from oggmhub.cohorts import store as cohort_store
from oggmhub.cohorts.model import CohortError, now_utc
from oggmhub.cohorts.rules import CohortRules
from oggmhub.cohorts.settings import Cohorts

LOG = logging.getLogger("test-cohort-rules")
NOW = now_utc()


class Person:
    """The acting user, as the rules see one: a name and the scopes JupyterHub gave them."""

    def __init__(self, name, scopes=()):
        self.name, self.scopes = name, set(scopes)


ADMIN = Person("root", {"admin:groups"})
OLGA = Person("olga", {"servers!group=cohort-glaciers"})  # organiser of glaciers (her role's scope)
EVE = Person("eve")  # an ordinary user


def rules(db, person, catalog=None):
    return CohortRules(db, Cohorts(), person, lambda scope: person is not None and scope in person.scopes, LOG,
                       catalog=lambda: catalog)


def spec(name, **changes):
    return {"name": name, "start": (NOW - timedelta(hours=1)).isoformat(), "end": (NOW + timedelta(days=2)).isoformat(),
            "environments": ["oggm"], "organisers": ["olga"], "join_code": True, **changes}


@pytest.fixture
def cohorts(hub_db, catalog):
    """Two cohorts an admin made: glaciers (organised by olga) and other (by nobody)."""
    admin = rules(hub_db, ADMIN, catalog)
    for name, organisers in (("glaciers", ["olga"]), ("other", [])):
        cohort, code = admin.create_cohort(spec(name, organisers=organisers))
        assert cohort.name == name and code  # the join code, shown once
    return hub_db


def test_only_admins_create_cohorts_and_what_they_create_is_checked_against_the_catalog(hub_db, catalog):
    with pytest.raises(web.HTTPError) as refused:
        rules(hub_db, OLGA, catalog).create_cohort(spec("mine"))
    assert refused.value.status_code == 403 and "only hub admins create cohorts" in refused.value.log_message
    with pytest.raises(Exception, match="unknown environment 'matlab'; choose from: oggm, slicer, fiji"):
        rules(hub_db, ADMIN, catalog).create_cohort(spec("mine", environments=["matlab"]))
    assert cohort_store.all_cohorts(hub_db) == []  # nothing written by either refusal


def test_organisers_manage_their_own_cohort_only(cohorts):
    olga, eve, nobody = rules(cohorts, OLGA), rules(cohorts, EVE), rules(cohorts, None)
    group, cohort = olga.require_manage("glaciers")
    assert cohort.organisers == ("olga",)
    assert [c.name for _, c in olga.visible_cohorts()] == ["glaciers"]
    assert [c.name for _, c in rules(cohorts, ADMIN).visible_cohorts()] == ["glaciers", "other"]
    assert eve.visible_cohorts() == []
    for who, name, message in ((olga, "other", "only hub admins and the organisers of cohort 'other' may manage it"),
                               (eve, "glaciers", "only hub admins and the organisers of cohort 'glaciers'"),
                               (nobody, "glaciers", "log in, or give an API token")):
        with pytest.raises(web.HTTPError) as refused:
            who.require_manage(name)
        assert refused.value.status_code == 403 and message in refused.value.log_message
    with pytest.raises(web.HTTPError, match="only hub admins change the organisers"):
        olga.change_organisers("glaciers", add=["eve"])
    assert cohort_store.load(cohorts, "glaciers")[1].organisers == ("olga",)  # unchanged


def test_an_organiser_adds_new_accounts_and_only_invites_existing_ones(cohorts):
    cohorts.add(orm.User(name="bob"))  # an existing account, in no cohort
    cohorts.commit()
    cohort_store.join(cohorts, "other", "dan")  # a member of a cohort olga does not organise
    olga = rules(cohorts, OLGA)
    with pytest.raises(CohortError, match="'dan' is a member of cohort other, which you do not organise"):
        asyncio.run(olga.add_members("glaciers", ["ann", "dan"]))
    assert cohort_store.members(cohort_store.load(cohorts, "glaciers")[0]) == []  # nobody was added
    added, already, invited = asyncio.run(olga.add_members("glaciers", ["ann", "bob"]))
    assert (added, already, invited) == (["ann"], [], ["bob"])
    group, cohort = cohort_store.load(cohorts, "glaciers")
    assert cohort_store.members(group) == ["ann"] and cohort.owned == ("ann",) and cohort.invited == ("bob",)
    with pytest.raises(web.HTTPError, match="only hub admins and the organisers of cohort 'other'"):
        asyncio.run(olga.add_members("other", ["carl"]))
    removed, stopped, withdrawn = asyncio.run(olga.remove_members("glaciers", ["ann", "bob"]))
    assert (removed, stopped, withdrawn) == (["ann"], [], ["bob"])  # no server was running
    assert cohort_store.members(cohort_store.load(cohorts, "glaciers")[0]) == []
