"""Tool tasks from a notebook: start a run of the hub's ``tasks`` service, wait, fetch outputs.

In a session on the hub, the server's own token and the hub's address are in the
environment, so::

    from oggmhub.session import tasks

    tasks.list()                                      # the hub's tasks
    run = tasks.start("slicer/GaussianBlur", {"sigma": 2},
                      input_map={"inputVolume": "dataset:scans/ct/head.nrrd"},
                      output_map={"outputVolume": "home:blurred/head.nrrd"})
    run = tasks.wait(run)                             # done, failed or cancelled
    tasks.fetch(run, "outputVolume", "head-blurred.nrrd")

Only the standard library is used; nothing of the hub is imported. Errors from the
service (400: a bad parameter) raise :class:`TaskError` with its message.
"""

from __future__ import annotations

import builtins
import json
import os
import time
import urllib.error
import urllib.request

from oggmhub.session import env as session_vars

FINISHED = ("done", "failed", "cancelled")


class TaskError(Exception):
    """The tasks service refused a request or a run failed; ``problems`` says why."""

    def __init__(self, message, problems=(), status=None):
        super().__init__(message)
        self.problems = builtins.list(problems)
        self.status = status


class Client:
    """The tasks service at ``url`` (default: ``$OGGMHUB_TASKS_URL``, else the hub's
    ``/services/tasks/``), with ``token``
    (default: ``$JUPYTERHUB_API_TOKEN``, the session's own)."""

    def __init__(self, url=None, token=None):
        url = url or os.environ.get(session_vars.TASKS_URL)  # set by the hub's configure_hub
        if url is None:
            hub = os.environ.get("JUPYTERHUB_PUBLIC_HUB_URL") or os.environ.get("JUPYTERHUB_EXTERNAL_URL")
            if not hub:
                api = os.environ.get("JUPYTERHUB_API_URL", "http://127.0.0.1:8081/hub/api")
                hub = api.rsplit("/hub/api", 1)[0]
            url = hub.rstrip("/") + "/services/tasks/"
        self.url = url if url.endswith("/") else url + "/"
        self.token = token or os.environ.get("JUPYTERHUB_API_TOKEN", "")

    def request(self, method, path, body=None, raw=False):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + "api/" + path, data=data, method=method,
                                     headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                content = r.read()
        except urllib.error.HTTPError as e:
            text = e.read().decode(errors="replace")
            try:
                model = json.loads(text)
            except ValueError:
                model = {"message": text}
            raise TaskError(model.get("message", text), model.get("problems", ()), e.code) from None
        return content if raw else json.loads(content)

    def list(self):
        return self.request("GET", "tasks")["tasks"]

    def spec(self, task):
        return self.request("GET", f"tasks/{task}")

    def start(self, task, parameters=None, input_map=None, output_map=None, input_str=None):
        """Start a run; ``input_str``: small texts (file name -> text) written as files for
        the task, which an input names as ``input-str:NAME``."""
        body = {"task": task, "parameters": parameters or {}, "input-map": input_map or {},
                "output-map": output_map or {}}
        if input_str:
            body["input-str"] = input_str
        return self.request("POST", "runs", body)

    def batch(self, task, parameter, folder, glob, outputs, parameters=None):
        return self.request("POST", "runs", {"task": task, "parameters": parameters or {}, "batch": {
            "parameter": parameter, "folder": folder, "glob": glob, "outputs": outputs}})

    def status(self, run):
        return self.request("GET", f"runs/{_id(run)}")

    def log(self, run):
        return self.request("GET", f"runs/{_id(run)}/log", raw=True).decode(errors="replace")

    def cancel(self, run):
        return self.request("POST", f"runs/{_id(run)}/cancel", {})

    def rerun(self, run, parameters=None, **maps):
        return self.request("POST", f"runs/{_id(run)}/rerun", {"parameters": parameters or {}, **maps})

    def wait(self, run, timeout=3600, every=0.5, check=True):
        """The run's record once it has finished; with ``check``, :class:`TaskError` if it failed."""
        deadline = time.monotonic() + timeout
        while True:
            record = self.status(run)
            if record["status"] in FINISHED:
                if check and record["status"] == "failed":
                    raise TaskError(f"run {record['id']} failed: {record.get('error', '')}", status="failed")
                return record
            if time.monotonic() > deadline:
                raise TaskError(f"run {record['id']} still {record['status']} after {timeout} s")
            time.sleep(every)

    def fetch(self, run, output, dest=None):
        """An output's bytes; written to ``dest`` (a path) when given, which is returned."""
        data = self.request("GET", f"runs/{_id(run)}/outputs/{output}", raw=True)
        if dest is None:
            return data
        with open(dest, "wb") as f:
            f.write(data)
        return dest


def _id(run):
    return run["id"] if isinstance(run, dict) else str(run)


_default = None


def _client():
    global _default
    if _default is None:
        _default = Client()
    return _default


def list():  # noqa: A001 (the module's verb)
    return _client().list()


def start(task, parameters=None, input_map=None, output_map=None, input_str=None):
    return _client().start(task, parameters, input_map, output_map, input_str)


def wait(run, timeout=3600):
    return _client().wait(run, timeout)


def fetch(run, output, dest=None):
    return _client().fetch(run, output, dest)
