"""The hub's launch pages and API, registered by :func:`oggmhub.hub.configure_hub`.

- ``GET /hub/launch?dataset=ID...``: resolve and check; open a running server that has
  everything asked for at once, else a page: log in / sign up, confirm the start, or
  confirm the restart. A GET never starts, stops or changes a server.
- ``POST /hub/launch`` (the confirmation page's button, with the hub's ``_xsrf``): start
  (or restart) through the spawner's own validation, then wait on the spawn page, which
  opens JupyterLab at the dataset.
- ``GET /hub/api/datasets/resolve?id=ID``: the resolution as JSON; 4xx naming what was wrong.
- ``GET /hub/datasets``: the datasets with their launch links, badges and a bookmarklet;
  ``GET /hub/launch/badge.svg``: the badge.
"""

from __future__ import annotations

import asyncio
import json
import os
from urllib.parse import urlencode

from jupyterhub.apihandlers import APIHandler
from jupyterhub.handlers import BaseHandler
from jupyterhub.utils import url_path_join
from tornado import web

from oggmhub.catalog import cached_catalog
from oggmhub.choice import ChoiceError, resolve_choice
from oggmhub.launch import snippets
from oggmhub.launch.config import Launch
from oggmhub.launch.identifiers import IdentifierError, check_length
from oggmhub.launch.request import LaunchRequest
from oggmhub.launch.resolution import LaunchError, environments_for, on_demand_resolver, resolve, visible_datasets

TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")
STOP_WAIT = 120  # seconds a restart waits for the old server to stop


class _Context:
    """Who asks (a user or nobody) and what they may start: catalog, cohort policy."""

    def __init__(self, handler):
        self.user = handler.current_user
        self.spawner = self.user.spawners[""] if self.user is not None else None
        if self.spawner is not None:
            self.catalog = self.spawner.catalog
            self.policy = self.spawner.cohort_policy()
            self.allowed = self.spawner.allowed_environments()
            self.max_gpus = self.spawner.max_gpus()
            self.on_demand = self.spawner.on_demand_datasets()
        else:
            self.catalog = cached_catalog(handler.launch.catalog_path)
            self.policy = self.allowed = self.max_gpus = None
            self.on_demand = on_demand_resolver(handler.launch.allowed_sources)

    def choice(self, options):
        """The spawner's validation of ``options`` (ChoiceError when refused)."""
        return resolve_choice(self.catalog, options, self.allowed, self.max_gpus, on_demand=self.on_demand)


class LaunchMixin:
    @property
    def launch(self):
        settings = self.settings.get("oggmhub_launch")
        if settings is None:
            settings = self.settings["oggmhub_launch"] = Launch(config=self.settings.get("config"), log=self.log)
        return settings

    @property
    def hub_url(self):
        """This hub's absolute URL as the browser sees it, e.g. ``https://host/hub/``."""
        return f"{self.request.protocol}://{self.request.host}{self.hub.base_url}"

    def plan(self, ctx, request):
        """(resolution, environment, options, choice) for ``request``; LaunchError if refused."""
        if ctx.policy is not None and ctx.policy.refusal:
            raise LaunchError(403, "cohort", ctx.policy.refusal)
        resolution = resolve(ctx.catalog, request.dataset, ctx.allowed, self.launch.allowed_sources)
        names = resolution.environments
        if request.env is not None:
            if request.env not in names:
                known = request.env in ctx.catalog.environments and (ctx.allowed is None or request.env in ctx.allowed)
                why = "cannot mount" if known else "is not an environment you may start, to mount"
                raise LaunchError(400, "env", f"environment {request.env!r} {why} dataset {resolution.dataset.name!r}; "
                                  f"choose one of: {', '.join(names)}", names)
            env_name = request.env
        elif resolution.default_environments:
            env_name = resolution.default_environments[0]
        else:
            default = ctx.catalog.default_environment.name
            env_name = default if default in names else names[0]
        environment = ctx.catalog.environments[env_name]
        options = request.options(resolution, environment)
        try:
            choice = ctx.choice(options)
        except ChoiceError as e:
            allowed = list(environment.sizes) if e.field == "size" else []
            raise LaunchError(400, e.field, e.message, allowed) from None
        return resolution, environment, options, choice


def running_choice(ctx):
    """The choice the user's running server was started with, or None."""
    try:
        return resolve_choice(ctx.catalog, ctx.spawner.user_options or {}, on_demand=ctx.on_demand)
    except ChoiceError:
        return None


def has_everything(current, resolution, request):
    """Whether a server running ``current`` has what ``request`` asks for."""
    if current is None or resolution.dataset.name not in [d.name for d in current.datasets]:
        return False
    if request.env and current.environment.name != request.env:
        return False
    return not (request.size and current.size.name != request.size)


