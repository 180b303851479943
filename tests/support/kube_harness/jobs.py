"""``TestJobController``: a stand-in for Kubernetes' Job controller and the kubelet that runs a
Job's pod, for the tasks service's Kubernetes backend.

It watches Jobs (in-process, on the emulator's bus) and, for each new one:

* waits until the pod fits the namespace's ResourceQuotas (``pods``, ``limits.cpu``,
  ``limits.memory``, counting the namespace's non-terminal pods), as quota admission
  makes the real Job controller retry: a Job that does not fit stays without an active
  pod (queued);
* creates the Job's pod (labels ``job-name``/``controller-uid``, owned by the Job) and
  marks the Job ``active``;
* waits, as a kubelet does, for the ConfigMaps its volumes name;
* runs the pod's one container **as a local process**: its volumes are local folders
  (a ConfigMap's data written out, an ``emptyDir`` a temporary folder, a claim the folder
  ``claims`` maps it to), the image's own folders come from ``image_paths``, and
  ``python`` is this Python. Paths under a mount (in the command, the environment and the
  JSON files of ConfigMaps) are rewritten to the local folders. That rewriting is the
  stand-in's honest limit: there is no container runtime here. Init containers (the
  dataset mount sidecar) are not run; the run reads datasets through fsspec anyway;
* keeps the process's stdout+stderr as the pod's log (``GET pods/NAME/log``), then marks
  the pod Succeeded/Failed and the Job ``Complete``/``Failed`` (backoffLimit 0).

Deleting a Job (any propagation policy: Background is what oggmhub sends) kills the
process and all it started, and deletes its pods, as the garbage collector would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile

import kmock

from .api import KubeAPI
from .resources import _now, _resolve

JOBS = "batch/v1/jobs"


def _kill_tree(pid):
    """End a "container": the process and everything it started (a runtime kills the whole
    PID namespace; the tool runs in a session of its own, so a process group is not enough)."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()


def _cpu(value):
    value = str(value)
    return int(value[:-1]) / 1000 if value.endswith("m") else float(value)


def _memory(value):
    from oggmhub.session.quantities import parse_memory

    return parse_memory(str(value))


