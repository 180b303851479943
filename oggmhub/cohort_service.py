"""Cohorts inside the hub: a REST API (``/hub/api/cohorts``) and the organisers' pages (``/hub/cohorts``).

They run in the hub process, as JupyterHub handlers, because a cohort's organiser role
is created at run time and JupyterHub's REST API has no way to create roles; everything
is stored in the hub's own database (:mod:`oggmhub.cohort_store`). Enable them with::

    from oggmhub.cohort_service import configure_hub
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
from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.handlers.base import BaseHandler
from jupyterhub.utils import url_path_join
from tornado import web
from traitlets import Integer, Unicode, default
from traitlets.config import LoggingConfigurable

from . import cohort_api, cohort_homes, cohort_store
from .catalog import CatalogError, cached_catalog, default_catalog_path
from .cohorts import (
    GROUP_PREFIX,
    ROLE_PREFIX,
    CohortError,
    parse_members_csv,
    prewarm_choice,
    validate_spec,
)

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


def configure_hub(c, window_check_interval=60):
    """Add the cohort API and pages, their templates and the 'Cohorts' link to a hub's
    config, and the ``cohort-window`` service that stops members' servers when their
    window ends (checked every ``window_check_interval`` seconds; 0: not at all)."""
    c.JupyterHub.extra_handlers = [*c.JupyterHub.get("extra_handlers", []), *handlers()]
    c.JupyterHub.template_paths = [TEMPLATES, *c.JupyterHub.get("template_paths", [])]
    c.JupyterHub.template_vars = {**c.JupyterHub.get("template_vars", {}), "oggmhub_cohorts_link": cohorts_link}
    if window_check_interval:
        from .cohort_window import SCOPES

        c.JupyterHub.services = [*c.JupyterHub.get("services", []), {
            "name": "cohort-window",
            "command": [sys.executable, "-m", "oggmhub.cohort_window", f"--interval={window_check_interval}"],
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
        for orm_user in sorted(group.users, key=lambda u: u.name):
            spawner = self.users[orm_user].spawners.get("")
            if spawner is None or not (spawner.active or spawner.pending):
                state = "stopped"
            elif spawner.pending:
                state = spawner.pending
            else:
                state = "ready" if spawner.ready else "starting"
            rows.append({"name": orm_user.name, "server": state})
        return rows

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
        users = [self.users[u] for u in (orm.User.find(self.db, n) for n in names) if u is not None]
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
        stopped = await self.stop_servers(cohort_store.members(group))
        return cohort, stopped

    async def export_cohort(self, name):
        group, cohort = self.require_manage(name)
        settings = self.cohorts
        loop = asyncio.get_running_loop()
        record = await loop.run_in_executor(None, partial(
            cohort_homes.export_homes, settings.homes_dir, settings.exports_dir, cohort.name,
            cohort_store.members(group), by=self.current_user.name,
        ))
        cohort_store.record_export(self.db, name, record)
        return record

    async def delete_cohort_homes(self, name, export_id, sha256):
        group, cohort = self.require_manage(name)
        settings = self.cohorts
        if not settings.homes_dir:
            raise CohortError(f"homes: {cohort_homes.KUBERNETES_NOTE}")
        names = cohort_store.members(group)
        await self.stop_servers(names)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, cohort_homes.check_deletable, settings.exports_dir, cohort, export_id, sha256, names)
        deleted = await loop.run_in_executor(None, cohort_homes.delete_homes, settings.homes_dir, names)
        cohort_store.record_homes_deleted(self.db, name)
        return deleted

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


def _public_state(state):
    return None if state is None else {k: v for k, v in state.items() if k != "task"}


# --- REST API ---------------------------------------------------------------------------------


class _API(_CohortMixin, APIHandler):
    def body(self):
        return self.get_json_body() or {}

    def write_error(self, status_code, **kwargs):
        """JupyterHub's JSON error, with ``problems``: one line per problem of a refused cohort."""
        error = kwargs.get("exc_info", (None, None))[1]
        if isinstance(error, CohortError):
            self.set_header("Content-Type", "application/json")
            self.finish({"status": status_code, "message": str(error), "problems": error.problems})
            return
        super().write_error(status_code, **kwargs)

    def send(self, model, status=200):
        self.set_status(status)
        self.write(model)


class CohortListAPIHandler(_API):
    def get(self):
        if self.current_user is None:
            raise web.HTTPError(403, "log in, or give an API token")
        self.send({"cohorts": [self.detail(g, c) for g, c in self.visible_cohorts()]})

    def post(self):
        cohort, code = self.create_cohort(self.body())
        group, cohort = cohort_store.load(self.db, cohort.name)
        self.send({"cohort": self.detail(group, cohort), "join_code": code}, 201)


