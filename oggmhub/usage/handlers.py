"""The usage pages and API inside the hub:

- ``/hub/usage`` and ``/hub/api/usage[?format=csv]``: a user's own usage;
- ``/hub/usage/admin`` and ``/hub/api/usage/admin?start=YYYY-MM-DD&end=YYYY-MM-DD[&format=csv]``:
  admins' totals per user, cohort and project over a date range, and the abuse signal.

Running servers are sampled before a page is made, so its figures are current.
"""

from __future__ import annotations

import json
import os

from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.app import JupyterHub
from jupyterhub.handlers.base import BaseHandler
from tornado import web

from oggmhub.catalog import cached_catalog
from oggmhub.catalog_setting import catalog_path
from oggmhub.cohorts import model as cohorts
from oggmhub.usage import views
from oggmhub.usage.reports import RangeError, parse_range
from oggmhub.usage.settings import usage_settings

TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")


class _Usage:
    @property
    def usage(self):
        settings = self.settings.get("oggmhub_usage")
        if settings is None:
            settings = self.settings["oggmhub_usage"] = usage_settings(self.settings.get("config"))
        return settings

    def refresh(self, users):
        """Sample the running servers of ``users`` (hub User objects) now."""
        for user in users:
            for spawner in list(getattr(user, "spawners", {}).values()):
                if getattr(spawner, "_usage_id", None) and spawner.active and not spawner.pending:
                    try:
                        spawner._usage_sample(__import__("time").time())
                    except Exception:  # noqa: BLE001 (a figure a poll ago is still right)
                        self.log.exception("usage: sampling %s failed", spawner._log_name)

    def user_data(self):
        user = self.current_user
        if user is None:
            raise web.HTTPError(403, "log in, or give an API token")
        self.refresh([user])
        catalog = cached_catalog(catalog_path(self.settings.get("config")))
        names = [c.name for c in cohorts.user_cohorts(user)]
        return views.user_view(self.usage.store, catalog, user.name, names)

    def admin_data(self):
        user = self.current_user
        if user is None or not user.admin:
            raise web.HTTPError(403, "only hub admins see everyone's usage")
        try:
            begin, end = parse_range(self.get_argument("start", None), self.get_argument("end", None))
        except RangeError as e:
            raise web.HTTPError(400, str(e)) from None
        self.refresh(self.users.values())
        return views.admin_view(self.usage.store, begin, end, self.usage.abuse_hours)

    def send_as(self, data, csv_text, filename):
        fmt = self.get_argument("format", "json")
        if fmt == "csv":
            self.set_header("Content-Type", "text/csv; charset=utf-8")
            self.set_header("Content-Disposition", f'attachment; filename="{filename}.csv"')
            self.finish(csv_text)
        elif fmt == "json":
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps(data))
        else:
            raise web.HTTPError(400, f"format: {fmt[:20]!r} is not known; use json or csv")


class UserUsageAPIHandler(_Usage, APIHandler):
    def get(self):
        data = self.user_data()
        self.send_as(data, views.user_csv(data), f"usage-{data['user']}")


class AdminUsageAPIHandler(_Usage, APIHandler):
    def get(self):
        data = self.admin_data()
        self.send_as(data, views.admin_csv(data), f"usage-{data['start']}-{data['end']}")


class UserUsagePageHandler(_Usage, BaseHandler):
    @web.authenticated
    async def get(self):
        self.finish(await self.render_template("usage.html", usage=self.user_data()))


class AdminUsagePageHandler(_Usage, BaseHandler):
    @web.authenticated
    async def get(self):
        self.finish(await self.render_template("usage-admin.html", usage=self.admin_data(),
                                               start=self.get_argument("start", ""), end=self.get_argument("end", "")))


def configure(c):
    """Add the pages, the API, their templates and the home page's notice to a hub's config
    (called by :func:`oggmhub.hub.configure_hub`)."""
    c.JupyterHub.extra_handlers = [*c.JupyterHub.get("extra_handlers", []),
                                   (r"/usage", UserUsagePageHandler), (r"/usage/admin", AdminUsagePageHandler),
                                   (r"/api/usage", UserUsageAPIHandler), (r"/api/usage/admin", AdminUsageAPIHandler)]
    c.JupyterHub.template_paths = [*c.JupyterHub.get("template_paths", []), TEMPLATES]
    def notice(user):
        # read when the page is made, from the running hub's whole config: settings set after
        # this call count, also those of a file that load_subconfig()s the one that called it
        # (a sub-file's `c` is not the final config)
        settings = usage_settings(JupyterHub.instance().config if JupyterHub.initialized() else c)
        if user is None or not settings.enabled:
            return None
        try:
            return views.home_notice(settings.store, user.name, settings.grace_seconds)
        except Exception:  # noqa: BLE001 (the home page shows without it)
            return None

    c.JupyterHub.template_vars = {**c.JupyterHub.get("template_vars", {}), "oggmhub_usage_notice": notice}