class TestJobController:
    """Runs the Jobs the API accepts as local processes (see the module's docstring)."""

    __test__ = False

    def __init__(self, api: KubeAPI, *, claims=None, image_paths=None, env=None, workdir=None):
        self.api = api
        self.claims = claims or {}  # claim name -> local folder
        self.image_paths = image_paths or (lambda job: {})  # job -> {path in the image: local folder}
        self.env = env or {}
        self.workdir = workdir or tempfile.mkdtemp(prefix="kmock-jobs-")
        self.procs = {}  # (namespace, job) -> process
        self.running_max = {}  # namespace -> most pods running at once
        self.started = []  # (namespace, job) in start order
        self._tasks = {}
        self._main = None
        self._ready = asyncio.Event()
        self._admission = asyncio.Lock()  # one quota decision at a time, as the API server's

    async def start(self):
        self._main = asyncio.create_task(self._run())
        await self._ready.wait()
        return self

    async def stop(self):
        for proc in self.procs.values():
            _kill_tree(proc.pid)
        tasks = [*self._tasks.values(), *([self._main] if self._main else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        shutil.rmtree(self.workdir, ignore_errors=True)

    async def _run(self):
        stream = self.api.emulator.subscribe(_resolve(JOBS), None, ready=self._ready)
        async for event in stream:
            job = event["object"]
            meta = job["metadata"]
            key = (meta["namespace"], meta["name"])
            if event["type"] == "DELETED":
                task = self._tasks.pop(key, None)
                proc = self.procs.pop(key, None)
                if proc is not None:
                    _kill_tree(proc.pid)
                if task is not None:
                    task.cancel()
                asyncio.create_task(self._delete_pods(*key))
            elif event["type"] == "ADDED" and key not in self._tasks:
                self._tasks[key] = asyncio.create_task(self._run_job(job))

    async def _delete_pods(self, namespace, job_name):
        for pod in self.api.objects("v1/pods", namespace):
            if (pod["metadata"].get("labels") or {}).get("job-name") == job_name:
                with contextlib.suppress(kmock.KubernetesError):
                    await self.api.delete("v1/pods", namespace, pod["metadata"]["name"])

    # --- quota, as admission would apply it ---------------------------------------------------

    def _live_pods(self, namespace):
        return [p for p in self.api.objects("v1/pods", namespace)
                if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]

    def _fits(self, namespace, spec):
        limits = [c.get("resources", {}).get("limits", {}) for c in spec["containers"]]
        want = {"pods": 1, "limits.cpu": sum(_cpu(l.get("cpu", 0)) for l in limits),
                "limits.memory": sum(_memory(l.get("memory", 0)) for l in limits)}
        pods = self._live_pods(namespace)
        used = {"pods": len(pods), "limits.cpu": 0.0, "limits.memory": 0}
        for pod in pods:
            for c in pod["spec"]["containers"]:
                lim = c.get("resources", {}).get("limits", {})
                used["limits.cpu"] += _cpu(lim.get("cpu", 0))
                used["limits.memory"] += _memory(lim.get("memory", 0))
        for quota in self.api.objects("v1/resourcequotas", namespace):
            hard = quota["spec"].get("hard", {})
            for key, amount in want.items():
                if key in hard:
                    cap = {"pods": int, "limits.cpu": _cpu, "limits.memory": _memory}[key](hard[key])
                    if used[key] + amount > cap + 1e-9:
                        return False
        return True

    # --- one Job ------------------------------------------------------------------------------

    async def _run_job(self, job):
        meta = job["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        spec = job["spec"]["template"]["spec"]
        pod_name = f"{name}-{os.urandom(3).hex()[:5]}"
        labels = {**(job["spec"]["template"].get("metadata") or {}).get("labels", {}),
                  "job-name": name, "controller-uid": meta["uid"]}
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": pod_name, "namespace": namespace, "labels": labels,
                            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": name,
                                                 "uid": meta["uid"], "controller": True}]},
               "spec": spec, "status": {"phase": "Pending"}}
        while True:  # quota admission refuses the pod; the Job controller retries; the Job waits
            async with self._admission:
                if self._fits(namespace, spec):
                    await self.api.create("v1/pods", pod, namespace)
                    break
            await asyncio.sleep(0.1)
        await self._patch_job(namespace, name, {"status": {"active": 1, "startTime": _now()}})
        self.running_max[namespace] = max(self.running_max.get(namespace, 0), len(self._live_pods(namespace)))
        self.started.append((namespace, name))
        folder = tempfile.mkdtemp(prefix=f"{pod_name}-", dir=self.workdir)
        try:
            mounts = await self._mounts(namespace, spec, folder)
            (container,) = spec["containers"]
            paths = {**self.image_paths(job), **mounts}
            self._rewrite_files(mounts, spec, paths)
            command = [self._local(arg, paths) for arg in container["command"] + container.get("args", [])]
            if command[0] == "python":
                command[0] = sys.executable
            env = {**os.environ, **self.env,
                   **{e["name"]: self._local(e.get("value", ""), paths) for e in container.get("env", [])}}
            await self.api.patch("v1/pods", namespace, pod_name, {"status": {"phase": "Running", "startTime": _now()}})
            proc = await asyncio.create_subprocess_exec(
                *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                cwd=self._local(container.get("workingDir", "/"), paths), env=env, start_new_session=True)
            self.procs[(namespace, name)] = proc
            out, _ = await proc.communicate()
            code = proc.returncode
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 (the "container" could not start)
            out, code = f"stand-in kubelet: cannot run the container: {e!r}\n".encode(), 128
        finally:
            self.procs.pop((namespace, name), None)
        self.api.emulator.pod_logs[(namespace, pod_name)] = out.decode(errors="replace")
        phase = "Succeeded" if code == 0 else "Failed"
        terminated = {"exitCode": code, "reason": "Completed" if code == 0 else "Error", "finishedAt": _now()}
        with contextlib.suppress(kmock.KubernetesError):
            await self.api.patch("v1/pods", namespace, pod_name, {"status": {
                "phase": phase, "containerStatuses": [{"name": "task", "ready": False, "restartCount": 0,
                                                       "image": container["image"], "imageID": "",
                                                       "state": {"terminated": terminated}}]}})
        condition = ({"type": "Complete", "status": "True"} if code == 0 else
                     {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                      "message": "Job has reached the specified backoff limit"})
        await self._patch_job(namespace, name, {"status": {
            "active": 0, ("succeeded" if code == 0 else "failed"): 1, "completionTime": _now(),
            "conditions": [{**condition, "lastTransitionTime": _now()}]}})
        self._tasks.pop((namespace, name), None)

    async def _patch_job(self, namespace, name, patch):
        with contextlib.suppress(kmock.KubernetesError):  # deleted meanwhile
            await self.api.patch(JOBS, namespace, name, patch)

    async def _mounts(self, namespace, spec, folder):
        """mountPath -> local folder for the container's volumes (ConfigMaps waited for)."""
        (container,) = spec["containers"]
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        local = {}
        for mount in container.get("volumeMounts", []):
            volume = volumes.get(mount["name"], {})
            path = os.path.join(folder, mount["name"])
            if "configMap" in volume:
                while (cm := self.api.get("v1/configmaps", namespace, volume["configMap"]["name"])) is None:
                    await asyncio.sleep(0.05)  # the kubelet retries the volume until it exists
                os.makedirs(path, exist_ok=True)
                for key, text in (cm.get("data") or {}).items():
                    with open(os.path.join(path, key), "w") as f:
                        f.write(text)
            elif "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                path = self.claims.get(claim) or path
                os.makedirs(path, exist_ok=True)
            else:  # emptyDir, and volumes (dataset mounts) the stand-in does not fill
                os.makedirs(path, exist_ok=True)
            local[mount["mountPath"]] = path
        return local

    def _local(self, value, paths):
        if not isinstance(value, str) or not value.startswith("/"):
            return value
        for prefix in sorted(paths, key=len, reverse=True):
            if value == prefix or value.startswith(prefix.rstrip("/") + "/"):
                return paths[prefix] + value[len(prefix.rstrip("/")):]
        return value

    def _walk(self, value, paths):
        if isinstance(value, dict):
            return {k: self._walk(v, paths) for k, v in value.items()}
        if isinstance(value, list):
            return [self._walk(v, paths) for v in value]
        return self._local(value, paths)

    def _rewrite_files(self, mounts, spec, paths):
        """Paths inside the ConfigMaps' JSON files (the run's plan) point at the local folders."""
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        (container,) = spec["containers"]
        for mount in container.get("volumeMounts", []):
            if "configMap" not in volumes.get(mount["name"], {}):
                continue
            folder = mounts[mount["mountPath"]]
            for name in os.listdir(folder):
                path = os.path.join(folder, name)
                try:
                    with open(path) as f:
                        data = json.load(f)
                except ValueError:
                    continue
                data = self._walk(data, paths)
                if isinstance(data.get("command"), list) and data["command"][:1] == ["python"]:
                    data["command"][0] = sys.executable
                with open(path, "w") as f:
                    json.dump(data, f)
