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

from oggmhub.launch import snippets
from oggmhub.launch.config import Launch
from oggmhub.identifiers import IdentifierError, check_length
from oggmhub.launch.request import LaunchRequest
from oggmhub.launch.planning import LaunchContext, has_everything, plan_launch, running_choice
from oggmhub.launch.resolution import LaunchError, environments_for, resolve, visible_datasets

TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")
STOP_WAIT = 120  # seconds a restart waits for the old server to stop


class LaunchMixin:
    @property
    def launch(self):
        settings = self.settings.get("oggmhub_launch")
        if settings is None:
            settings = self.settings["oggmhub_launch"] = Launch(config=self.settings.get("config"), log=self.log)
        return settings

    @property
    def hub_url(self):
        """This hub's URL for links, from ``c.JupyterHub.public_url`` (``https://host/hub/``),
        else relative (``/hub/``): never from the request's Host header."""
        return snippets.public_hub_url(self.settings.get("public_url"), self.hub.base_url)

    def context(self):
        """(user, spawner, LaunchContext): a user's own rules, or a visitor's."""
        user = self.current_user
        sources = self.launch.allowed_sources
        if user is None:
            return None, None, LaunchContext.for_visitor(self.launch.catalog_path, sources)
        spawner = user.spawners[""]
        return user, spawner, LaunchContext.for_spawner(spawner, sources)


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
            user, spawner, ctx = self.context()
            plan = plan_launch(ctx, request)
        except LaunchError as e:
            return await self._refused(e, ctx)
        here = self.request.uri
        ns = dict(request=request, resolution=plan.resolution, dataset=plan.resolution.dataset,
                  environment=plan.environment, choice=plan.choice, options=plan.options)
        if user is None:
            login = url_path_join(self.hub.base_url, "login") + "?" + urlencode({"next": here})
            signup = url_path_join(self.hub.base_url, "signup") + "?" + urlencode({"next": here})
            return await self._page("oggmhub-launch.html", state="login", login_url=login, signup_url=signup, **ns)
        target = request.target_url(user.server_url(""), plan.resolution.dataset)
        if spawner.pending:
            pending_url = url_path_join(self.hub.base_url, "spawn-pending", user.escaped_name) + "?" + urlencode({"next": target})
            return await self._page("oggmhub-launch.html", state="pending", pending=spawner.pending,
                                    pending_url=pending_url, **ns)
        if spawner.ready:
            current = running_choice(ctx, spawner.user_options)
            if has_everything(current, plan, request):
                return self.redirect(target)  # everything asked for is there: open it
            return await self._page("oggmhub-launch.html", state="restart", current=current, **ns)
        return await self._page("oggmhub-launch.html", state="start", **ns)

    @web.authenticated
    async def post(self):
        ctx = None
        try:
            request = self._request(self.request.body_arguments)
            user, spawner, ctx = self.context()
            plan = plan_launch(ctx, request)
        except LaunchError as e:
            return await self._refused(e, ctx)
        action = self.get_body_argument("action", "start")
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
            await self.spawn_single_user(user, "", options=plan.options)
        except web.HTTPError as e:
            message = getattr(e, "jupyterhub_message", None) or (
                (e.log_message % e.args) if e.args else e.log_message) or str(e)
            return await self._refused(LaunchError(e.status_code, "server", message), ctx)
        target = request.target_url(user.server_url(""), plan.resolution.dataset)
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
        _, _, ctx = self.context()
        if ctx.policy is not None and ctx.policy.refusal:
            raise LaunchError(403, "cohort", ctx.policy.refusal)
        resolution = resolve(ctx.catalog, text, ctx.allowed, self.launch.allowed_sources)
        body = resolution.to_json(ctx.catalog, visitor=self.current_user is None)
        body["launch_url"] = snippets.launch_url(self.hub_url, resolution.dataset.name if not resolution.on_demand
                                                 else resolution.dataset.source)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))


class DatasetsPageHandler(LaunchMixin, BaseHandler):
    """``/hub/datasets``: every dataset this visitor may launch, with its links."""

    async def get(self):
        _, _, ctx = self.context()
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