class CohortAPIHandler(_API):
    def get(self, name):
        group, cohort = self.require_manage(name)
        self.send(self.detail(group, cohort))


class CohortMembersAPIHandler(_API):
    def post(self, name):
        self.require_manage(name)
        added, already = cohort_store.add_members(self.db, name, self.members_from(self.body()))
        self.send({"added": added, "already": already})

    async def delete(self, name):
        self.require_manage(name)
        removed = cohort_store.remove_members(self.db, name, self.members_from(self.body()))
        stopped = await self.stop_servers(removed)
        self.send({"removed": removed, "stopped": stopped})


class CohortOrganisersAPIHandler(_API):
    def post(self, name):
        self.require_manage(name)
        if not self.is_admin():
            raise web.HTTPError(403, f"only hub admins change the organisers of cohort {name!r}")
        body = self.body()
        organisers = cohort_store.change_organisers(self.db, name, body.get("add") or (), body.get("remove") or ())
        self.send({"organisers": organisers})


class CohortJoinCodeAPIHandler(_API):
    def post(self, name):
        self.require_manage(name)
        self.send({"join_code": cohort_store.new_join_code(self.db, name)})


class CohortCloseAPIHandler(_API):
    async def post(self, name):
        cohort, stopped = await self.close_cohort(name)
        self.send({"cohort": cohort.public(), "stopped": stopped})


class CohortExportsAPIHandler(_API):
    async def post(self, name):
        self.send({"export": await self.export_cohort(name)}, 201)


class CohortExportDownloadAPIHandler(_API):
    async def get(self, name, export_id):
        _, cohort = self.require_manage(name)
        await _send_export(self, cohort, export_id)


class CohortDeleteHomesAPIHandler(_API):
    async def post(self, name):
        body = self.body()
        deleted = await self.delete_cohort_homes(name, body.get("export"), body.get("sha256"))
        self.send({"deleted": deleted})


class CohortPrewarmAPIHandler(_API):
    def get(self, name):
        self.require_manage(name)
        self.send({"prewarm": _public_state(self.cohorts.prewarms.get(name))})

    def post(self, name):
        state = self.start_prewarm(name, self.body().get("options"))
        self.send({"prewarm": _public_state(state)}, 202)


async def _send_export(handler, cohort, export_id):
    record = next((e for e in cohort.exports if e["id"] == export_id), None)
    path = record and cohort_homes.export_file(handler.cohorts.exports_dir, record)
    if not path or not os.path.exists(path):
        raise web.HTTPError(404, f"no archive for export {export_id!r} of cohort {cohort.name!r}")
    handler.set_header("Content-Type", "application/gzip")
    handler.set_header("Content-Disposition", f'attachment; filename="{record["file"]}"')
    handler.set_header("Content-Length", str(os.path.getsize(path)))
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            handler.write(block)
            await handler.flush()
    handler.finish()


# --- pages -----------------------------------------------------------------------------------


class _Page(_CohortMixin, BaseHandler):
    async def page(self, template, status=200, **ns):
        self.set_status(status)
        html = await self.render_template(template, **ns)
        self.finish(html)

    async def cohort_page(self, name, status=200, join_code=None, notice="", errors=()):
        group, cohort = self.require_manage(name)
        await self.page(
            "cohort.html", status, cohort=self.detail(group, cohort), join_code=join_code, notice=notice,
            errors=errors, signup_url=url_path_join(self.hub.base_url, "signup"),
            can_export=bool(self.cohorts.homes_dir), kubernetes_note=cohort_homes.KUBERNETES_NOTE,
        )

    def environment_choices(self):
        return [
            {"name": env.name, "display_name": env.display_name, "sizes": list(env.sizes.values())}
            for env in self.catalog.environments.values()
        ]


