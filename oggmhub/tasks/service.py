"""The ``tasks`` hub-managed service: REST API and forms for running tools on data.

Registered by :func:`oggmhub.hub.configure_hub` (through :func:`configure`); JupyterHub
starts it, routes ``/services/tasks/`` to it and authenticates users with OAuth (browser)
or API tokens (scripts). A user needs the scope ``access:services!service=tasks``, which
configure() adds to JupyterHub's default ``user`` role (and to the ``server`` role, so
a session's own token reaches it: :mod:`oggmhub.session.tasks`). The API (under
``/services/tasks/api``)::

    GET  tasks                      every task: id, title, parameters
    GET  tasks/ENV/NAME             one task's spec (JSON); .../xml: the original XML or script
    POST runs                       {"task", "parameters", "input-map", "output-map"} -> 201 run
                                    with "batch": {parameter, folder, glob, outputs} -> a batch
    GET  runs, runs/ID              the user's runs; one run's (or batch's) status
    GET  runs/ID/log                what the tool printed
    GET  runs/ID/outputs[/NAME]     where the outputs went; one output's content
    POST runs/ID/cancel             stop a run, or every run of a batch
    POST runs/ID/rerun              {"parameters": changes, ...} -> 201 a new run

Refusals are 400 with ``{"message", "problems"}``, each problem naming the parameter and
what is allowed; nothing is started or written then.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from urllib.parse import urlparse

from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
from tornado import web

from oggmhub.catalog_setting import catalog_path
from oggmhub.session import env as session_vars
from oggmhub.session.dask_limits import DaskLimitError
from oggmhub.tasks import pages
from oggmhub.tasks import cohort_gate
from oggmhub.usage import tasks as usage_tasks
from oggmhub.tasks.cluster import UserSlots
from oggmhub.tasks.discovery import discover
from oggmhub.tasks.parameters import TaskInputError
from oggmhub.tasks.paths import LocationError, PathPolicy
from oggmhub.tasks.runs import RunStore
from oggmhub.tasks.settings import TasksSettings

SERVICE = "tasks"
SCOPE = f"access:services!service={SERVICE}"


def configure(c, port=None, url=None, bind=None, session_url=None):
    """Register the ``tasks`` service (and users' access to it) in a hub's config ``c``.

    On one machine it listens on 127.0.0.1:``port`` (a free one by default) and sessions
    reach it there. In a z2jh hub pod give ``url`` (where the proxy reaches it, e.g.
    ``http://hub:10101``) and ``bind`` (the address it listens on, e.g. ``0.0.0.0``);
    sessions then learn ``session_url`` (or, unset, nothing here:
    ``c.OGGMHubSpawner.tasks_url`` tells them).
    """
    if port is None and url is None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    url = url or f"http://127.0.0.1:{port}"
    env = {k: os.environ[k] for k in ("OGGMHUB_DATA_DIR", "OGGMHUB_CATALOG", "OGGMHUB_IMAGES", "OGGMHUB_ENV_CACHE",
                                      "OGGMHUB_TASKS_CONFIG", "PYTHONPATH", "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT",
                                      "KUBECONFIG", "POD_NAMESPACE", "OGGMHUB_SHARED_ACCOUNT",
                                      "OGGMHUB_ACCOUNT_PREFIX", "OGGMHUB_USAGE_DB")
           if k in os.environ}
    if bind:
        env["OGGMHUB_TASKS_BIND"] = bind
    env["OGGMHUB_CATALOG"] = catalog_path(c)  # the hub's one catalog setting reaches the service
    c.JupyterHub.services = [*c.JupyterHub.get("services", []), {
        "name": SERVICE, "url": url, "display": True, "oauth_no_confirm": True,
        "command": [sys.executable, "-m", "oggmhub.tasks.service"], "environment": env,
        "oauth_client_allowed_scopes": [SCOPE],
    }]
    if session_url or url.startswith("http://127.0.0.1:"):
        # sessions on this machine reach the service directly (oggmhub.session.tasks reads it)
        c.Spawner.environment = {**c.Spawner.get("environment", {}),
                                 session_vars.TASKS_URL: session_url or f"{url}/services/{SERVICE}/"}
    # users reach the service; their servers' tokens too (oggmhub.session.tasks in a notebook)
    roles = list(c.JupyterHub.get("load_roles", []))
    for name, base in (("user", ["self"]), ("server", ["users:activity!user", "access:servers!server"])):
        role = next((r for r in roles if r.get("name") == name), None)
        if role is None:
            roles.append({"name": name, "scopes": [*base, SCOPE]})
        elif SCOPE not in role.get("scopes", base):
            role["scopes"] = [*role.get("scopes", base), SCOPE]
    # the service reads users' cohorts (their groups' records) to refuse runs as starts are refused
    if not any(r.get("name") == "oggmhub-tasks-service" for r in roles):
        roles.append({"name": "oggmhub-tasks-service", "scopes": list(cohort_gate.SCOPES), "services": [SERVICE]})
    c.JupyterHub.load_roles = roles


def pass_catalog(c):
    """Give a ``tasks`` service registered elsewhere (the chart's ``hub.services``) the hub's
    one catalog setting, ``c.Catalog.path``, as ``$OGGMHUB_CATALOG``: the service is a process
    of its own and reads no ``hub.config``, so the path is declared once, for the hub."""
    for service in c.JupyterHub.get("services", []):
        if service.get("name") == SERVICE:
            service["environment"] = {**(service.get("environment") or {}), "OGGMHUB_CATALOG": catalog_path(c)}


class _Base(HubOAuthenticated, web.RequestHandler):
    @property
    def app(self):
        return self.settings["tasks"]

    @property
    def username(self):
        return self.current_user["name"]

    def policy(self):
        """The user's :class:`PathPolicy`; refused if their home folder is another account's."""
        a = self.app
        check_home = getattr(a.runner, "check_home", None)
        if check_home is not None:
            check_home(self.username)
        return PathPolicy(self.username, a.settings.homes_dir, a.catalog.datasets, a.settings.user_prefix,
                          a.settings.data_dir, a.settings.public_sources)

    async def check_cohorts(self):
        """403 naming the cohort and why when the user's cohorts refuse runs now."""
        try:
            why = await cohort_gate.refusal(self.username)
        except cohort_gate.HubUnreachable as e:
            raise web.HTTPError(503, f"cannot check your cohorts now ({e}); try again") from None
        if why:
            raise web.HTTPError(403, why)
        try:  # a usage budget used up refuses runs too (oggmhub.usage.budgets)
            names = await cohort_gate.cohort_names(self.username)
        except cohort_gate.HubUnreachable as e:
            raise web.HTTPError(503, f"cannot check your cohorts now ({e}); try again") from None
        why = usage_tasks.refusal(self.app.settings.data_dir, self.app.catalog, self.username, names)
        if why:
            raise web.HTTPError(403, why)

    def body(self):
        try:
            return json.loads(self.request.body or b"{}")
        except ValueError as e:
            raise TaskInputError([f"body: not JSON ({e})"]) from None

    def write_error(self, status_code, **kwargs):
        error = kwargs.get("exc_info", (None, None))[1]
        self.set_header("Content-Type", "application/json")
        message = getattr(error, "log_message", None) or self._reason
        problems = getattr(error, "problems", [message])
        self.finish({"status": status_code, "message": "; ".join(problems) if problems else message,
                     "problems": problems})

    def _handle_request_exception(self, e):
        if isinstance(e, LocationError):
            e = TaskInputError([str(e)])
        if isinstance(e, (TaskInputError, DaskLimitError)):
            self.set_status(400)
            self.set_header("Content-Type", "application/json")
            problems = getattr(e, "problems", [f"{getattr(e, 'limit', 'budget')}: {e}"])
            self.finish({"status": 400, "message": "; ".join(problems), "problems": problems})
            return
        super()._handle_request_exception(e)

    def run_or_404(self, run_id):
        record = self.app.store.get(self.username, run_id)
        if record is None:
            raise web.HTTPError(404, f"you have no run {run_id!r}")
        return record

    def send(self, model, status=200):
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(model))


class TasksHandler(_Base):
    @web.authenticated
    def get(self):
        self.send({"tasks": [t.to_json() for t in self.app.runner.tasks.values()], "problems": self.app.problems})


class TaskHandler(_Base):
    @web.authenticated
    def get(self, task_id, xml=None):
        task = self.app.runner.task(task_id)
        if xml:
            self.set_header("Content-Type", "application/xml" if task.spec.kind == "slicer-cli" else "text/plain")
            self.finish(task.spec.source)
            return
        self.send(task.to_json())


class RunsHandler(_Base):
    @web.authenticated
    def get(self):
        runs = [self.app.runner.describe(self.username, r) for r in self.app.store.list(self.username)]
        self.send({"runs": runs})

    @web.authenticated
    async def post(self):
        body = self.body()
        await self.check_cohorts()
        self.send(await self.app.start(self.username, body, self.policy()), 201)


class RunHandler(_Base):
    @web.authenticated
    def get(self, run_id):
        self.send(self.app.runner.describe(self.username, self.run_or_404(run_id)))


class LogHandler(_Base):
    @web.authenticated
    def get(self, run_id):
        record = self.run_or_404(run_id)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(self.app.store.log(self.username, record["id"]))


class OutputsHandler(_Base):
    @web.authenticated
    async def get(self, run_id, name=None):
        record = self.run_or_404(run_id)
        published = record.get("published") or {}
        if name is None:
            base = self.request.path.rstrip("/")
            self.send({"status": record["status"], "outputs": {
                n: {"location": record["outputs"].get(n), "url": f"{base}/{n}" if n in published else None}
                for n in record.get("outputs", {})}})
            return
        if name not in published:
            raise web.HTTPError(404, f"run {run_id} has no output {name!r} (status {record['status']})")
        location = self.policy().output(name, record["outputs"][name])
        plan = location.to_plan(self.app.catalog.datasets, self.app.settings.storage_options)
        from oggmhub.tasks.execution import _filesystem

        loop = asyncio.get_running_loop()
        if plan["kind"] == "local":  # no link the user may plant is followed (oggmhub.tasks.downloads)
            from oggmhub.tasks.downloads import NotDownloadable, read_home_file

            run_as = self.app.runner.run_as_for(self.username)
            policy = self.policy()
            try:
                data = await loop.run_in_executor(None, read_home_file, policy.home, plan["path"],
                                                  run_as["uid"] if run_as else None)
            except NotDownloadable as e:
                raise web.HTTPError(404, f"output {name}: {e}") from None
        else:
            fs, path = _filesystem(plan)
            data = await loop.run_in_executor(None, fs.cat_file, path)
        self.set_header("Content-Type", "application/octet-stream")
        self.set_header("Content-Disposition", f'attachment; filename="{os.path.basename(location.path)}"')
        self.finish(data)


class CancelHandler(_Base):
    @web.authenticated
    async def post(self, run_id):
        record = self.run_or_404(run_id)
        self.send(await self.app.runner.cancel(self.username, record))


class RerunHandler(_Base):
    @web.authenticated
    async def post(self, run_id):
        record = self.run_or_404(run_id)
        if record.get("kind") == "batch":
            raise TaskInputError(["rerun: rerun the runs of a batch one by one, or start the batch again"])
        changes = self.body()
        await self.check_cohorts()
        body = {"task": record["task"],
                "parameters": {**record["parameters"], **(changes.get("parameters") or {})},
                "input-map": {**record["input-map"], **(changes.get("input-map") or {})},
                "output-map": {**record["output-map"], **(changes.get("output-map") or {})}}
        new = await self.app.start(self.username, body, self.policy())
        new["rerun_of"] = record["id"]
        self.app.store.update(self.username, new["id"], rerun_of=record["id"])
        self.send(new, 201)


class FilesHandler(_Base):
    """What the form's file pickers offer: files in the home, datasets' objects."""

    @web.authenticated
    async def get(self):
        loop = asyncio.get_running_loop()
        self.send(await loop.run_in_executor(None, pages.pickable_files, self.policy(), self.app))


class IndexHandler(_Base):
    @web.authenticated
    def get(self):
        runs = [self.app.runner.describe(self.username, r) for r in self.app.store.list(self.username)]
        self.finish(pages.index(self.app, self.username, runs, self.settings["prefix"]))


class FormHandler(_Base):
    @web.authenticated
    def get(self, task_id):
        task = self.app.runner.task(task_id)
        runs = [r for r in self.app.store.list(self.username) if r["task"] == task.id]
        self.finish(pages.form(task, runs, self.settings["prefix"], self.xsrf_token.decode(), self.username))


class TasksApp:
    """The service's state: settings, catalog, tasks, runs, run slots."""

    def __init__(self, settings, log):
        from oggmhub.catalog import load_catalog

        self.settings = settings
        self.log = log
        self.catalog = load_catalog(settings.catalog_path)
        self.problems = []
        tasks = discover(self.catalog, settings.images_dir, self.problems)
        for problem in self.problems:
            log.warning("tasks: %s", problem)
        self.store = RunStore(settings.runs_dir)
        self.store.mark_lost()
        self.slots = UserSlots()
        if settings.backend == "kubernetes":
            from oggmhub.tasks.kubernetes_runner import KubernetesRunner

            self.runner = KubernetesRunner(settings, tasks, self.catalog, self.store, log)
        else:
            from oggmhub.tasks.local_runner import LocalRunner

            self.runner = LocalRunner(settings, tasks, self.catalog, self.store, self.slots, log)

    async def start(self, user, body, policy):
        if isinstance(body, dict) and "batch" in body:
            return await self.runner.start_batch(user, body, policy)
        return await self.runner.start(user, body, policy)


def make_app(settings, log):
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/tasks/")
    state = TasksApp(settings, log)
    task = r"([a-z0-9][a-z0-9_-]*/[A-Za-z0-9_.-]+)"
    run = r"([0-9a-f]+)"
    handlers = [
        (prefix + r"api/tasks/?", TasksHandler),
        (prefix + rf"api/tasks/{task}/(xml)", TaskHandler),
        (prefix + rf"api/tasks/{task}", TaskHandler),
        (prefix + r"api/runs/?", RunsHandler),
        (prefix + rf"api/runs/{run}", RunHandler),
        (prefix + rf"api/runs/{run}/log", LogHandler),
        (prefix + rf"api/runs/{run}/outputs/?", OutputsHandler),
        (prefix + rf"api/runs/{run}/outputs/([A-Za-z0-9_]+)", OutputsHandler),
        (prefix + rf"api/runs/{run}/cancel", CancelHandler),
        (prefix + rf"api/runs/{run}/rerun", RerunHandler),
        (prefix + r"api/files", FilesHandler),
        (prefix + r"oauth_callback", HubOAuthCallbackHandler),
        (prefix + rf"form/{task}", FormHandler),
        (prefix + r"?", IndexHandler),
    ]
    return web.Application(handlers, tasks=state, prefix=prefix, cookie_secret=os.urandom(32)), state


def main(argv=None):
    import logging

    from tornado.ioloop import IOLoop

    settings = TasksSettings()
    settings.initialize(argv)
    logging.basicConfig(level=logging.INFO, format="[tasks %(asctime)s] %(message)s")
    log = logging.getLogger("oggmhub.tasks")
    app, state = make_app(settings, log)
    url = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:10101"))
    app.listen(url.port, os.environ.get("OGGMHUB_TASKS_BIND") or url.hostname)  # in a pod: 0.0.0.0
    log.info("tasks: %d tasks, listening on %s", len(state.runner.tasks), url.geturl())

    async def serve():
        import signal

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):  # JupyterHub stops its services with SIGTERM
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("tasks: stopping (%s backend)", settings.backend)
        await state.runner.close()  # no tool outlives the service (Jobs run on, in Kubernetes)

    IOLoop.current().run_sync(serve)


if __name__ == "__main__":
    main()
