"""Cohorts inside the hub: a REST API (``/hub/api/cohorts``) and the organisers' pages (``/hub/cohorts``).

They run in the hub process, as JupyterHub handlers, because a cohort's organiser role
is created at run time and JupyterHub's REST API has no way to create roles; everything
is stored in the hub's own database (:mod:`oggmhub.cohorts.store`). Enable them with::

    from oggmhub.hub import configure_hub
    configure_hub(c)                       # in jupyterhub_config.py
    c.Cohorts.homes_dir = "/srv/data/homes"  # local backend: exports of members' homes

Who may do what: hub admins create cohorts and manage all of them; a cohort's
organisers (role ``cohort-organiser-<name>``) manage their own (members, join code,
pre-warm, close, export). Every refusal names what was wrong.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from functools import partial

from jupyterhub import orm
from jupyterhub.utils import url_path_join
from tornado import web
from traitlets import Integer, Unicode, default
from traitlets.config import LoggingConfigurable

from oggmhub.cohorts import client as cohort_api

from oggmhub.cohorts import homes as cohort_homes

from oggmhub.cohorts import invitations, powers
from oggmhub.cohorts import store as cohort_store
from oggmhub.catalog import CatalogError, cached_catalog, default_catalog_path
from oggmhub.cohorts.model import (
    GROUP_PREFIX,
    ROLE_PREFIX,
    CohortError,
    prewarm_choice,
)
from oggmhub.cohorts.validation import parse_members_csv, validate_spec

TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")


class Cohorts(LoggingConfigurable):
    """Settings of the hub's cohort pages and API (``c.Cohorts.*``)."""

    catalog_path = Unicode(
        config=True,
        help="""The catalog cohorts are checked against (environments and sizes).

        Defaults to $OGGMHUB_CATALOG, else hub_config/catalog.yaml; use the spawner's.""",
    )

    @default("catalog_path")
    def _default_catalog_path(self):
        return default_catalog_path()

    homes_dir = Unicode(
        "",
        config=True,
        help="""Where members' homes are, one folder per user (the local backend's
        <data_dir>/homes). Empty (on Kubernetes): the hub exports and deletes no homes.""",
    )

    exports_dir = Unicode(
        config=True,
        help="""Where archives of members' homes are written; defaults to 'exports' beside homes_dir.""",
    )

    @default("exports_dir")
    def _default_exports_dir(self):
        return os.path.join(os.path.dirname(self.homes_dir.rstrip("/")), "exports") if self.homes_dir else ""

    prewarm_concurrency = Integer(
        10,
        config=True,
        help="""How many members' servers a pre-warm starts at once (JupyterHub's own
        concurrent_spawn_limit still applies).""",
    )

    prewarm_timeout = Integer(
        900, config=True, help="Seconds one member's server may take to become ready during a pre-warm."
    )

    stop_timeout = Integer(
        120, config=True, help="Seconds to wait for members' servers to stop when a cohort closes."
    )


def configure(c, window_check_interval=60):
    """Add the cohort API and pages, their templates and the 'Cohorts' link to a hub's
    config, and the ``cohort-window`` service that stops members' servers when their
    window ends (checked every ``window_check_interval`` seconds; 0: not at all).
    Called by :func:`oggmhub.hub.configure_hub`."""
    c.JupyterHub.extra_handlers = [*c.JupyterHub.get("extra_handlers", []), *handlers()]
    c.JupyterHub.template_paths = [*c.JupyterHub.get("template_paths", []), TEMPLATES]
    c.JupyterHub.template_vars = {**c.JupyterHub.get("template_vars", {}), "oggmhub_cohorts_link": cohorts_link,
                                  "oggmhub_invitations": invitations.template_invitations}
    if window_check_interval:
        from oggmhub.cohorts.window import SCOPES

        c.JupyterHub.services = [*c.JupyterHub.get("services", []), {
            "name": "cohort-window",
            "command": [sys.executable, "-m", "oggmhub.cohorts.window", f"--interval={window_check_interval}"],
        }]
        c.JupyterHub.load_roles = [*c.JupyterHub.get("load_roles", []), {
            "name": "cohort-window", "scopes": SCOPES, "services": ["cohort-window"],
        }]


def cohorts_link(user):
    """Template variable: show the 'Cohorts' link to admins and organisers."""
    if user is None or getattr(user, "kind", "user") != "user":
        return False
    return bool(user.admin or any(r.name.startswith(ROLE_PREFIX) for r in user.roles))


