"""Who may do what to which cohort and member, and doing it: :class:`CohortRules`.

Hub admins (scope ``admin:groups``) create cohorts and manage all of them; a cohort's
organisers (role ``cohort-organiser-<name>``, scope ``servers!group=cohort-<name>``)
manage their own: members, join code, pre-warm, close, export and deletion of homes,
each within their powers (:mod:`oggmhub.cohorts.powers`). Every refusal names what was
wrong.

The rules are built from explicit parts (the hub's database, the settings, the acting
user and a test of their scopes, the hub's servers), not from a request handler: the
API and the pages (:mod:`~oggmhub.cohorts.api`, :mod:`~oggmhub.cohorts.pages`) build one
per request, and tests use them without tornado.
"""

from __future__ import annotations

import asyncio
import time
from functools import partial

from jupyterhub import orm
from tornado import web

from oggmhub.cohorts import client as cohort_api
from oggmhub.cohorts import homes as cohort_homes
from oggmhub.cohorts import invitations, powers
from oggmhub.cohorts import store as cohort_store
from oggmhub.cohorts.model import GROUP_PREFIX, CohortError, prewarm_choice
from oggmhub.cohorts.validation import parse_members_csv, validate_spec


def public_state(state):
    """A pre-warm's progress as the API and pages show it (without its asyncio task)."""
    return None if state is None else {k: v for k, v in state.items() if k != "task"}


