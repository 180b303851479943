"""Runs on Kubernetes: one Job per run in the user's namespace (``TasksSettings.backend =
"kubernetes"``).

For each run the runner creates, in the namespace the spawner gives the user
(:func:`oggmhub.backends.kubernetes.namespace.user_namespace_name`), the Job of
:func:`oggmhub.tasks.kubernetes.job` (the environment's image, the user's home volume, the
environment's dataset mounts, the size's CPU and memory) and then the ConfigMap with its
plan, owned by the Job (the pod waits for it, as for any volume). The namespace's
ResourceQuota counts the Job's pod; what does not fit waits, queued by Kubernetes' Job
controller: there is no scheduler of oggmhub's.

One watch per namespace (kubernetes_asyncio, as kubespawner's reflectors) follows the
runs' Jobs while any is active: a Job with an active pod makes its run ``running``, a
succeeded one ``done`` (the outputs its pod's last log line names), a failed one
``failed`` with the tail of its pod's log (the tool's stderr) or the Job's own reason.
The pod's log becomes the run's log; the plan's ConfigMap is deleted then, the Job stays
for ``TasksSettings.job_ttl`` seconds. Cancelling deletes the Job (propagationPolicy
Background: its pod goes too) and its ConfigMap; a cancelled batch leaves nothing.

The service needs, in each user namespace, the Role ``oggmhub-tasks`` (the spawner
creates it with ``OGGMHubSpawner.tasks_url``): Jobs, ConfigMaps, pods and their logs.
"""

from __future__ import annotations

import asyncio
import json
import os
import time

from oggmhub.backends.kubernetes.namespace import home_pvc_name, user_namespace_name
from oggmhub.tasks import execution
from oggmhub.tasks import kubernetes as k8s
from oggmhub.tasks.runs import Runner

RUN_LABEL = "oggmhub.org/task-run"
SELECTOR = f"app.kubernetes.io/managed-by=oggmhub,{RUN_LABEL}"
LOG_BYTES = 1_000_000  # the most of a pod's log read back


def job_state(job):
    """``(state, reason)`` of a Job (a dict): ``queued``, ``running``, ``done`` or ``failed``."""
    status = job.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Complete":
            return "done", ""
        if condition.get("type") == "Failed":
            return "failed", f"{condition.get('reason', 'Failed')}: {condition.get('message', '')}".rstrip(": ")
    if status.get("succeeded"):
        return "done", ""
    if status.get("failed"):
        return "failed", "the Job's pod failed"
    if status.get("active"):
        return "running", ""
    return "queued", ""


def split_log(text):
    """``(log, result)`` of a run pod's log: what the tool printed, and the result dict
    :func:`oggmhub.tasks.execution.main` prints last (None if the pod ended before)."""
    body, _, last = text.rstrip("\n").rpartition("\n")
    try:
        result = json.loads(last)
        if isinstance(result, dict) and "status" in result:
            return body, result
    except ValueError:
        pass
    return text, None


