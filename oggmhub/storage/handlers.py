"""The hub's storage pages, registered by :func:`configure` (from :func:`oggmhub.hub.configure_hub`):

- ``GET /hub/storage``: admins' table (user, home used / quota, scratch used, last
  activity), with a CSV download at ``GET /hub/storage/usage.csv``;
- ``GET /hub/api/storage/usage``: the same rows as JSON (bytes); ``?format=csv`` for CSV;
- the template variable ``oggmhub_storage(user)``: the user's own home use on ``/hub/home``
  (``oggmhub/templates/oggmhub-home-storage.html``), with the 80% and 95% warnings.

Admins only (others get 403). Figures come from the spawner of each user (the local
backend's homes and scratch folders); a backend without local homes shows none.
"""

from __future__ import annotations

import asyncio
import json
import os

from jupyterhub import orm
from jupyterhub.apihandlers import APIHandler
from jupyterhub.handlers import BaseHandler
from tornado import web

from oggmhub.storage import table

TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")


def home_storage(user):
    """Template variable: ``user``'s home use (see ``HomeQuotas.home_storage``), or None."""
    spawner = getattr(user, "spawner", None) if user is not None else None
    measure = getattr(spawner, "home_storage", None)
    try:
        return measure() if measure else None
    except Exception:  # a page never fails for a figure
        return None


def _user_row(user):
    spawner = user.spawner
    quota = getattr(spawner, "user_home_quota", lambda: None)()
    last = user.last_activity.isoformat() + "Z" if user.last_activity else ""
    return table.row(user.name, getattr(spawner, "home_dir", None), getattr(spawner, "scratch_dir", None),
                     quota.bytes if quota else None, last)


class StorageMixin:
    def check_admin(self):
        user = self.current_user
        if user is None:
            raise web.HTTPError(403, "log in as an admin to see storage use")
        if not user.admin:
            raise web.HTTPError(403, "only admins see every user's storage use")

    async def rows(self):
        users = [self.users[u] for u in self.db.query(orm.User).order_by(orm.User.name)]
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, lambda: [_user_row(u) for u in users])


class StoragePageHandler(StorageMixin, BaseHandler):
    """``/hub/storage`` and ``/hub/storage/usage.csv``."""

    @web.authenticated
    async def get(self, csv=None):
        self.check_admin()
        rows = await self.rows()
        if csv:
            self.set_header("Content-Type", "text/csv; charset=utf-8")
            self.set_header("Content-Disposition", 'attachment; filename="storage-usage.csv"')
            return self.finish(table.to_csv(rows))
        html = await self.render_template("oggmhub-storage.html", rows=[table.for_people(r) for r in rows])
        self.finish(html)


class StorageAPIHandler(StorageMixin, APIHandler):
    """``/hub/api/storage/usage`` (JSON; ``?format=csv``)."""

    async def get(self):
        self.check_admin()
        rows = await self.rows()
        if self.get_argument("format", "json") == "csv":
            self.set_header("Content-Type", "text/csv; charset=utf-8")
            return self.finish(table.to_csv(rows))
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"users": rows}))


def configure(c):
    """Add the storage pages, API, templates and the home page's variable to ``c``."""
    c.JupyterHub.extra_handlers = [*c.JupyterHub.get("extra_handlers", []),
                                   (r"/storage(/usage\.csv)?", StoragePageHandler),
                                   (r"/api/storage/usage", StorageAPIHandler)]
    c.JupyterHub.template_paths = [*c.JupyterHub.get("template_paths", []), TEMPLATES]
    c.JupyterHub.template_vars = {**c.JupyterHub.get("template_vars", {}), "oggmhub_storage": home_storage}