class LaunchHandler(LaunchMixin, BaseHandler):
    """``/hub/launch``: the launch flow (see the module's docstring)."""

    async def _page(self, template, status=200, **ns):
        self.set_status(status)
        html = await self.render_template(template, hub_url=self.hub_url, **ns)
        self.finish(html)

    async def _refused(self, error, ctx=None):
        available = []
        if ctx is not None:
            available = [(d.name, d.title) for d in visible_datasets(ctx.catalog, ctx.allowed)]
        await self._page("oggmhub-launch-error.html", status=error.status_code, error=error,
                         field=getattr(error, "field", ""), allowed=getattr(error, "allowed", []),
                         available=available)

    def _request(self, arguments):
        return LaunchRequest.from_arguments(arguments)

    async def get(self):
        ctx = None
        try:
            request = self._request(self.request.query_arguments)
            ctx = _Context(self)
            resolution, environment, options, choice = self.plan(ctx, request)
        except LaunchError as e:
            return await self._refused(e, ctx)
        here = self.request.uri
        ns = dict(request=request, resolution=resolution, dataset=resolution.dataset, environment=environment,
                  choice=choice, options=options, launch_query=request.query())
        if ctx.user is None:
            login = url_path_join(self.hub.base_url, "login") + "?" + urlencode({"next": here})
            signup = url_path_join(self.hub.base_url, "signup") + "?" + urlencode({"next": here})
            return await self._page("oggmhub-launch.html", state="login", login_url=login, signup_url=signup, **ns)
        spawner = ctx.spawner
        target = request.target_url(ctx.user.server_url(""), resolution.dataset)
        pending_url = url_path_join(self.hub.base_url, "spawn-pending", ctx.user.escaped_name) + "?" + urlencode({"next": target})
        if spawner.pending:
            return await self._page("oggmhub-launch.html", state="pending", pending=spawner.pending,
                                    pending_url=pending_url, **ns)
        if spawner.ready:
            current = running_choice(ctx)
            if has_everything(current, resolution, request):
                return self.redirect(target)
            return await self._page("oggmhub-launch.html", state="restart", current=current, **ns)
        return await self._page("oggmhub-launch.html", state="start", **ns)

    @web.authenticated
    async def post(self):
        ctx = None
        try:
            request = self._request(self.request.body_arguments)
            ctx = _Context(self)
            resolution, environment, options, choice = self.plan(ctx, request)
        except LaunchError as e:
            return await self._refused(e, ctx)
        action = self.get_body_argument("action", "start")
        user, spawner = ctx.user, ctx.spawner
        if action not in ("start", "restart"):
            return await self._refused(LaunchError(400, "action", f"unknown action {action[:40]!r}; "
                                                   "allowed: start, restart", ["start", "restart"]), ctx)
        back = url_path_join(self.hub.base_url, "launch") + "?" + request.query()
        if spawner.pending:
            return self.redirect(back)  # the page says what is going on
        if spawner.active:
            if action != "restart":
                return self.redirect(back)  # running meanwhile: the page asks again
            await self.stop_single_user(user, "")
            for _ in range(STOP_WAIT * 5):
                if not spawner.pending:
                    break
                await asyncio.sleep(0.2)
        try:
            await self.spawn_single_user(user, "", options=options)
        except web.HTTPError as e:
            message = getattr(e, "jupyterhub_message", None) or (
                (e.log_message % e.args) if e.args else e.log_message) or str(e)
            return await self._refused(LaunchError(e.status_code, "server", message), ctx)
        target = request.target_url(user.server_url(""), resolution.dataset)
        self.redirect(url_path_join(self.hub.base_url, "spawn-pending", user.escaped_name)
                      + "?" + urlencode({"next": target}))


class ResolveAPIHandler(LaunchMixin, APIHandler):
    """``GET /hub/api/datasets/resolve?id=ID``: a dataset, the environments that may mount it, its folder."""

    def get(self):
        ids = self.request.query_arguments.get("id") or []
        if len(ids) != 1:
            raise LaunchError(400, "id", "give one identifier: /hub/api/datasets/resolve?id=10.5281/zenodo.123 "
                              "(a DOI, a catalog name or a source URL)")
        text = ids[0].decode("utf-8", "replace")
        try:
            check_length("id", text)
        except IdentifierError as e:
            raise LaunchError(400, "id", str(e)) from None
        ctx = _Context(self)
        if ctx.policy is not None and ctx.policy.refusal:
            raise LaunchError(403, "cohort", ctx.policy.refusal)
        resolution = resolve(ctx.catalog, text, ctx.allowed, self.launch.allowed_sources)
        body = resolution.to_json(ctx.catalog)
        body["launch_url"] = snippets.launch_url(self.hub_url, resolution.dataset.name if not resolution.on_demand
                                                 else resolution.dataset.source)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))


class DatasetsPageHandler(LaunchMixin, BaseHandler):
    """``/hub/datasets``: every dataset this visitor may launch, with its links."""

    async def get(self):
        ctx = _Context(self)
        refusal = ctx.policy.refusal if ctx.policy is not None else None
        entries = []
        for dataset in ([] if refusal else visible_datasets(ctx.catalog, ctx.allowed)):
            names, _ = environments_for(ctx.catalog, dataset, ctx.allowed)
            entries.append({
                "dataset": dataset,
                "environments": [ctx.catalog.environments[n] for n in names],
                "open_url": url_path_join(self.hub.base_url, "launch") + "?" + urlencode({"dataset": dataset.name}),
                "snippets": snippets.snippets(self.hub_url, dataset.doi or dataset.name),
            })
        html = await self.render_template("oggmhub-datasets.html", entries=entries, refusal=refusal,
                                          bookmarklet=snippets.bookmarklet(self.hub_url), hub_url=self.hub_url)
        self.finish(html)


class BadgeHandler(BaseHandler):
    """``/hub/launch/badge.svg``."""

    def get(self):
        self.set_header("Content-Type", "image/svg+xml")
        self.set_header("Cache-Control", "public, max-age=86400")
        self.finish(snippets.BADGE_SVG)


def handlers():
    """The (pattern, handler) pairs, relative to the hub's prefix."""
    return [
        (r"/launch", LaunchHandler),
        (r"/launch/badge\.svg", BadgeHandler),
        (r"/datasets", DatasetsPageHandler),
        (r"/api/datasets/resolve", ResolveAPIHandler),
    ]


def configure(c):
    """Add the launch pages, API and templates to a hub's config ``c``."""
    c.JupyterHub.extra_handlers = [*c.JupyterHub.get("extra_handlers", []), *handlers()]
    c.JupyterHub.template_paths = [*c.JupyterHub.get("template_paths", []), TEMPLATES]