class CohortRules:
    """The cohort rules for one acting ``user`` (None: nobody logged in).

    ``db``: the hub's database session; ``settings``: a
    :class:`~oggmhub.cohorts.settings.Cohorts`; ``has_scope(scope)``: whether the user
    holds a JupyterHub scope; ``catalog()``: the catalog cohorts are checked against;
    ``users()``: the hub's loaded users (every user with a running or pending server is
    one); ``stop_server(user)``: stops a user's default server (a coroutine);
    ``hub_api_url``: the hub's REST API, for pre-warms.
    """

    def __init__(self, db, settings, user, has_scope, log, *, catalog=None, users=tuple,
                 stop_server=None, hub_api_url=""):
        self.db, self.settings, self.user, self.has_scope, self.log = db, settings, user, has_scope, log
        self.catalog, self.users, self.stop_server, self.hub_api_url = catalog, users, stop_server, hub_api_url

    # --- who may do what ---------------------------------------------------------------------

    def actor(self):
        """The acting user's name, for the audit log."""
        return getattr(self.user, "name", None) or "?"

    def is_admin(self):
        return self.has_scope("admin:groups")

    def can_manage(self, name):
        return self.is_admin() or self.has_scope(f"servers!group={GROUP_PREFIX}{name}")

    def require_manage(self, name):
        """(group, Cohort) of ``name`` if the user may manage it; a 403 otherwise."""
        if self.user is None:
            raise web.HTTPError(403, "log in, or give an API token")
        if not self.can_manage(name):
            raise web.HTTPError(403, f"only hub admins and the organisers of cohort {name!r} may manage it")
        return cohort_store.load(self.db, name)

    def require_admin(self, what):
        if not self.is_admin():
            raise web.HTTPError(403, what)

    def visible_cohorts(self):
        return [(g, c) for g, c in cohort_store.all_cohorts(self.db) if self.can_manage(c.name)]

    # --- what organisers see -----------------------------------------------------------------

    def member_status(self, group):
        rows = []
        loaded = self._loaded_users_by_name()
        for name in sorted(cohort_store.member_names(self.db, group)):
            # a user with a running or pending server is always loaded in the hub's users
            # dict: the others are stopped, without making 10,000 User objects to say so
            user = next(iter(loaded.get(name, ())), None)
            spawner = user.spawners.get("") if user is not None else None
            if spawner is None or not (spawner.active or spawner.pending):
                state = "stopped"
            elif spawner.pending:
                state = spawner.pending
            else:
                state = "ready" if spawner.ready else "starting"
            rows.append({"name": name, "server": state})
        return rows

    def _loaded_users_by_name(self):
        loaded = {}
        for user in self.users():
            loaded.setdefault(user.name, []).append(user)
        return loaded

    def detail(self, group, cohort):
        record = cohort.public()
        record["members"] = self.member_status(group)
        record["prewarm"] = public_state(self.settings.prewarms.get(cohort.name))
        return record

    # --- changes -----------------------------------------------------------------------------

    def create_cohort(self, spec):
        self.require_admin("only hub admins create cohorts; ask one to make you an organiser")
        existing = [c.name for _, c in cohort_store.all_cohorts(self.db)]
        cohort = validate_spec(spec, self.catalog(), existing=existing)
        return cohort_store.create(self.db, cohort, join_code=bool(spec.get("join_code")), by=self.user.name)

    @staticmethod
    def members_from(body):
        """The usernames of an API body: ``usernames`` and/or a ``csv`` (named ``csv_name``)."""
        usernames = list(body.get("usernames") or [])
        if body.get("csv"):
            usernames += parse_members_csv(body["csv"], source=body.get("csv_name") or "members.csv")
        if not usernames:
            raise CohortError("members: give usernames, or a CSV with one username per line")
        return usernames

    async def add_members(self, name, usernames):
        """Add members, within the user's powers (:mod:`oggmhub.cohorts.powers`); an
        organiser's add of an existing account the cohort does not own is an invitation
        (:mod:`oggmhub.cohorts.invitations`). The database work is planned here and written
        in one transaction in a thread. (added, already members, invited)."""
        self.require_manage(name)
        is_admin = self.is_admin()

        def vet(cohort, existing):
            try:
                powers.check_additions(self.db, cohort, existing, self.actor(), is_admin)
            except CohortError as e:
                powers.audit(self.log, self.actor(), "was refused adding members", name, detail=e.message)
                raise

        plan = cohort_store.plan_members(self.db, name, usernames, vet)
        invited = invitations.split_invited(plan, is_admin)
        await asyncio.get_running_loop().run_in_executor(None, partial(cohort_store.write_members, **plan.bind(self.db)))
        cohort_store.after_write(self.db, plan)
        if plan.new:
            powers.audit(self.log, self.actor(), "added members", name, plan.new,
                         detail=f"{len(plan.created)} account(s) created, owned by the cohort")
        if invited:
            powers.audit(self.log, self.actor(), "invited existing accounts (members once they accept)", name, invited)
        return plan.new, plan.already, invited

    async def remove_members(self, name, usernames):
        """Remove members (their servers stop) and withdraw invitations. (removed, stopped, withdrawn)."""
        self.require_manage(name)
        withdrawn = invitations.withdraw(self.db, name, usernames)
        if withdrawn:
            powers.audit(self.log, self.actor(), "withdrew invitations", name, withdrawn)
        rest = [u for u in usernames if u not in withdrawn]
        removed = cohort_store.remove_members(self.db, name, rest) if rest or not withdrawn else []
        if removed:
            powers.audit(self.log, self.actor(), "removed members", name, removed)
        stopped = await self.stop_servers(removed)
        return removed, stopped, withdrawn

    def change_organisers(self, name, add=(), remove=()):
        self.require_manage(name)
        self.require_admin(f"only hub admins change the organisers of cohort {name!r}")
        organisers = cohort_store.change_organisers(self.db, name, add, remove)
        powers.audit(self.log, self.actor(), "changed the organisers", name, organisers,
                     detail=f"added {list(add)}, removed {list(remove)}")
        return organisers

    def new_join_code(self, name):
        self.require_manage(name)
        return cohort_store.new_join_code(self.db, name)

    async def stop_servers(self, names):
        """Stop the default servers of ``names``; wait until they are down. The names stopped."""
        loaded = self._loaded_users_by_name()  # a running or pending server's user is loaded
        users = [u for n in names for u in loaded.get(n, ())]
        stopping = []
        for user in users:
            spawner = user.spawners.get("")
            if spawner is not None and (spawner.active or spawner.pending):
                stopping.append(user)
        deadline = time.monotonic() + self.settings.stop_timeout

        async def stop(user):
            spawner = user.spawners[""]
            while spawner.pending and spawner.pending != "stop" and time.monotonic() < deadline:
                await asyncio.sleep(0.5)  # a start under way: let it finish, then stop it
            if spawner.active and not spawner.pending:
                await self.stop_server(user)
            while (spawner.active or spawner.pending) and time.monotonic() < deadline:
                await asyncio.sleep(0.5)

        await asyncio.gather(*(stop(u) for u in stopping))
        still = [u.name for u in stopping if u.spawners[""].active]
        if still:
            raise web.HTTPError(500, f"servers still running after {self.settings.stop_timeout} s: {', '.join(still)}")
        return [u.name for u in stopping]

    async def close_cohort(self, name):
        group, cohort = self.require_manage(name)
        cohort = cohort_store.close(self.db, name)  # first: no member can start a server from now on
        powers.audit(self.log, self.actor(), "closed the cohort", name)
        stopped = await self.stop_servers(sorted(cohort_store.member_names(self.db, group)))
        return cohort, stopped

    async def export_cohort(self, name):
        group, cohort = self.require_manage(name)
        settings = self.settings
        covered, skipped = powers.custody(self.db, cohort, sorted(cohort_store.member_names(self.db, group)))
        loop = asyncio.get_running_loop()
        record = await loop.run_in_executor(None, partial(
            cohort_homes.export_homes, settings.homes_dir, settings.exports_dir, cohort.name,
            covered, by=self.user.name,
        ))
        record["skipped"] = skipped
        cohort_store.record_export(self.db, name, record)
        powers.audit(self.log, self.actor(), f"exported homes (export {record['id']})", name, record["members"],
                     detail=_skipped_text(skipped))
        return record

    async def delete_cohort_homes(self, name, export_id, sha256):
        group, cohort = self.require_manage(name)
        settings = self.settings
        if not settings.homes_dir:
            raise CohortError(f"homes: {cohort_homes.KUBERNETES_NOTE}")
        names, skipped = powers.custody(self.db, cohort, sorted(cohort_store.member_names(self.db, group)))
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, cohort_homes.check_deletable, settings.exports_dir, cohort, export_id, sha256, names)
        await self.stop_servers(names)
        deleted = await loop.run_in_executor(None, cohort_homes.delete_homes, settings.homes_dir, names)
        cohort_store.record_homes_deleted(self.db, name)
        powers.audit(self.log, self.actor(), f"deleted homes (export {export_id})", name, deleted,
                     detail=_skipped_text(skipped))
        return deleted, skipped

    def start_prewarm(self, name, options=None):
        """Start every member's server in the background; progress in ``settings.prewarms[name]``."""
        group, cohort = self.require_manage(name)
        running = self.settings.prewarms.get(name)
        if running and running["running"]:
            raise web.HTTPError(409, f"a pre-warm of cohort {name!r} is already running")
        if cohort.closed:
            raise CohortError(f"cohort {name!r} is closed")
        members = cohort_store.members(group)
        options = options or prewarm_choice(cohort)
        state = self.settings.prewarms[name] = {
            "running": True, "total": len(members), "ready": 0, "failed": {}, "elapsed": 0,
            "options": options, "members": {m: "waiting" for m in members},
        }
        token = self.user.orm_user.new_api_token(
            note=f"pre-warm of cohort {name}", expires_in=self.settings.prewarm_timeout + 600,
            scopes=[f"servers!group={cohort.group}", f"read:users!group={cohort.group}"],
        )
        client = cohort_api.HubClient(self.hub_api_url, token)

        def progress(event):
            state["members"][event["member"]] = event["state"]
            state.update(ready=event["ready"], elapsed=event["elapsed"])
            if event["state"] == "failed":
                state["failed"][event["member"]] = event["message"]

        async def run():
            try:
                result = await cohort_api.prewarm(client, members, options, self.settings.prewarm_concurrency,
                                                  self.settings.prewarm_timeout, progress)
                state.update(elapsed=round(result.seconds, 2))
            except Exception as e:  # noqa: BLE001 (reported on the page)
                self.log.exception("Pre-warm of cohort %s failed", name)
                state["error"] = str(e)
            finally:
                state["running"] = False
                client.close()
                found = orm.APIToken.find(self.db, token)
                if found is not None:
                    self.db.delete(found)
                    self.db.commit()

        state["task"] = asyncio.ensure_future(run())
        return state


def _skipped_text(skipped):
    if not skipped:
        return ""
    return "skipped: " + "; ".join(f"{n}: {why}" for n, why in list(skipped.items())[:20]) + (
        f"; and {len(skipped) - 20} more" if len(skipped) > 20 else "")
