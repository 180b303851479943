"""What the cohorts' API and pages share as tornado handlers: the hub's
:class:`~oggmhub.cohorts.settings.Cohorts`, the catalog, and the request's
:class:`~oggmhub.cohorts.rules.CohortRules`."""

from __future__ import annotations

import os
from functools import cached_property

from jupyterhub.utils import url_path_join
from tornado import web

from oggmhub.catalog import CatalogError, cached_catalog
from oggmhub.catalog_setting import catalog_path
from oggmhub.cohorts import homes as cohort_homes
from oggmhub.cohorts import store as cohort_store
from oggmhub.cohorts.rules import CohortRules
from oggmhub.cohorts.settings import Cohorts


class CohortHandlerMixin:
    """Mixed into JupyterHub handlers (``self.settings``, ``self.db``, ``self.current_user``...)."""

    @property
    def cohorts(self):
        """The hub's cohort settings, made once (and the organiser roles checked then)."""
        settings = self.settings.get("oggmhub_cohorts")
        if settings is None:
            settings = self.settings["oggmhub_cohorts"] = Cohorts(config=self.settings.get("config"), log=self.log)
            cohort_store.ensure_roles(self.db)
        return settings

    @property
    def catalog(self):
        """The hub's catalog (``c.Catalog.path``); a 500 naming its problems if it is broken."""
        try:
            return cached_catalog(catalog_path(self.settings.get("config")))
        except CatalogError as e:
            raise web.HTTPError(500, "the catalog is broken: %s", e) from None

    @cached_property
    def rules(self):
        """The cohort rules for this request's user."""
        return CohortRules(
            self.db, self.cohorts, self.current_user, self.has_scope, self.log,
            catalog=lambda: self.catalog, users=lambda: dict.values(self.users),
            stop_server=lambda user: self.stop_single_user(user, ""),
            hub_api_url=url_path_join(self.hub.url, "api"),
        )

    async def send_export(self, cohort, export_id):
        """Stream the archive of one of ``cohort``'s exports (a 404 if there is none)."""
        record = next((e for e in cohort.exports if e["id"] == export_id), None)
        path = record and cohort_homes.export_file(self.cohorts.exports_dir, record)
        if not path or not os.path.exists(path):
            raise web.HTTPError(404, f"no archive for export {export_id!r} of cohort {cohort.name!r}")
        self.set_header("Content-Type", "application/gzip")
        self.set_header("Content-Disposition", f'attachment; filename="{record["file"]}"')
        self.set_header("Content-Length", str(os.path.getsize(path)))
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                self.write(block)
                await self.flush()
        self.finish()
