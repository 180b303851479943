"""``PodRunner``: the test kubelet's hooks that run a scheduled pod's containers as local
processes (test equipment, never a product backend).

* one mount namespace per pod (:mod:`support.deployment.container`), holding every
  container's ``volumeMounts``: a folder per PersistentVolumeClaim that outlives pods,
  ``emptyDir`` (removed with the pod), ``configMap``/``secret`` keys as files; a FUSE mount
  made by one container (the dataset sidecar) is seen by the others, as with
  ``mountPropagation``;
* images: ``<registry>/<env>:r2d-<tag>`` resolves to the environment built from
  ``images/<env>/`` whose content tag is ``<tag>`` (the local backend's build,
  :func:`oggmhub.backends.local.environments.build_local_env`), run through its start
  script as repo2docker's entrypoint would; the mount sidecar's image resolves to this
  machine's Python with oggmhub (``mounter_images``); any other image fails the pod
  (``ErrImagePull``, one sentence);
* ``command``/``args``/``env`` (values, field and secret references)/``workingDir``,
  ``runAsUser``/``runAsGroup``/``fsGroup`` as system accounts, one loopback address per
  pod (``0.0.0.0`` in its arguments and environment becomes that address, since a pod's
  "all addresses" is its own);
* init containers in order (to completion, or native sidecars until their startup probe
  passes), postStart exec hooks, exec/httpGet/tcpSocket probes, ready once every port answers; container
  statuses with exit codes and termination messages (written to ``$OGGMHUB_TERMINATION_LOG``,
  oggmhub's override of ``/dev/termination-log``: ``/dev`` here is the machine's); deletion: SIGTERM, the pod's grace
  period (at most ``max_grace`` s), SIGKILL, then its folders go.

``hosts``: a file bound at every pod's ``/etc/hosts`` (Services by name);
``kubeconfig(namespace)``: the file a pod with ``automountServiceAccountToken`` reads the
API through (``KUBECONFIG``). ``$(VAR)`` in ``command``/``args`` is expanded from the
container's environment.

Not emulated: resource limits as cgroups, restarts (a container that exits stays
exited), graceful deletion in the API (kmock removes pods at once, so the processes are
stopped just after the object is gone), image pulls (the build happens at start).
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from support.deployment.container import container_argv
from support.paths import CATALOG, REPO

from .resources import _now

MOUNTER_IMAGES = ("ghcr.io/oggmhub/mounter",)
IMAGE = re.compile(r"^(?:.*/)?(?P<env>[a-z0-9-]+):r2d-(?P<tag>[0-9a-f]+)$")


class PodFailed(Exception):
    """The pod cannot run (an image, a volume, a container that failed): ``reason``, ``message``."""

    WAITING = ("ErrImagePull", "CreateContainerConfigError", "CreateContainerError")

    def __init__(self, reason, message, statuses=None, container=None, image=""):
        super().__init__(message)
        self.reason, self.message, self.statuses = reason, message, statuses or {}
        self.container, self.image = container, image

    @property
    def status(self):
        """What the kubelet merges into the failed pod's status: a container that cannot be
        created leaves the pod Pending with the container waiting (as a kubelet reports
        ErrImagePull), one that ran and failed makes it Failed."""
        if self.reason in self.WAITING:
            return {"phase": "Pending", "conditions": [], "containerStatuses": [
                {"name": self.container or "", "ready": False, "started": False, "restartCount": 0,
                 "image": self.image, "imageID": "", "lastState": {},
                 "state": {"waiting": {"reason": self.reason, "message": self.message}}}]}
        status = {"reason": self.reason, "message": self.message}
        if self.statuses:
            status["initContainerStatuses"] = [
                {"name": name, "ready": False, "started": False, "restartCount": 0, "image": "", "imageID": "",
                 "state": state, "lastState": {}} for name, state in self.statuses.items()]
        return status


class RunningPod:
    def __init__(self, uid, folder, address):
        self.uid, self.folder, self.address = uid, folder, address
        self.pause = None
        self.processes = {}  # container name -> Popen
        self.logs = {}
        self.grace = 30
        self.termination = None
        self.stopping = False
        self.identity = {}  # container name -> uid, gid, groups (for its hooks and probes)


class PodRunner:
    """``on_start``/``on_stop`` for :class:`TestKubelet` (pass ``runner.on_start`` and ``runner.on_stop``).

    ``allocate()`` gives each pod its address; ``root`` holds volumes and logs.
    """

    def __init__(self, api, root, allocate, *, catalog=CATALOG, env_cache=None, mounter_images=MOUNTER_IMAGES,
                 start_timeout=180, max_grace=10, hosts=None, kubeconfig=None):
        self.api, self.root, self.allocate = api, str(root), allocate
        self.hosts, self.kubeconfig = hosts, kubeconfig
        self.catalog, self.env_cache = str(catalog), env_cache
        self.mounter_images, self.start_timeout, self.max_grace = tuple(mounter_images), start_timeout, max_grace
        self.pods = {}  # uid -> RunningPod
        self._pod_binds = {}  # uid -> its sandbox's binds

    # -- images --

    def resolve_image(self, image):
        """``(prefix folder, default entrypoint, image env)`` for ``image``; PodFailed if none."""
        if image.split(":")[0] in self.mounter_images:
            # gcsfs's zonal-bucket probe hangs against emulators (TESTING.md): off, as the tests have it
            return sys.prefix, [], {"PYTHONPATH": str(REPO), "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}
        m = IMAGE.match(image)
        if not m:
            raise PodFailed("ErrImagePull", f"image {image!r} is not an environment of images/ nor the mount sidecar's")
        from oggmhub.backends.local.environments import LocalEnvError, build_local_env
        from oggmhub.catalog import load_catalog

        try:
            venv = build_local_env(m["env"], load_catalog(self.catalog), root_dir=self.env_cache, shared=True)
        except (LocalEnvError, OSError, subprocess.CalledProcessError) as e:
            raise PodFailed("ErrImagePull", f"image {image!r}: its environment failed to build: {e}") from None
        if not os.path.basename(venv).endswith(m["tag"][:12]):
            raise PodFailed("ErrImagePull", f"image {image!r} not found: images/{m['env']}/ is now {venv.name}")
        env = {"NB_PYTHON_PREFIX": str(venv), "VIRTUAL_ENV": str(venv), "HOME": "/home/jovyan",
               "USER": "jovyan", "NB_USER": "jovyan", "SHELL": "/bin/bash"}
        start = [str(venv / "oggmhub-start")] if (venv / "oggmhub-start").exists() else []
        return str(venv), start, env

    # -- volumes --

    async def _volumes(self, pod, folder):
        ns = pod["metadata"]["namespace"]
        sc = pod["spec"].get("securityContext") or {}
        paths = {}
        for volume in pod["spec"].get("volumes") or []:
            name = volume["name"]
            if "persistentVolumeClaim" in volume:
                path = os.path.join(self.root, "volumes", ns, volume["persistentVolumeClaim"]["claimName"])
                if not os.path.isdir(path):
                    os.makedirs(path)
                    os.chmod(path, 0o777 if sc.get("fsGroup") is None else 0o2775)
                    if sc.get("fsGroup") is not None:
                        os.chown(path, sc.get("runAsUser") or 0, sc["fsGroup"])
            elif "emptyDir" in volume:
                path = os.path.join(folder, "volumes", name)
                os.makedirs(path)
                os.chmod(path, 0o777)
            elif "configMap" in volume or "secret" in volume:
                kind = "configMap" if "configMap" in volume else "secret"
                ref = volume[kind]
                obj = self.api.get("v1/configmaps" if kind == "configMap" else "v1/secrets", ns,
                                   ref.get("name") or ref.get("secretName"))
                if obj is None:
                    raise PodFailed("CreateContainerConfigError", f"{kind} {ref.get('name') or ref.get('secretName')!r} not found")
                data = dict(obj.get("stringData") or {})
                for key, value in (obj.get("data") or {}).items():
                    data[key] = base64.b64decode(value).decode() if kind == "secret" else value
                path = os.path.join(folder, "volumes", name)
                os.makedirs(path)
                items = ref.get("items") or [{"key": k, "path": k} for k in data]
                for item in items:
                    target = os.path.join(path, item["path"])
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    with open(target, "w") as f:
                        f.write(data[item["key"]])
                    os.chmod(target, item.get("mode", ref.get("defaultMode", 0o644)))
            else:
                raise PodFailed("CreateContainerConfigError", f"volume {name!r}: only persistentVolumeClaim, emptyDir, "
                                                              f"configMap and secret volumes run here")
            paths[name] = path
        return paths

    @staticmethod
    def _binds(pod, paths):
        binds = {}
        for c in [*(pod["spec"].get("initContainers") or []), *pod["spec"]["containers"]]:
            for m in c.get("volumeMounts") or []:
                source = os.path.join(paths[m["name"]], m.get("subPath") or "")
                if m.get("subPath"):
                    os.makedirs(source, exist_ok=True)
                binds.setdefault(m["mountPath"], (source, m["mountPath"], bool(m.get("readOnly"))))
        return list(binds.values())

    # -- containers --

    def _env(self, pod, container, image_env, address):
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOSTNAME": pod["metadata"]["name"],
               **image_env}
        for var in container.get("env") or []:
            if "value" in var:
                env[var["name"]] = str(var["value"]).replace("0.0.0.0", address)
            elif "fieldRef" in (var.get("valueFrom") or {}):
                path = var["valueFrom"]["fieldRef"]["fieldPath"]
                env[var["name"]] = {"metadata.name": pod["metadata"]["name"], "status.podIP": address,
                                    "metadata.uid": pod["metadata"]["uid"],
                                    "metadata.namespace": pod["metadata"]["namespace"],
                                    "spec.nodeName": "kmock-node"}.get(path, "")
            elif "secretKeyRef" in (var.get("valueFrom") or {}):
                ref = var["valueFrom"]["secretKeyRef"]
                secret = self.api.get("v1/secrets", pod["metadata"]["namespace"], ref["name"]) or {}
                value = (secret.get("stringData") or {}).get(ref["key"])
                if value is None and ref["key"] in (secret.get("data") or {}):
                    value = base64.b64decode(secret["data"][ref["key"]]).decode()
                env[var["name"]] = value or ""
        return env

    def _start_container(self, pod, running, container, binds):
        try:
            prefix, entrypoint, image_env = self.resolve_image(container["image"])
        except PodFailed as e:
            e.container, e.image = container["name"], container["image"]
            raise
        env = self._env(pod, container, image_env, running.address)
        env["PATH"] = f"{prefix}/bin:{env['PATH']}"
        # /dev is this machine's: the termination message goes where oggmhub's own override says
        env.setdefault("OGGMHUB_TERMINATION_LOG", running.termination)
        if pod["spec"].get("automountServiceAccountToken") and self.kubeconfig:
            # the pod's account reaches the API: kmock speaks plain HTTP, so a kubeconfig
            # (for the pod's namespace) stands in for the mounted service-account token
            env.setdefault("KUBECONFIG", self.kubeconfig(pod["metadata"]["namespace"]))
        if container.get("command"):
            argv = [*container["command"], *(container.get("args") or [])]
        else:
            argv = [*entrypoint, *(container.get("args") or [])]
        if not argv:
            raise PodFailed("CreateContainerError", f"container {container['name']!r}: no command")
        argv = [_expand(a, env).replace("0.0.0.0", running.address) for a in argv]  # $(VAR), as a kubelet does
        argv[0] = shutil.which(argv[0], path=env["PATH"]) or argv[0]
        psc = pod["spec"].get("securityContext") or {}
        csc = container.get("securityContext") or {}
        uid = csc.get("runAsUser", psc.get("runAsUser", 0 if prefix == sys.prefix else 1000))
        gid = csc.get("runAsGroup", psc.get("runAsGroup", uid))
        groups = [g for g in (psc.get("fsGroup"), *(psc.get("supplementalGroups") or [])) if g is not None]
        running.identity[container["name"]] = {"uid": uid, "gid": gid, "groups": groups}
        cwd = container.get("workingDir") or (env.get("HOME") if uid else "/")
        if not container.get("workingDir") and not os.path.isdir(cwd) and not any(
                cwd == b[1] or cwd.startswith(b[1] + "/") for b in binds or self._pod_binds.get(running.uid, [])):
            cwd = "/"  # no home volume in this pod (a Dask scheduler's): the image's root
        log = open(os.path.join(running.folder, f"{container['name']}.log"), "wb")
        argv = container_argv(binds if running.pause is None else [], argv, cwd=cwd, env=env, uid=uid, gid=gid,
                              groups=groups, spec_dir=running.folder, join=running.pause.pid if running.pause else None)
        running.logs[container["name"]] = log.name
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        running.processes[container["name"]] = proc
        return proc, env, uid

    async def _probe(self, pod, running, container, probe, env, uid):
        """True when ``probe`` (exec, httpGet, tcpSocket) passes once."""
        if "exec" in probe:
            argv = container_argv([], probe["exec"]["command"], env=env, spec_dir=running.folder,
                                  join=running.pause.pid, **running.identity[container["name"]])
            proc = await asyncio.create_subprocess_exec(*argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            return await proc.wait() == 0
        if "httpGet" in probe:
            port = _port(container, probe["httpGet"]["port"])
            url = f"http://{running.address}:{port}{probe['httpGet'].get('path', '/')}"
            try:
                return await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=2).status < 400)
            except OSError:
                return False
        port = _port(container, probe["tcpSocket"]["port"])
        return await asyncio.to_thread(_answers, running.address, port)

    async def _until(self, pod, running, container, check, what):
        deadline = time.monotonic() + self.start_timeout
        proc = running.processes[container["name"]]
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise PodFailed("Error", self._termination_message(running, container, proc.returncode),
                                {container["name"]: self._terminated(running, container, proc.returncode)})
            if await check():
                return
            await asyncio.sleep(0.2)
        raise PodFailed("Unhealthy", f"container {container['name']!r} did not pass its {what} "
                                     f"within {self.start_timeout} s")

    def _termination_message(self, running, container, code):
        path = os.path.join(running.folder, "termination-log")
        if os.path.exists(path) and open(path).read().strip():
            return open(path).read().strip()
        with open(running.logs[container["name"]], errors="replace") as f:
            tail = f.read()[-2000:].strip()
        return f"container {container['name']!r} exited with code {code}: {tail.splitlines()[-1] if tail else ''}"

    def _terminated(self, running, container, code):
        return {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                               "message": self._termination_message(running, container, code) if code else "",
                               "startedAt": _now(), "finishedAt": _now()}}

    # -- the hooks --

    async def on_start(self, pod):
        meta = pod["metadata"]
        folder = os.path.join(self.root, "pods", meta["uid"])
        os.makedirs(folder)
        running = self.pods[meta["uid"]] = RunningPod(meta["uid"], folder, self.allocate())
        running.grace = min(pod["spec"].get("terminationGracePeriodSeconds", 30), self.max_grace)
        try:
            return await self._run(pod, running)
        except PodFailed as e:
            await self._stop(running)
            await self._report_failure(pod, running, e)
            raise
        except BaseException:
            await self._stop(running)
            raise

    async def _run(self, pod, running):
        paths = await self._volumes(pod, running.folder)
        binds = self._binds(pod, paths)
        if self.hosts:  # Services by name (support.kube_harness.service_dns), as cluster DNS would
            binds.append((self.hosts, "/etc/hosts", True))
        termination = os.path.join(running.folder, "termination-log")
        open(termination, "w").close()
        os.chmod(termination, 0o666)
        running.termination = termination
        # the pod's mount namespace, held by a pause process (as a pod's sandbox)
        self._pod_binds[running.uid] = binds
        running.pause = subprocess.Popen(container_argv(binds, ["sleep", "infinity"], spec_dir=running.folder),
                                         start_new_session=True)
        await self._until_paused(running)
        for container in pod["spec"].get("initContainers") or []:
            proc, env, uid = await asyncio.to_thread(self._start_container, pod, running, container, [])
            if container.get("restartPolicy") == "Always":  # a native sidecar: up once started
                probe = container.get("startupProbe")
                if probe:
                    await self._until(pod, running, container,
                                      lambda: self._probe(pod, running, container, probe, env, uid), "startup probe")
                continue
            code = await asyncio.to_thread(proc.wait)
            if code:
                raise PodFailed("Init:Error", self._termination_message(running, container, code),
                                {container["name"]: self._terminated(running, container, code)})
        for container in pod["spec"]["containers"]:
            proc, env, uid = await asyncio.to_thread(self._start_container, pod, running, container, [])
            await self._post_start(pod, running, container, env, uid)
            probe = container.get("readinessProbe") or ({"tcpSocket": {"port": container["ports"][0]["containerPort"]}}
                                                         if container.get("ports") else None)
            if probe:
                await self._until(pod, running, container,
                                  lambda: self._probe(pod, running, container, probe, env, uid), "readiness probe")
        asyncio.get_running_loop().create_task(self._watch_exits(pod, running))
        return {"podIP": running.address, "podIPs": [{"ip": running.address}]}

    async def _post_start(self, pod, running, container, env, uid):
        """The container's postStart exec hook, in the pod, as the container's user; a hook
        that fails fails the pod (FailedPostStartHook), as a kubelet kills such a container."""
        hook = ((container.get("lifecycle") or {}).get("postStart") or {}).get("exec")
        if not hook:
            return
        argv = container_argv([], hook["command"], env=env, cwd=env.get("HOME", "/") if uid else "/",
                              spec_dir=running.folder, join=running.pause.pid, **running.identity[container["name"]])
        proc = await asyncio.create_subprocess_exec(*argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        out, _ = await proc.communicate()
        if proc.returncode:
            raise PodFailed("FailedPostStartHook", f"container {container['name']!r}: its postStart hook exited "
                                                   f"{proc.returncode}: {out.decode(errors='replace')[-500:].strip()}")

    async def _until_paused(self, running):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if running.pause.poll() is not None:
                raise PodFailed("CreateContainerConfigError", "the pod's volumes could not be mounted")
            try:
                if open(f"/proc/{running.pause.pid}/cmdline").read().startswith("sleep"):
                    return
            except OSError:
                pass
            await asyncio.sleep(0.05)
        raise PodFailed("CreateContainerConfigError", "the pod's sandbox did not start")

    async def _report_failure(self, pod, running, error):
        """Events and container statuses the way a kubelet reports a failed pod."""
        with _suppress():
            ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
            await self.api.create("v1/events", {
                "metadata": {"name": f"{name}.{os.urandom(8).hex()}", "namespace": ns},
                "involvedObject": {"kind": "Pod", "namespace": ns, "name": name, "uid": pod["metadata"]["uid"]},
                "reason": error.reason, "message": error.message, "type": "Warning",
                "firstTimestamp": _now(), "lastTimestamp": _now(), "count": 1}, ns)

    async def _watch_exits(self, pod, running):
        """Report containers that exit (exit code, message) in the pod's status."""
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        while running.uid in self.pods and not running.stopping:
            containers = pod["spec"]["containers"]
            codes = {c["name"]: running.processes[c["name"]].poll() for c in containers}
            if any(code is not None for code in codes.values()):
                statuses = []
                for c in containers:
                    code = codes[c["name"]]
                    state = self._terminated(running, c, code) if code is not None else {"running": {"startedAt": _now()}}
                    statuses.append({"name": c["name"], "ready": code is None, "started": code is None,
                                     "restartCount": 0, "image": c["image"], "imageID": "", "state": state,
                                     "lastState": {}})
                done = all(code is not None for code in codes.values())
                status = {"containerStatuses": statuses}
                if done:
                    status["phase"] = "Succeeded" if all(code == 0 for code in codes.values()) else "Failed"
                with _suppress():
                    await self.api.patch("v1/pods", ns, name, {"status": status})
                if done:
                    return
            await asyncio.sleep(0.5)

    async def on_stop(self, pod):
        running = self.pods.get(pod["metadata"]["uid"])
        if running is not None:
            await self._stop(running)

    async def _stop(self, running):
        """SIGTERM every container and all it started (kernels run in sessions of their own),
        wait the grace period, SIGKILL what is left and the sandbox; then the pod's folders go.
        The pod leaves ``self.pods`` only once nothing of it runs."""
        import psutil

        running.stopping = True
        family = []
        for proc in [*running.processes.values(), running.pause]:
            if proc is None:
                continue
            try:
                top = psutil.Process(proc.pid)
                family += [top, *top.children(recursive=True)]
            except psutil.NoSuchProcess:
                pass
        for member in family:
            if running.pause is None or member.pid != running.pause.pid:
                _signal_one(member, signal.SIGTERM)
        await asyncio.to_thread(psutil.wait_procs, [m for m in family if running.pause is None or m.pid != running.pause.pid],
                                timeout=running.grace)
        for member in family:
            _signal_one(member, signal.SIGKILL)
        await asyncio.to_thread(psutil.wait_procs, family, timeout=10)
        for proc in [*running.processes.values(), running.pause]:
            if proc is not None:
                await asyncio.to_thread(proc.wait)
        shutil.rmtree(running.folder, ignore_errors=True)
        self._pod_binds.pop(running.uid, None)
        self.pods.pop(running.uid, None)

    async def stop_all(self):
        for running in list(self.pods.values()):
            await self._stop(running)


def _expand(value, env):
    """``$(NAME)`` replaced by the container's variable ``NAME`` where it has one."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m[1], m[0]), value)


def _port(container, port):
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    return next(p["containerPort"] for p in container.get("ports") or [] if p.get("name") == port)


def _answers(address, port):
    try:
        with socket.create_connection((address, port), timeout=1):
            return True
    except OSError:
        return False


def _signal_one(process, sig):
    try:
        process.send_signal(sig)
    except Exception:  # gone already (psutil.NoSuchProcess)
        pass


class _suppress:
    def __enter__(self):
        return self

    def __exit__(self, typ, exc, tb):
        return typ is not None and issubclass(typ, Exception)