# --- shared by the API and the pages ---------------------------------------------------------


class _CohortMixin:
    """What both kinds of handler need: settings, the catalog, permission checks."""

    @property
    def cohorts(self):
        settings = self.settings.get("oggmhub_cohorts")
        if settings is None:
            settings = self.settings["oggmhub_cohorts"] = Cohorts(config=self.settings.get("config"), log=self.log)
            settings.prewarms = {}  # cohort name -> progress dict
            cohort_store.ensure_roles(self.db)
        return settings

    @property
    def catalog(self):
        try:
            return cached_catalog(self.cohorts.catalog_path)
        except CatalogError as e:
            raise web.HTTPError(500, "the catalog is broken: %s", e) from None

    def is_admin(self):
        return self.has_scope("admin:groups")

    def can_manage(self, name):
        return self.is_admin() or self.has_scope(f"servers!group={GROUP_PREFIX}{name}")

    def require_manage(self, name):
        if self.current_user is None:
            raise web.HTTPError(403, "log in, or give an API token")
        if not self.can_manage(name):
            raise web.HTTPError(403, f"only hub admins and the organisers of cohort {name!r} may manage it")
        return cohort_store.load(self.db, name)

    def visible_cohorts(self):
        return [(g, c) for g, c in cohort_store.all_cohorts(self.db) if self.can_manage(c.name)]

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
        for user in dict.values(self.users):
            loaded.setdefault(user.name, []).append(user)
        return loaded

    def actor(self):
        user = self.current_user
        return getattr(user, "name", None) or "?"

    async def add_members(self, name, usernames):
        """Add members, within the caller's powers (:mod:`oggmhub.cohorts.powers`); an
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

    def detail(self, group, cohort):
        record = cohort.public()
        record["members"] = self.member_status(group)
        record["prewarm"] = _public_state(self.cohorts.prewarms.get(cohort.name))
        return record

    def create_cohort(self, spec):
        if not self.is_admin():
            raise web.HTTPError(403, "only hub admins create cohorts; ask one to make you an organiser")
        existing = [c.name for _, c in cohort_store.all_cohorts(self.db)]
        cohort = validate_spec(spec, self.catalog, existing=existing)
        return cohort_store.create(self.db, cohort, join_code=bool(spec.get("join_code")), by=self.current_user.name)

    def members_from(self, body):
        usernames = list(body.get("usernames") or [])
        if body.get("csv"):
            usernames += parse_members_csv(body["csv"], source=body.get("csv_name") or "members.csv")
        if not usernames:
            raise CohortError("members: give usernames, or a CSV with one username per line")
        return usernames

    async def stop_servers(self, names):
        """Stop the default servers of ``names``; wait until they are down. The names stopped."""
        loaded = self._loaded_users_by_name()  # a running or pending server's user is loaded
        users = [u for n in names for u in loaded.get(n, ())]
        stopping = []
        for user in users:
            spawner = user.spawners.get("")
            if spawner is not None and (spawner.active or spawner.pending):
                stopping.append(user)
        deadline = time.monotonic() + self.cohorts.stop_timeout

        async def stop(user):
            spawner = user.spawners[""]
            while spawner.pending and spawner.pending != "stop" and time.monotonic() < deadline:
                await asyncio.sleep(0.5)  # a start under way: let it finish, then stop it
            if spawner.active and not spawner.pending:
                await self.stop_single_user(user, "")
            while (spawner.active or spawner.pending) and time.monotonic() < deadline:
                await asyncio.sleep(0.5)

        await asyncio.gather(*(stop(u) for u in stopping))
        still = [u.name for u in stopping if u.spawners[""].active]
        if still:
            raise web.HTTPError(500, f"servers still running after {self.cohorts.stop_timeout} s: {', '.join(still)}")
        return [u.name for u in stopping]

    async def close_cohort(self, name):
        group, cohort = self.require_manage(name)
        cohort = cohort_store.close(self.db, name)  # first: no member can start a server from now on
        powers.audit(self.log, self.actor(), "closed the cohort", name)
        stopped = await self.stop_servers(sorted(cohort_store.member_names(self.db, group)))
        return cohort, stopped

    async def export_cohort(self, name):
        group, cohort = self.require_manage(name)
        settings = self.cohorts
        covered, skipped = powers.custody(self.db, cohort, sorted(cohort_store.member_names(self.db, group)))
        loop = asyncio.get_running_loop()
        record = await loop.run_in_executor(None, partial(
            cohort_homes.export_homes, settings.homes_dir, settings.exports_dir, cohort.name,
            covered, by=self.current_user.name,
        ))
        record["skipped"] = skipped
        cohort_store.record_export(self.db, name, record)
        powers.audit(self.log, self.actor(), f"exported homes (export {record['id']})", name, record["members"],
                     detail=_skipped_text(skipped))
        return record

    async def delete_cohort_homes(self, name, export_id, sha256):
        group, cohort = self.require_manage(name)
        settings = self.cohorts
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
        """Start every member's server in the background; progress in ``cohorts.prewarms[name]``."""
        group, cohort = self.require_manage(name)
        running = self.cohorts.prewarms.get(name)
        if running and running["running"]:
            raise web.HTTPError(409, f"a pre-warm of cohort {name!r} is already running")
        if cohort.closed:
            raise CohortError(f"cohort {name!r} is closed")
        members = cohort_store.members(group)
        options = options or prewarm_choice(cohort)
        state = self.cohorts.prewarms[name] = {
            "running": True, "total": len(members), "ready": 0, "failed": {}, "elapsed": 0,
            "options": options, "members": {m: "waiting" for m in members},
        }
        token = self.current_user.orm_user.new_api_token(
            note=f"pre-warm of cohort {name}", expires_in=self.cohorts.prewarm_timeout + 600,
            scopes=[f"servers!group={cohort.group}", f"read:users!group={cohort.group}"],
        )
        client = cohort_api.HubClient(url_path_join(self.hub.url, "api"), token)

        def progress(event):
            state["members"][event["member"]] = event["state"]
            state.update(ready=event["ready"], elapsed=event["elapsed"])
            if event["state"] == "failed":
                state["failed"][event["member"]] = event["message"]

        async def run():
            try:
                result = await cohort_api.prewarm(client, members, options, self.cohorts.prewarm_concurrency,
                                                  self.cohorts.prewarm_timeout, progress)
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


