"""The cohorts' REST API inside the hub (``/hub/api/cohorts/...``): JSON in, JSON out;
who may do what is :class:`~oggmhub.cohorts.rules.CohortRules`."""

from __future__ import annotations

from jupyterhub.apihandlers.base import APIHandler
from tornado import web

from oggmhub.cohorts import invitations
from oggmhub.cohorts import store as cohort_store
from oggmhub.cohorts.handler_base import CohortHandlerMixin
from oggmhub.cohorts.model import CohortError
from oggmhub.cohorts.rules import public_state


class _API(CohortHandlerMixin, APIHandler):
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
        self.send({"cohorts": [self.rules.detail(g, c) for g, c in self.rules.visible_cohorts()]})

    def post(self):
        cohort, code = self.rules.create_cohort(self.body())
        group, cohort = cohort_store.load(self.db, cohort.name)
        self.send({"cohort": self.rules.detail(group, cohort), "join_code": code}, 201)


class CohortAPIHandler(_API):
    def get(self, name):
        group, cohort = self.rules.require_manage(name)
        self.send(self.rules.detail(group, cohort))


class CohortMembersAPIHandler(_API):
    async def post(self, name):
        self.rules.require_manage(name)
        added, already, invited = await self.rules.add_members(name, self.rules.members_from(self.body()))
        self.send({"added": added, "already": already, "invited": invited})

    async def delete(self, name):
        removed, stopped, withdrawn = await self.rules.remove_members(name, self.rules.members_from(self.body()))
        self.send({"removed": removed, "stopped": stopped, "withdrawn": withdrawn})


class CohortInvitationAPIHandler(invitations.InvitationAPI, _API):
    pass


class CohortJoinAPIHandler(invitations.JoinAPI, _API):
    pass


class CohortOrganisersAPIHandler(_API):
    def post(self, name):
        body = self.body()
        organisers = self.rules.change_organisers(name, body.get("add") or (), body.get("remove") or ())
        self.send({"organisers": organisers})


class CohortJoinCodeAPIHandler(_API):
    def post(self, name):
        self.send({"join_code": self.rules.new_join_code(name)})


class CohortCloseAPIHandler(_API):
    async def post(self, name):
        cohort, stopped = await self.rules.close_cohort(name)
        self.send({"cohort": cohort.public(), "stopped": stopped})


class CohortExportsAPIHandler(_API):
    async def post(self, name):
        self.send({"export": await self.rules.export_cohort(name)}, 201)


class CohortExportDownloadAPIHandler(_API):
    async def get(self, name, export_id):
        _, cohort = self.rules.require_manage(name)
        await self.send_export(cohort, export_id)


class CohortDeleteHomesAPIHandler(_API):
    async def post(self, name):
        body = self.body()
        deleted, skipped = await self.rules.delete_cohort_homes(name, body.get("export"), body.get("sha256"))
        self.send({"deleted": deleted, "skipped": skipped})


class CohortPrewarmAPIHandler(_API):
    def get(self, name):
        self.rules.require_manage(name)
        self.send({"prewarm": public_state(self.cohorts.prewarms.get(name))})

    def post(self, name):
        state = self.rules.start_prewarm(name, self.body().get("options"))
        self.send({"prewarm": public_state(state)}, 202)
