"""Invitations: an organiser's add of an account the cohort does not own asks its owner first.

An organiser (not a hub admin) who adds an existing account that their cohort did not
create (an ordinary user who signed up on their own, or was created by another cohort
and is in none now) does not make it a member: the username goes into the cohort's
``invited`` list. Until the user accepts, they are not in the cohort's group, so the
organiser's role (scoped to the group) cannot stop or start their server, the cohort's
window, closure and limits do not apply to them, and pre-warms and exports leave them
out. The user accepts or declines on their hub home page (``POST
/hub/cohorts/NAME/invitation``, or ``POST /hub/api/cohorts/NAME/invitation`` with
``{"action": "accept"|"decline"}``), or joins with the cohort's join code while logged in
(``POST /hub/api/cohorts/join`` with ``{"join_code": CODE}``). Removing an invited
username withdraws the invitation. Hub admins' adds are direct, as before.
"""

from __future__ import annotations

from jupyterhub import orm
from jupyterhub.handlers.base import BaseHandler
from jupyterhub.utils import url_path_join
from tornado import web

from oggmhub.cohorts import powers
from oggmhub.cohorts import store as cohort_store
from oggmhub.cohorts.model import CohortConflict, CohortError, CohortNotFound, human_time

ACTIONS = ("accept", "decline")


# --- the records ------------------------------------------------------------------------------


def split_invited(plan, is_admin):
    """Take out of a :class:`~oggmhub.cohorts.store.MembersPlan` the existing accounts the
    cohort does not own (none for an admin): they are invited, not added. The names invited."""
    if is_admin:
        return []
    owned = set(plan.cohort.owned)
    invited = [u.name for u in plan.existing if u.name not in owned]
    if invited:
        plan.existing = [u for u in plan.existing if u.name not in invited]
        plan.new = [n for n in plan.new if n not in invited]
        plan.cohort = plan.cohort.with_changes(invited=tuple(dict.fromkeys((*plan.cohort.invited, *invited))))
    return invited


def withdraw(db, name, usernames):
    """Withdraw the invitations of those of ``usernames`` that are only invited; the names withdrawn."""
    group, cohort = cohort_store.load(db, name)
    withdrawn = [u for u in dict.fromkeys(usernames) if u in cohort.invited]
    if withdrawn:
        with cohort_store.transaction(db):
            cohort_store.save(group, cohort.with_changes(invited=tuple(u for u in cohort.invited if u not in withdrawn)))
    return withdrawn


def answer(db, name, username, action):
    """``username`` accepts (becomes a member) or declines cohort ``name``'s invitation."""
    if action not in ACTIONS:
        raise CohortError(f"action: {str(action)[:40]!r} is not one of: {', '.join(ACTIONS)}")
    group, cohort = cohort_store.load(db, name)
    if username not in cohort.invited:
        raise CohortNotFound(f"{username!r} has no invitation to cohort {name!r}")
    left = tuple(u for u in cohort.invited if u != username)
    if action == "accept":
        if cohort.closed:
            raise CohortConflict(f"cohort {name!r} is closed; its invitation can no longer be accepted")
        if cohort.max_members is not None and len(group.users) >= cohort.max_members:
            raise CohortConflict(f"cohort {name!r} is full ({cohort.max_members} members); ask your organiser")
    user = orm.User.find(db, username)
    with cohort_store.transaction(db):
        if action == "accept" and user is not None and user not in group.users:
            group.users.append(user)
        cohort_store.save(group, cohort.with_changes(invited=left))
    return cohort


def pending(db, username):
    """The cohorts that invite ``username``, as dicts for the home page."""
    return [
        {"name": c.name, "title": c.title, "organisers": list(c.organisers), "window": c.window_text(),
         "opens": human_time(c.start)}
        for _, c in cohort_store.all_cohorts(db) if username in c.invited and not c.closed
    ]


def template_invitations(user):
    """Template variable ``oggmhub_invitations(user)``: the invitations waiting for ``user``."""
    if user is None or getattr(user, "kind", "user") != "user":
        return []
    db = getattr(user, "db", None)
    return pending(db, user.name) if db is not None else []


# --- handlers ---------------------------------------------------------------------------------


class _Answer:
    def answer_invitation(self, name, action):
        user = self.current_user
        if user is None:
            raise web.HTTPError(403, "log in to answer an invitation")
        cohort = answer(self.db, name, user.name, action)
        verb = "accepted the invitation" if action == "accept" else "declined the invitation"
        powers.audit(self.log, user.name, verb, name, [user.name])
        return cohort

    def join_with_code(self, code):
        user = self.current_user
        if user is None:
            raise web.HTTPError(403, "log in to join a cohort")
        group, cohort = cohort_store.find_by_join_code(self.db, str(code or "").strip())
        if user.name in cohort_store.members(group):
            return cohort
        cohort = cohort_store.join(self.db, cohort.name, user.name)
        withdraw(self.db, cohort.name, [user.name])  # an invitation, if any, is answered
        powers.audit(self.log, user.name, "joined with the join code (existing account)", cohort.name, [user.name])
        return cohort


class InvitationPageHandler(_Answer, BaseHandler):
    """``POST /hub/cohorts/NAME/invitation`` (the home page's buttons): accept or decline."""

    @web.authenticated
    def post(self, name):
        self.answer_invitation(name, self.get_body_argument("action", ""))
        self.redirect(url_path_join(self.hub.base_url, "home"))


class InvitationAPI(_Answer):
    """``POST /hub/api/cohorts/NAME/invitation`` ``{"action": "accept"|"decline"}`` (mixed
    into the cohorts' API handler base in :mod:`oggmhub.cohorts.api`)."""

    def post(self, name):
        body = self.get_json_body() or {}
        cohort = self.answer_invitation(name, body.get("action", ""))
        self.finish({"cohort": cohort.name, "action": body.get("action"), "member": body.get("action") == "accept"})


class JoinAPI(_Answer):
    """``POST /hub/api/cohorts/join`` ``{"join_code": CODE}``: a logged-in user joins with a code."""

    def post(self):
        cohort = self.join_with_code((self.get_json_body() or {}).get("join_code"))
        self.finish({"cohort": cohort.name, "member": True})