class CohortsPageHandler(_Page):
    """/hub/cohorts: the cohorts one manages, and (admins) a form to create one."""

    @web.authenticated
    async def get(self):
        await self.list_page()

    async def list_page(self, status=200, errors=(), form=None):
        if not (self.is_admin() or self.visible_cohorts()):
            raise web.HTTPError(403, "only hub admins and cohort organisers may see cohorts")
        await self.page(
            "cohorts.html", status, cohorts=[self.detail(g, c) for g, c in self.visible_cohorts()],
            can_create=self.is_admin(), environments=self.environment_choices(), errors=errors, form=form or {},
        )

    @web.authenticated
    async def post(self):
        form = {k: self.get_body_argument(k, "").strip() for k in (
            "name", "title", "start", "end", "organisers", "max_members", "materials_repo",
            "materials_branch", "servers", "dask_workers", "gpus")}
        envs = []
        for env in self.catalog.environments.values():
            if self.get_body_argument(f"env-{env.name}", ""):
                sizes = [s for s in env.sizes if self.get_body_argument(f"size-{env.name}-{s}", "")]
                envs.append(env.name if len(sizes) in (0, len(env.sizes)) else f"{env.name}={','.join(sizes)}")
        spec = {
            "name": form["name"], "title": form["title"], "start": form["start"], "end": form["end"],
            "environments": envs, "organisers": form["organisers"], "max_members": form["max_members"] or None,
            "limits": {k: form[k] for k in ("servers", "dask_workers", "gpus") if form[k]},
            "materials": {"repo": form["materials_repo"], "branch": form["materials_branch"] or "main"}
            if form["materials_repo"] else None,
            "join_code": True,
        }
        try:
            cohort, code = self.create_cohort(spec)
        except CohortError as e:
            await self.list_page(400, errors=e.problems, form={**form, "envs": envs})
            return
        await self.cohort_page(cohort.name, join_code=code, notice=f"Cohort {cohort.name} created.")


class CohortPageHandler(_Page):
    """/hub/cohorts/NAME: members, join code, pre-warm, close and export."""

    @web.authenticated
    async def get(self, name):
        await self.cohort_page(name)

    @web.authenticated
    async def post(self, name):
        action = self.get_body_argument("action", "")
        code, notice = None, ""
        try:
            if action == "add":
                text = self.get_body_argument("csv", "")
                upload = self.request.files.get("csv_file")
                if upload:
                    text = upload[0]["body"].decode("utf-8", "replace") + "\n" + text
                    source = upload[0]["filename"] or "members.csv"
                else:
                    source = "members.csv"
                self.require_manage(name)
                added, already = cohort_store.add_members(self.db, name, parse_members_csv(text, source))
                notice = f"Added {len(added)} member(s)" + (f"; {len(already)} already in" if already else "") + "."
            elif action == "remove":
                self.require_manage(name)
                removed = cohort_store.remove_members(self.db, name, [self.get_body_argument("username")])
                await self.stop_servers(removed)
                notice = f"Removed {', '.join(removed)}."
            elif action == "join-code":
                self.require_manage(name)
                code = cohort_store.new_join_code(self.db, name)
                notice = "A new join code: the old one no longer works."
            elif action == "prewarm":
                self.start_prewarm(name)
                notice = "Pre-warm started."
            elif action == "close":
                _, stopped = await self.close_cohort(name)
                notice = f"Cohort closed; {len(stopped)} server(s) stopped."
                if self.get_body_argument("export", ""):
                    record = await self.export_cohort(name)
                    notice += f" Homes exported ({record['id']})."
                    if self.get_body_argument("delete_homes", ""):
                        deleted = await self.delete_cohort_homes(name, record["id"], record["sha256"])
                        notice += f" {len(deleted)} home(s) deleted after the export."
                elif self.get_body_argument("delete_homes", ""):
                    notice += " Homes were kept: they are deleted only after an export."
            elif action == "export":
                record = await self.export_cohort(name)
                notice = f"Homes exported ({record['id']})."
            else:
                raise web.HTTPError(400, f"unknown action {action!r}")
        except CohortError as e:
            await self.cohort_page(name, e.status, errors=e.problems)
            return
        await self.cohort_page(name, join_code=code, notice=notice)


class CohortPrewarmStatusHandler(_Page):
    """/hub/cohorts/NAME/prewarm.json: the page's view of a running pre-warm."""

    @web.authenticated
    def get(self, name):
        group, cohort = self.require_manage(name)
        self.set_header("Content-Type", "application/json")
        self.finish({"prewarm": _public_state(self.cohorts.prewarms.get(name)),
                     "members": self.member_status(group)})


class CohortExportDownloadHandler(_Page):
    @web.authenticated
    async def get(self, name, export_id):
        _, cohort = self.require_manage(name)
        await _send_export(self, cohort, export_id)


NAME = r"([a-z0-9][a-z0-9-]*)"


def handlers():
    """The (pattern, handler) pairs, relative to the hub's prefix."""
    return [
        (r"/api/cohorts", CohortListAPIHandler),
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
