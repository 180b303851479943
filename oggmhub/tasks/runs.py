"""Runs and batches: their records, and starting, watching and cancelling them.

A run's record is ``<runs dir>/<user>/<id>/run.json`` (written to a temporary name and
renamed), beside its ``log.txt``. A user only ever reaches records under their own name.
States: ``queued`` -> ``running`` -> ``done`` | ``failed`` | ``cancelled``. A batch is a
record of kind ``batch`` whose ``children`` are ordinary runs; its state and summary are
computed from theirs.
"""

from __future__ import annotations

import asyncio
import glob as globlib
import json
import os
import posixpath
import time
import uuid

from oggmhub.session import env as session_vars
from oggmhub.tasks import execution
from oggmhub.tasks.parameters import TaskInputError, check_texts, validate

ACTIVE = ("queued", "running")
FIELDS = ("task", "parameters", "input-map", "output-map", "input-str", "batch")


class RunStore:
    """Run records, logs and cancel marks: the service's alone (mode 0700: with system
    accounts no user's account reads another's parameters, texts or logs)."""

    def __init__(self, root):
        self.root = root
        os.makedirs(root, mode=0o700, exist_ok=True)
        os.chmod(root, 0o700)

    def _dir(self, user, run_id):
        if not run_id.isalnum():
            raise KeyError(run_id)
        return os.path.join(self.root, user, run_id)

    def run_dir(self, user, run_id):
        return self._dir(user, run_id)

    def save(self, record):
        folder = self._dir(record["user"], record["id"])
        os.makedirs(folder, exist_ok=True)
        tmp = os.path.join(folder, ".run.json.tmp")
        with open(tmp, "w") as f:
            json.dump(record, f, indent=1)
        os.replace(tmp, os.path.join(folder, "run.json"))
        return record

    def get(self, user, run_id):
        try:
            with open(os.path.join(self._dir(user, run_id), "run.json")) as f:
                return json.load(f)
        except (OSError, ValueError, KeyError):
            return None

    def update(self, user, run_id, **changes):
        record = self.get(user, run_id)
        record.update(changes)
        return self.save(record)

    def list(self, user, limit=200):
        records = []
        for path in globlib.glob(os.path.join(self.root, user, "*", "run.json")):
            try:
                with open(path) as f:
                    records.append(json.load(f))
            except (OSError, ValueError):
                continue
        records.sort(key=lambda r: r["created"], reverse=True)
        return records[:limit]

    def log(self, user, run_id):
        try:
            with open(os.path.join(self._dir(user, run_id), execution.LOG), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def mark_lost(self):
        """Runs left active by a previous service process: failed, saying why."""
        for path in globlib.glob(os.path.join(self.root, "*", "*", "run.json")):
            try:
                with open(path) as f:
                    record = json.load(f)
            except (OSError, ValueError):
                continue
            if record.get("kind") == "run" and record["status"] in ACTIVE:
                record.update(status="failed", error="the tasks service restarted while this run was active",
                              finished=time.time())
                self.save(record)


def new_id():
    return uuid.uuid4().hex[:12]


def summary(children):
    counts = {}
    for child in children:
        counts[child["status"]] = counts.get(child["status"], 0) + 1
    total = len(children)
    if counts.get("cancelled"):
        status = "cancelled" if not any(counts.get(s) for s in ACTIVE) else "running"
    elif any(counts.get(s) for s in ACTIVE):
        status = "running" if total - counts.get("queued", 0) else "queued"
    else:
        status = "done" if counts.get("done", 0) == total else "failed"
    return status, {"total": total, **{s: counts.get(s, 0) for s in ("queued", "running", "done", "failed", "cancelled")}}


class Runner:
    """Starts runs of the hub's tasks for users; one per tasks service.

    The checks, records, plans and batches are the same on every backend; a backend says
    how a planned run executes (:meth:`_submit`), how runs stop (:meth:`_stop`), which users
    have runs in flight (:meth:`active_users`) and how it closes (:meth:`close`):
    :class:`oggmhub.tasks.local_runner.LocalRunner` on this machine (each tool as the
    user's account, in a cgroup of its own), :class:`oggmhub.tasks.kubernetes_runner.KubernetesRunner` as Jobs in each
    user's namespace. The REST API, the form and batches only see this interface.
    """

    backend = ""

    def __init__(self, settings, tasks, catalog, store, log):
        self.settings = settings
        self.tasks = tasks
        self.catalog = catalog
        self.store = store
        self.log = log

    def run_as_for(self, user):
        """The system account ``user``'s runs execute as (a JSON-able dict for the plan),
        or None for the service's own (:class:`TaskInputError` where there should be one
        and is not). On Kubernetes a run is the user's by being in their namespace, with
        their home volume, as uid 1000: None."""
        return None

    def prepare_account(self, user):
        """Make what :meth:`run_as_for` finds, once a request has passed its checks
        (:class:`TaskInputError` if it cannot be made). Nothing by default."""

    # --- what a backend provides ---------------------------------------------------------------

    def budget(self, task):
        """What one user's runs of ``task`` may use at once on this backend (passed to
        :meth:`_submit`), or None where the backend holds the budget itself."""
        raise NotImplementedError

    def python(self, environment):
        """The Python that runs ``environment``'s tools on this backend."""
        raise NotImplementedError

    async def _submit(self, user, task, record, locations, budget):
        raise NotImplementedError

    async def _stop(self, user, run_ids, batch):
        """Stop runs ``run_ids`` (already marked cancelled) and wait for them to end."""
        raise NotImplementedError

    def active_users(self):
        return set()

    async def close(self):
        """Stop everything this runner started (the service is stopping)."""

    # --- planning (no side effects) ---------------------------------------------------------

    def task(self, task_id):
        task = self.tasks.get(task_id)
        if task is None:
            known = ", ".join(sorted(self.tasks)) or "none"
            raise TaskInputError([f"task: unknown task {task_id!r}; this hub's tasks: {known}"])
        return task

    def command(self, task, python):
        """The tool's command; a Python one isolated (``-I``: :mod:`oggmhub.tasks.isolation`)."""
        from oggmhub.tasks import isolation

        if task.spec.kind == "scijava-script":
            return [*isolation.module_command(python, "oggmhub.tasks.script_runner"), task.path]
        return isolation.script_command(python, task.path) if task.path.endswith(".py") else [task.path]

    def check(self, user, body, policy):
        """``(task, values, locations)`` of a start request, or :class:`TaskInputError`."""
        if not isinstance(body, dict):
            raise TaskInputError(["body: give a JSON object with task, parameters, input-map, output-map"])
        unknown = set(body) - set(FIELDS)
        if unknown:
            raise TaskInputError([f"{k}: unknown field; allowed: {', '.join(FIELDS)}" for k in sorted(unknown)])
        task = self.task(body.get("task"))
        texts = check_texts(body.get("input-str"), self.settings.max_input_str_bytes)
        values, locations = validate(task, body.get("parameters") or {}, policy, body.get("input-map"),
                                     body.get("output-map"), self.settings.max_value_chars)
        missing = [f"{n}: {l.text!r} names no file of input-str (given: {', '.join(sorted(texts)) or 'none'})"
                   for n, l in locations.items() if l.kind == "text" and l.path not in texts]
        if missing:
            raise TaskInputError(missing)
        return task, values, locations

    def record(self, user, task, body, values, locations, parent=None):
        return {
            "id": new_id(), "kind": "run", "user": user, "task": task.id, "parent": parent,
            "parameters": body.get("parameters") or {}, "input-map": body.get("input-map") or {},
            "output-map": body.get("output-map") or {}, "input-str": body.get("input-str") or {}, "values": values,
            "inputs": {n: loc.text for n, loc in locations.items() if task.spec.parameter(n).is_input},
            "outputs": {n: loc.text for n, loc in locations.items() if task.spec.parameter(n).is_output},
            "status": "queued", "created": time.time(), "started": None, "finished": None,
            "error": "", "published": {},
        }

    def plan(self, record, task, locations, python):
        inputs = {n: l.to_plan(self.catalog.datasets, self.settings.storage_options)
                  for n, l in locations.items() if task.spec.parameter(n).is_input}
        outputs = {n: l.to_plan(self.catalog.datasets, self.settings.storage_options)
                   for n, l in locations.items() if task.spec.parameter(n).is_output}
        params = [{"name": p.name, "type": p.type, "index": p.index, "flag": p.flag, "longflag": p.longflag}
                  for p in task.spec.parameters]
        return {"run_id": record["id"], "run_dir": self.store.run_dir(record["user"], record["id"]),
                "kind": task.spec.kind, "command": self.command(task, python), "parameters": params,
                "values": record["values"], "inputs": inputs, "outputs": outputs, "texts": record.get("input-str") or {},
                "timeout": self.settings.run_timeout, "env": {session_vars.TASK_RUN: record["id"]},
                "run_as": self.run_as_for(record["user"])}

    # --- starting and watching ---------------------------------------------------------------

    async def start(self, user, body, policy):
        task, values, locations = self.check(user, body, policy)
        budget = self.budget(task)
        self.prepare_account(user)  # after the checks (a refused request makes nothing), before the record
        record = self.store.save(self.record(user, task, body, values, locations))
        await self._submit(user, task, record, locations, budget)
        return record

    # --- batches ------------------------------------------------------------------------------

    def list_folder(self, policy, parameter, folder, pattern):
        """The input locations (as text) of every object in ``folder`` matching ``pattern``."""
        if "/" in pattern or ".." in pattern:
            raise TaskInputError([f"batch.glob: {pattern!r} must be a file name pattern (no '/')"])
        base = folder.rstrip("/")
        location = policy.input("batch.folder", base if base else folder)
        if location.kind == "home":
            names = sorted(os.path.basename(p) for p in globlib.glob(os.path.join(location.path, pattern))
                           if os.path.isfile(p))
        else:
            fs, root = execution._filesystem(location.to_plan(self.catalog.datasets, self.settings.storage_options))
            names = sorted(posixpath.basename(p) for p in fs.glob(posixpath.join(root, pattern)))
        return [f"{base}/{n}" for n in names]

    async def start_batch(self, user, body, policy):
        batch = body.get("batch")
        if not isinstance(batch, dict):
            raise TaskInputError(["batch: give {parameter, folder, glob, outputs}"])
        task = self.task(body.get("task"))
        param = task.spec.parameter(batch.get("parameter", ""))
        if param is None or not param.is_input:
            raise TaskInputError([f"batch.parameter: name an input file of {task.id}: "
                                  + ", ".join(p.name for p in task.spec.inputs)])
        folders = batch.get("outputs") or {}
        missing = [p.name for p in task.spec.outputs if p.name not in folders]
        if missing or not isinstance(folders, dict):
            raise TaskInputError([f"batch.outputs: give an output folder for {', '.join(missing)}"])
        for name, folder in folders.items():
            if task.spec.parameter(name) is None or not task.spec.parameter(name).is_output:
                raise TaskInputError([f"batch.outputs.{name}: not an output of {task.id}"])
            policy.output_folder(name, folder)
        loop = asyncio.get_running_loop()
        try:
            inputs = await loop.run_in_executor(None, self.list_folder, policy, param.name,
                                                str(batch.get("folder", "")), str(batch.get("glob") or "*"))
        except (FileNotFoundError, OSError) as e:
            raise TaskInputError([f"batch.folder: cannot list {batch.get('folder')!r}: {e}"]) from None
        if not inputs:
            raise TaskInputError([f"batch.folder: nothing in {batch.get('folder')!r} matches {batch.get('glob') or '*'!r}"])
        if len(inputs) > self.settings.max_batch:
            raise TaskInputError([f"batch: {len(inputs)} objects match, more than your budget of "
                                  f"{self.settings.max_batch} runs a batch (Tasks.max_batch); narrow the glob"])
        budget = self.budget(task)
        self.prepare_account(user)
        children = []
        for text in inputs:
            stem = posixpath.basename(text)
            child = {**body, "input-map": {**(body.get("input-map") or {}), param.name: text},
                     "output-map": {n: f.rstrip("/") + "/" + stem for n, f in folders.items()}}
            child.pop("batch")
            children.append(self.check(user, child, policy) + (child,))
        record = {"id": new_id(), "kind": "batch", "user": user, "task": task.id, "batch": batch,
                  "parameters": body.get("parameters") or {}, "status": "queued", "created": time.time(),
                  "children": []}
        for task_, values, locations, child in children:
            run = self.store.save(self.record(user, task_, child, values, locations, parent=record["id"]))
            record["children"].append(run["id"])
        self.store.save(record)
        for run_id, (task_, _, locations, _) in zip(record["children"], children):
            await self._submit(user, task_, self.store.get(user, run_id), locations, budget)
        return self.describe(user, record)

    def describe(self, user, record):
        if record.get("kind") != "batch":
            return record
        children = [self.store.get(user, c) for c in record["children"]]
        status, counts = summary([c for c in children if c])
        return {**record, "status": status, "summary": counts,
                "runs": [{k: c[k] for k in ("id", "status", "inputs", "outputs", "error")} for c in children if c]}

    # --- cancelling ---------------------------------------------------------------------------

    async def cancel(self, user, record):
        """Cancel a run, or every active run of a batch; their processes, workers or Jobs
        stop and nothing of theirs is left behind."""
        ids = record["children"] if record.get("kind") == "batch" else [record["id"]]
        cancelled = []
        for run_id in ids:
            child = self.store.get(user, run_id)
            if child is None or child["status"] not in ACTIVE:
                continue
            self.store.update(user, run_id, status="cancelled", finished=time.time())
            cancelled.append(run_id)
        await self._stop(user, cancelled, record.get("kind") == "batch")
        return self.describe(user, self.store.get(user, record["id"]))