def _public_state(state):
    return None if state is None else {k: v for k, v in state.items() if k != "task"}


NAME = r"([a-z0-9][a-z0-9-]*)"


def handlers():
    """The (pattern, handler) pairs, relative to the hub's prefix."""
    from oggmhub.cohorts.api import (CohortAPIHandler, CohortCloseAPIHandler, CohortDeleteHomesAPIHandler,
                                     CohortExportDownloadAPIHandler, CohortExportsAPIHandler, CohortInvitationAPIHandler,
                                     CohortJoinAPIHandler, CohortJoinCodeAPIHandler, CohortListAPIHandler,
                                     CohortMembersAPIHandler, CohortOrganisersAPIHandler, CohortPrewarmAPIHandler)
    from oggmhub.cohorts.pages import (CohortExportDownloadHandler, CohortPageHandler, CohortPrewarmStatusHandler,
                                       CohortsPageHandler)

    return [
        (r"/api/cohorts", CohortListAPIHandler),
        (r"/api/cohorts/join", CohortJoinAPIHandler),
        (rf"/api/cohorts/{NAME}/invitation", CohortInvitationAPIHandler),
        (rf"/cohorts/{NAME}/invitation", invitations.InvitationPageHandler),
        (rf"/api/cohorts/{NAME}", CohortAPIHandler),
        (rf"/api/cohorts/{NAME}/members", CohortMembersAPIHandler),
        (rf"/api/cohorts/{NAME}/organisers", CohortOrganisersAPIHandler),
        (rf"/api/cohorts/{NAME}/join-code", CohortJoinCodeAPIHandler),
        (rf"/api/cohorts/{NAME}/close", CohortCloseAPIHandler),
        (rf"/api/cohorts/{NAME}/exports", CohortExportsAPIHandler),
        (rf"/api/cohorts/{NAME}/exports/([0-9TZ]+)", CohortExportDownloadAPIHandler),
        (rf"/api/cohorts/{NAME}/delete-homes", CohortDeleteHomesAPIHandler),
        (rf"/api/cohorts/{NAME}/prewarm", CohortPrewarmAPIHandler),
        (r"/cohorts", CohortsPageHandler),
        (rf"/cohorts/{NAME}", CohortPageHandler),
        (rf"/cohorts/{NAME}/prewarm.json", CohortPrewarmStatusHandler),
        (rf"/cohorts/{NAME}/exports/([0-9TZ]+)\.tar\.gz", CohortExportDownloadHandler),
    ]
