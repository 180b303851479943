"""The organisers' cohort pages inside the hub (``/hub/cohorts``, ``/hub/cohorts/NAME``)."""

from __future__ import annotations

from jupyterhub.handlers.base import BaseHandler
from jupyterhub.utils import url_path_join
from tornado import web

from oggmhub.cohorts import homes as cohort_homes
from oggmhub.cohorts.handler_base import CohortHandlerMixin
from oggmhub.cohorts.model import CohortError
from oggmhub.cohorts.rules import public_state
from oggmhub.cohorts.validation import parse_members_csv


class _Page(CohortHandlerMixin, BaseHandler):
    async def page(self, template, status=200, **ns):
        self.set_status(status)
        html = await self.render_template(template, **ns)
        self.finish(html)

    async def cohort_page(self, name, status=200, join_code=None, notice="", errors=()):
        group, cohort = self.rules.require_manage(name)
        await self.page(
            "cohort.html", status, cohort=self.rules.detail(group, cohort), join_code=join_code, notice=notice,
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
        if not (self.rules.is_admin() or self.rules.visible_cohorts()):
            raise web.HTTPError(403, "only hub admins and cohort organisers may see cohorts")
        await self.page(
            "cohorts.html", status, cohorts=[self.rules.detail(g, c) for g, c in self.rules.visible_cohorts()],
            can_create=self.rules.is_admin(), environments=self.environment_choices(), errors=errors, form=form or {},
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
            cohort, code = self.rules.create_cohort(spec)
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
                    text = upload[0]["body"].decode("utf-8-sig", "replace") + "\n" + text
                    source = upload[0]["filename"] or "members.csv"
                else:
                    source = "members.csv"
                self.rules.require_manage(name)
                added, already, invited = await self.rules.add_members(name, parse_members_csv(text, source))
                notice = f"Added {len(added)} member(s)" + (f"; {len(already)} already in" if already else "") + "."
                if invited:
                    notice += (f" Invited {', '.join(invited)}: existing accounts become members once they accept "
                               "on their hub home page.")
            elif action == "remove":
                removed, _, withdrawn = await self.rules.remove_members(name, [self.get_body_argument("username")])
                notice = f"Removed {', '.join(removed)}." if removed else f"Invitation of {', '.join(withdrawn)} withdrawn."
            elif action == "join-code":
                code = self.rules.new_join_code(name)
                notice = "A new join code: the old one no longer works."
            elif action == "prewarm":
                self.rules.start_prewarm(name)
                notice = "Pre-warm started."
            elif action == "close":
                _, stopped = await self.rules.close_cohort(name)
                notice = f"Cohort closed; {len(stopped)} server(s) stopped."
                if self.get_body_argument("export", ""):
                    record = await self.rules.export_cohort(name)
                    notice += f" Homes exported ({record['id']})."
                    if self.get_body_argument("delete_homes", ""):
                        deleted, skipped = await self.rules.delete_cohort_homes(name, record["id"], record["sha256"])
                        notice += f" {len(deleted)} home(s) deleted after the export."
                        if skipped:
                            notice += " Kept: " + "; ".join(f"{n} ({why})" for n, why in skipped.items()) + "."
                elif self.get_body_argument("delete_homes", ""):
                    notice += " Homes were kept: they are deleted only after an export."
            elif action == "export":
                record = await self.rules.export_cohort(name)
                notice = f"Homes exported ({record['id']})."
                if record.get("skipped"):
                    notice += " Not exported: " + "; ".join(f"{n} ({why})" for n, why in record["skipped"].items()) + "."
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
        group, cohort = self.rules.require_manage(name)
        self.set_header("Content-Type", "application/json")
        self.finish({"prewarm": public_state(self.cohorts.prewarms.get(name)),
                     "members": self.rules.member_status(group)})


class CohortExportDownloadHandler(_Page):
    @web.authenticated
    async def get(self, name, export_id):
        _, cohort = self.rules.require_manage(name)
        await self.send_export(cohort, export_id)
