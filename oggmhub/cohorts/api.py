"""The cohorts' REST API inside the hub (``/hub/api/cohorts/...``): JSON in, JSON out;
the rules live in :mod:`oggmhub.cohorts.service`'s shared mixin."""

from __future__ import annotations

import os

from jupyterhub.apihandlers.base import APIHandler
from tornado import web


from oggmhub.cohorts import homes as cohort_homes

from oggmhub.cohorts import invitations, powers
from oggmhub.cohorts import store as cohort_store
from oggmhub.cohorts.model import (
    CohortError,
)

from oggmhub.cohorts.service import _CohortMixin, _public_state


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
    async def post(self, name):
        self.require_manage(name)
        added, already, invited = await self.add_members(name, self.members_from(self.body()))
        self.send({"added": added, "already": already, "invited": invited})

    async def delete(self, name):
        removed, stopped, withdrawn = await self.remove_members(name, self.members_from(self.body()))
        self.send({"removed": removed, "stopped": stopped, "withdrawn": withdrawn})


class CohortInvitationAPIHandler(invitations.InvitationAPI, _API):
    pass


class CohortJoinAPIHandler(invitations.JoinAPI, _API):
    pass


class CohortOrganisersAPIHandler(_API):
    def post(self, name):
        self.require_manage(name)
        if not self.is_admin():
            raise web.HTTPError(403, f"only hub admins change the organisers of cohort {name!r}")
        body = self.body()
        organisers = cohort_store.change_organisers(self.db, name, body.get("add") or (), body.get("remove") or ())
        powers.audit(self.log, self.actor(), "changed the organisers", name, organisers,
                     detail=f"added {list(body.get('add') or ())}, removed {list(body.get('remove') or ())}")
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
        deleted, skipped = await self.delete_cohort_homes(name, body.get("export"), body.get("sha256"))
        self.send({"deleted": deleted, "skipped": skipped})


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