class KubernetesRunner(Runner):
    """:class:`~oggmhub.tasks.runs.Runner` as Kubernetes Jobs in users' namespaces."""

    backend = "kubernetes"

    def __init__(self, settings, tasks, catalog, store, log):
        super().__init__(settings, tasks, catalog, store, log)
        self._client = None
        self._client_lock = asyncio.Lock()
        self.active = {}  # run id -> (user, namespace)
        self.watches = {}  # namespace -> asyncio.Task

    # --- the API --------------------------------------------------------------------------------

    async def client(self):
        async with self._client_lock:
            if self._client is None:
                from kubernetes_asyncio import client, config

                conf = client.Configuration()
                if self.settings.kubeconfig:
                    await config.load_kube_config(config_file=self.settings.kubeconfig, client_configuration=conf)
                else:
                    # JupyterHub starts its services with a clean environment: in a pod, the API
                    # is still at the cluster's own name
                    if os.path.exists("/var/run/secrets/kubernetes.io/serviceaccount/token"):
                        os.environ.setdefault("KUBERNETES_SERVICE_HOST", "kubernetes.default.svc")
                        os.environ.setdefault("KUBERNETES_SERVICE_PORT", "443")
                    try:
                        config.load_incluster_config(client_configuration=conf)
                    except config.ConfigException:
                        await config.load_kube_config(client_configuration=conf)
                self._client = client.ApiClient(conf)
        return self._client

    async def _apis(self):
        from kubernetes_asyncio import client

        api_client = await self.client()
        return client.BatchV1Api(api_client), client.CoreV1Api(api_client)

    def namespace_of(self, user):
        return user_namespace_name(user, self.settings.hub_namespace, self.settings.user_namespace_template)

    def home_of(self, user):
        from oggmhub.user_folders import home_path

        return os.path.realpath(home_path(self.settings.homes_dir, user))

    # --- starting -------------------------------------------------------------------------------

    def manifests(self, user, task, record, locations):
        """``(namespace, ConfigMap, Job)`` for a run (the ConfigMap gets its owner once the Job exists)."""
        environment = self.catalog.environments[task.environment]
        plan = self.plan(record, task, locations, self.python(task.environment))  # pod_plan names the tool there
        namespace = self.namespace_of(user)
        config_map, job = k8s.manifests(
            plan, namespace, environment, user, self.home_of(user),
            datasets=[self.catalog.datasets[n] for n in environment.datasets],
            mounter_image=self.settings.mounter_image,
            pvc_name=home_pvc_name(user, self.settings.pvc_name_template),
            task_id=task.id, ttl=self.settings.job_ttl)
        return namespace, config_map, job

    def budget(self, task):
        """None: the user namespace's ResourceQuota holds the budget, and Kubernetes queues."""
        return None

    def python(self, environment):
        """The image's own ``python`` (the Job's pod runs the environment's image)."""
        return "python"

    async def _submit(self, user, task, record, locations, budget):
        from kubernetes_asyncio.client.exceptions import ApiException

        run_id = record["id"]
        try:
            namespace, config_map, job = self.manifests(user, task, record, locations)
            batch, core = await self._apis()
        except Exception as e:  # noqa: BLE001 (a dataset that cannot be mounted, no kubeconfig: say why)
            self.store.update(user, run_id, status="failed", finished=time.time(),
                              error=f"could not prepare the run's Job: {e}")
            return
        self.active[run_id] = (user, namespace)
        self._ensure_watch(namespace)
        created = None
        try:
            created = await batch.create_namespaced_job(namespace, job)
            owner = {"name": created.metadata.name, "uid": created.metadata.uid}
            config_map = k8s.plan_config_map(json.loads(config_map["data"]["plan.json"]), namespace, owner)
            await core.create_namespaced_config_map(namespace, config_map)
            if run_id not in self.active and self.store.get(user, run_id)["status"] == "cancelled":
                await self._delete(namespace, job["metadata"]["name"])  # cancelled meanwhile
        except ApiException as e:
            self.active.pop(run_id, None)
            if created is not None:  # nothing half-created: no Job without its plan
                await self._delete(namespace, job["metadata"]["name"])
            self.store.update(user, run_id, status="failed", finished=time.time(), error=self._refusal(e, namespace))
        except Exception as e:  # noqa: BLE001 (the API unreachable: nothing may be left half-created)
            self.active.pop(run_id, None)
            if created is not None:
                try:
                    await self._delete(namespace, job["metadata"]["name"])
                except Exception:  # noqa: BLE001 (the Job owns nothing else; Kubernetes' TTL ends it)
                    self.log.exception("tasks: removing the Job of %s", run_id)
            self.store.update(user, run_id, status="failed", finished=time.time(),
                              error=f"could not reach Kubernetes to run the Job in {namespace}: {e!r}")

    def _refusal(self, error, namespace):
        try:
            detail = json.loads(error.body).get("message") or error.reason
        except (TypeError, ValueError, AttributeError):
            detail = error.reason
        if error.status == 404:
            return (f"your namespace {namespace} does not exist yet: start a server once (that creates it, "
                    f"with your quota), then run again ({detail})")
        if error.status == 403:
            return (f"the tasks service may not run Jobs in {namespace} ({detail}): start a server once "
                    "(the spawner grants it there), or tell the hub's admins")
        return f"Kubernetes refused the run's Job in {namespace} ({error.status} {error.reason}: {detail})"

    # --- watching ------------------------------------------------------------------------------

    def _ensure_watch(self, namespace):
        task = self.watches.get(namespace)
        if task is None or task.done():
            self.watches[namespace] = asyncio.ensure_future(self._watch(namespace))

    def _busy(self, namespace):
        return any(ns == namespace for _, ns in self.active.values())

    async def _watch(self, namespace):
        """Follow the runs' Jobs in ``namespace`` while any of them is active."""
        from kubernetes_asyncio import watch
        from kubernetes_asyncio.client.exceptions import ApiException

        batch, _ = await self._apis()
        version = None
        while self._busy(namespace):
            stream = watch.Watch()
            try:
                kwargs = {"label_selector": SELECTOR, "timeout_seconds": 60}
                if version:
                    kwargs["resource_version"] = version
                async for event in stream.stream(batch.list_namespaced_job, namespace, **kwargs):
                    raw = event["raw_object"]
                    version = (raw.get("metadata") or {}).get("resourceVersion") or version
                    await self._on_job(event["type"], raw)
                    if not self._busy(namespace):
                        break
            except asyncio.CancelledError:
                raise
            except ApiException as e:
                if e.status == 410:
                    version = None  # too old: list again (events already seen are idempotent)
                else:
                    self.log.warning("tasks: watching Jobs in %s: %s %s", namespace, e.status, e.reason)
                    await asyncio.sleep(1)
            except Exception as e:  # noqa: BLE001 (a dropped connection: watch again)
                self.log.warning("tasks: watching Jobs in %s: %r", namespace, e)
                await asyncio.sleep(1)
            finally:
                await stream.close()
        self.watches.pop(namespace, None)

    async def _on_job(self, kind, job):
        run_id = ((job.get("metadata") or {}).get("labels") or {}).get(RUN_LABEL)
        if run_id not in self.active:
            return  # cancelled, finished, or not this service's
        user, namespace = self.active[run_id]
        if kind == "DELETED":
            self.active.pop(run_id, None)
            self.store.update(user, run_id, status="failed", finished=time.time(),
                              error="the run's Job was deleted (not by oggmhub)")
            return
        state, reason = job_state(job)
        record = self.store.get(user, run_id)
        if state == "running" and record["status"] == "queued":
            self.store.update(user, run_id, status="running", started=time.time())
        elif state in ("done", "failed"):
            self.active.pop(run_id, None)
            await self._finish(user, namespace, run_id, job, state, reason)

    async def _finish(self, user, namespace, run_id, job, state, reason):
        text = await self._pod_log(namespace, job["metadata"]["name"])
        log, result = split_log(text)
        folder = self.store.run_dir(user, run_id)
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, execution.LOG), "w") as f:
            f.write(log)
        result = result or {}
        if state == "done" and result.get("status") == "done":
            changes = {"status": "done", "error": "", "published": result.get("outputs", {})}
        else:
            error = result.get("error") or log[-2000:] or reason or "the run's pod failed and left no log"
            changes = {"status": "failed", "error": error, "published": {}}
        try:  # the plan is spent (deleted before the run says it ended: nothing of it is left then)
            await self._delete_config_map(namespace, job["metadata"]["name"])
        except Exception as e:  # noqa: BLE001 (the Job owns it: Kubernetes deletes it with the Job)
            self.log.warning("tasks: deleting the plan of %s: %r", run_id, e)
        record = self.store.get(user, run_id)
        if record["status"] != "cancelled":
            self.store.update(user, run_id, finished=result.get("finished") or time.time(),
                              started=result.get("started") or record.get("started"),
                              cli_seconds=result.get("cli_seconds"), returncode=result.get("returncode"), **changes)

    async def _pod_log(self, namespace, job_name):
        from kubernetes_asyncio.client.exceptions import ApiException

        _, core = await self._apis()
        try:
            pods = await core.list_namespaced_pod(namespace, label_selector=f"job-name={job_name}")
            if not pods.items:
                return ""
            pod = sorted(pods.items, key=lambda p: p.metadata.creation_timestamp or 0)[-1]
            return await core.read_namespaced_pod_log(pod.metadata.name, namespace, container="task",
                                                      limit_bytes=LOG_BYTES)
        except ApiException as e:
            self.log.warning("tasks: reading the log of %s in %s: %s %s", job_name, namespace, e.status, e.reason)
            return ""

    # --- stopping ---------------------------------------------------------------------------------

    async def _delete(self, namespace, name):
        from kubernetes_asyncio.client.exceptions import ApiException

        batch, _ = await self._apis()
        try:
            await batch.delete_namespaced_job(name, namespace, propagation_policy="Background")
        except ApiException as e:
            if e.status != 404:
                raise
        await self._delete_config_map(namespace, name)

    async def _delete_config_map(self, namespace, name):
        from kubernetes_asyncio.client.exceptions import ApiException

        _, core = await self._apis()
        try:
            await core.delete_namespaced_config_map(name, namespace)
        except ApiException as e:
            if e.status != 404:
                raise

    async def _stop(self, user, run_ids, batch):
        namespace = self.namespace_of(user)
        for run_id in run_ids:
            self.active.pop(run_id, None)
        await asyncio.gather(*(self._delete(namespace, k8s._name(run_id)) for run_id in run_ids))

    def active_users(self):
        return {user for user, _ in self.active.values()}

    async def close(self):
        for task in list(self.watches.values()):
            task.cancel()
        await asyncio.gather(*self.watches.values(), return_exceptions=True)
        self.watches.clear()
        if self._client is not None:
            await self._client.close()
            self._client = None
