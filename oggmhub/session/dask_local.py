"""The local backend of :mod:`oggmhub.session.dask`: ``distributed.LocalCluster`` processes
inside the session's own allotment, recorded in the session's registry.

Every cluster is private to the account that started it:

- its scheduler, nannies and workers talk TLS only, with a key and certificate made for
  that cluster alone (``distributed.security.Security.temporary()``), kept in the
  process that started it and in the session's registry folder (mode 0600 in a 0700
  folder of the user's), where :func:`load_security` finds them for the session's own
  ``Client("tls://...")``: another local user who finds the scheduler's port
  (``/proc/net/tcp`` shows every listener) cannot connect a ``Client``, nor a worker,
  without them;
- its dashboard (plain HTTP, as jupyter-server-proxy needs) answers only under a secret
  path prefix known to the notebook process alone; anything else on its port, Dask's own
  ``/sitemap.json`` included, is 404. The session's dashboard link (and
  dask-labextension's) points at ``<server>/proxy/<port>/<prefix>/status``, so the
  dashboard is reached through the owner's own server, which only they can log in to.

The registry (``OGGMHUB_DASK_REGISTRY``) only counts clusters for the limits: the hub
never trusts it to name processes (it is the user's to write), it ends a stopped
server's processes by its cgroup.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import stat
import tempfile
import time
import uuid

import psutil
from distributed import LocalCluster
from distributed.core import Status
from distributed.diagnostics.plugin import SchedulerPlugin
from distributed.security import Security

from oggmhub.session import dask_limits
from oggmhub.session import env as session_vars
from oggmhub.session.dask_limits import ClusterRequest, DaskLimitError, Usage
from oggmhub.session.quantities import parse_memory

ENV_REGISTRY = session_vars.DASK_REGISTRY
DEFAULT_MAX_WORKERS = 4  # the default cluster: as many workers as fit, at most this many


class DaskStartError(RuntimeError):
    """A cluster that could not be started; the message says why. Nothing was left behind."""


def _memory(value):
    return None if value is None else parse_memory(value)


class Registry:
    """The session's running local clusters: one JSON file each in a folder (the
    session's, mode 0700), counted for the limits; an entry whose owner process has gone
    no longer counts. Beside each, the cluster's TLS credentials (``<name>.tls``, 0600),
    which :func:`load_security` gives the session's other clients (a notebook connecting
    to a cluster dask-labextension started) and nobody else.
    """

    def __init__(self, path):
        self.path = path

    @classmethod
    def for_session(cls, environ):
        path = environ.get(ENV_REGISTRY) or os.path.join(tempfile.gettempdir(), f"oggmhub-dask-{os.getuid()}")
        return cls(path)

    def _file(self, name):
        return os.path.join(self.path, f"{name}.json")

    def record(self, name, usage, pids):
        """Record cluster ``name`` (its ``Usage`` and worker ``pids``) for this process."""
        os.makedirs(self.path, mode=0o700, exist_ok=True)
        entry = {"name": name, "owner": _process_id(os.getpid()), "processes": [_process_id(p) for p in pids],
                 "usage": {f: getattr(usage, f) for f in ("clusters", "workers", "cores", "memory", "gpus")}}
        tmp = self._file(name) + ".tmp"
        with open(tmp, "w") as f:
            json.dump(entry, f)
        os.replace(tmp, self._file(name))

    def remove(self, name):
        for path in (self._file(name), self._credentials_file(name)):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)

    def _credentials_file(self, name):
        return os.path.join(self.path, f"{name}.tls")

    def _private(self):
        """Whether the registry folder is a folder of this uid's that only it can use."""
        try:
            st = os.lstat(self.path)
        except OSError:
            return False
        return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o077

    def record_credentials(self, name, address, security):
        """Keep cluster ``name``'s credentials (0600) for :func:`load_security`; not where
        the registry folder is not this uid's alone (e.g. one someone made in /tmp)."""
        os.makedirs(self.path, mode=0o700, exist_ok=True)
        if not self._private():
            return False
        entry = {"address": address, "ca": security.tls_ca_file, "cert": security.tls_client_cert,
                 "key": security.tls_client_key}
        tmp = f"{self._credentials_file(name)}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(entry, f)
        os.replace(tmp, self._credentials_file(name))
        return True

    def credentials(self, address):
        """The recorded credentials of the live cluster at ``address``, or None."""
        if not self._private():
            return None
        for entry in self.entries():
            try:
                with open(self._credentials_file(entry["name"])) as f:
                    found = json.load(f)
            except (OSError, ValueError):
                continue
            if found.get("address") == address:
                return found
        return None

    def entries(self):
        """Live entries (dead ones are removed)."""
        out = []
        try:
            names = sorted(n for n in os.listdir(self.path) if n.endswith(".json"))
        except FileNotFoundError:
            return out
        for file_name in names:
            try:
                with open(os.path.join(self.path, file_name)) as f:
                    entry = json.load(f)
            except (OSError, ValueError):
                continue
            if _alive(entry.get("owner")):
                out.append(entry)
            else:
                self.remove(file_name[:-5])
        return out

    def usage(self, exclude=None):
        total = Usage()
        for entry in self.entries():
            if entry["name"] != exclude:
                total = total + Usage(**entry["usage"])
        return total


def load_security(info):
    """``distributed.client.security-loader`` for a session (the local backend's session
    variables name it): the credentials of a cluster this session started, for a
    ``Client("tls://...")`` given only its address; None for any other address."""
    address = (info or {}).get("address") or ""
    if not isinstance(address, str) or not address.startswith("tls://"):
        return None
    found = Registry.for_session(os.environ).credentials(address)
    if found is None:
        return None
    return Security(require_encryption=True, tls_ca_file=found["ca"], tls_client_cert=found["cert"],
                    tls_client_key=found["key"])


def _process_id(pid):
    try:
        return [pid, psutil.Process(pid).create_time()]
    except psutil.Error:
        return [pid, None]


def _alive(process_id):
    """Whether ``[pid, create_time]`` is still that process (not a reused pid)."""
    if not process_id:
        return False
    pid, created = process_id
    try:
        return created is None or psutil.Process(pid).create_time() == created
    except psutil.Error:
        return False


class LocalBackend:
    """``distributed.LocalCluster`` processes inside the session's allotment."""

    name = "local"

    def __init__(self, environ):
        self.environ = environ
        self.registry = Registry.for_session(environ)

    def limits(self):
        env = self.environ
        if dask_limits.ENV_LIMITS in env:
            limits = dask_limits.from_env(env)
        else:  # outside a hub session: this machine is the allotment
            cores = os.cpu_count() or 1
            limits = dask_limits.DaskLimits(clusters=10, workers=cores, cores=float(cores),
                                            memory=psutil.virtual_memory().total, idle_timeout=0,
                                            sources={f: "this machine (outside a hub session)" for f in dask_limits.FIELDS})
        cpu = env.get(session_vars.CPU_LIMIT)
        mem = env.get(session_vars.MEM_LIMIT)
        limits = dask_limits.within_allotment(limits, float(cpu) if cpu else None, int(mem) if mem else None,
                                              env.get(session_vars.SIZE))
        return limits.cap("gpus", 0, "the local backend, which runs no GPU workers")

    def usage(self):
        return self.registry.usage()

    def request(self, workers, worker_cores, worker_memory, gpu_workers, limits, usage):
        cores = 1 if worker_cores is None else worker_cores
        if cores != int(cores) or cores < 1:
            raise DaskLimitError("cores", f"local workers have whole cores (threads), not {cores}")
        cores = int(cores)
        memory = _memory(worker_memory)
        if workers is None:
            fit = dask_limits.max_workers(limits, usage, cores, memory or 1)
            workers = max(1, min(DEFAULT_MAX_WORKERS, fit))
        if memory is None:  # an even share of what is left
            free = limits.memory - usage.memory
            memory = max(1, free // max(1, workers))
        return ClusterRequest(workers=int(workers), worker_cores=cores, worker_memory=memory,
                              gpu_workers=int(gpu_workers or 0), gpus_per_worker=1)

    def start(self, request, limits, idle_timeout, timeout):
        name = f"oggmhub-{uuid.uuid4().hex[:8]}"
        prefix = dashboard_prefix()
        try:
            cluster = SessionLocalCluster(
                n_workers=request.workers, threads_per_worker=int(request.worker_cores),
                memory_limit=request.worker_memory, processes=True, host="127.0.0.1",
                protocol="tls://", security=Security.temporary(),
                dashboard_address="127.0.0.1:0", scheduler_kwargs={"http_prefix": prefix}, name=name,
            )
        except Exception as e:
            raise DaskStartError(f"the local Dask cluster did not start: {e}") from e
        cluster._oggmhub_prefix = prefix
        only_under_prefix(cluster.scheduler, prefix)
        self.registry.record_credentials(name, cluster.scheduler_address, cluster.security)
        if idle_timeout:
            # counted from now, once the workers are up: a scheduler told at creation may
            # close while its workers are still starting, and the cluster then never starts
            cluster.scheduler.idle_timeout = float(idle_timeout)
            cluster.scheduler.idle_since = time.time()
        cluster._oggmhub_track(self.registry, limits, request)
        return cluster


class _Forget(SchedulerPlugin):
    """Drops a cluster's registry entry when its scheduler closes (e.g. when idle)."""

    name = "oggmhub-registry"

    def __init__(self, registry, cluster_name):
        self.registry, self.cluster_name = registry, cluster_name

    async def close(self):
        self.registry.remove(self.cluster_name)


def dashboard_prefix():
    """A fresh secret path prefix for one cluster's dashboard (``/dask-<32 hex>``)."""
    return f"/dask-{secrets.token_hex(16)}"


def only_under_prefix(scheduler, prefix):
    """Make ``scheduler``'s HTTP server answer 404 to every path outside ``prefix``
    (Dask serves ``/sitemap.json``, which lists the prefixed routes, at the top)."""
    from tornado import web

    app = getattr(scheduler, "http_application", None)
    if app is None:
        return
    inner = app.find_handler
    top = prefix.rstrip("/")

    def find_handler(request, **kwargs):
        path = request.path or ""
        if path == top or path.startswith(top + "/"):
            return inner(request, **kwargs)
        return app.get_handler_delegate(request, web.ErrorHandler, {"status_code": 404})

    app.find_handler = find_handler


class SessionLocalCluster(LocalCluster):
    """A LocalCluster recorded in the session's registry and held to its limits; its
    dashboard link carries the cluster's secret prefix."""

    _oggmhub = None
    _oggmhub_prefix = None

    @property
    def dashboard_link(self):
        link = super().dashboard_link
        if self._oggmhub_prefix and link.endswith("/status"):
            link = link[:-len("status")] + self._oggmhub_prefix.strip("/") + "/status"
        return link

    def _oggmhub_track(self, registry, limits, request):
        self._oggmhub = (registry, limits, request)
        self.scheduler.add_plugin(_Forget(registry, self.name))
        self._oggmhub_record(request.workers)

    def _oggmhub_record(self, workers):
        registry, _, request = self._oggmhub
        pids = [w.process.pid for w in self.workers.values() if getattr(w, "process", None) and w.process.pid]
        usage = ClusterRequest(workers, request.worker_cores, request.worker_memory).usage
        registry.record(self.name, usage, pids)

    def _oggmhub_check(self, n):
        if self._oggmhub is None or not n:
            return
        registry, limits, request = self._oggmhub
        asked = ClusterRequest(n, request.worker_cores, request.worker_memory)
        dask_limits.check(asked, limits, registry.usage(exclude=self.name))

    def scale(self, n=0, memory=None, cores=None):
        per = self._oggmhub[2] if self._oggmhub else None
        if per is not None and (memory is not None or cores is not None):
            n = max(n, math.ceil(parse_memory(memory) / per.worker_memory) if memory else 0,
                    math.ceil(cores / per.worker_cores) if cores else 0)
            memory = cores = None
        self._oggmhub_check(n)
        result = super().scale(n, memory=memory, cores=cores)
        if self._oggmhub is not None:
            self._oggmhub_record(n)
        return result

    def adapt(self, *args, maximum=math.inf, **kwargs):
        if self._oggmhub is not None:
            registry, limits, request = self._oggmhub
            if maximum == math.inf:
                maximum = dask_limits.max_workers(limits, registry.usage(exclude=self.name),
                                                  request.worker_cores, request.worker_memory)
            else:
                self._oggmhub_check(int(maximum))
            self._oggmhub_record(int(maximum))  # adaptive may grow to it: count it
        return super().adapt(*args, maximum=maximum, **kwargs)

    async def _close(self):
        if self.scheduler is not None and self.scheduler.status in (Status.closing, Status.closed):
            self.shutdown_scheduler = False  # it closed itself (idle): nobody left to tell
        try:
            return await super()._close()
        finally:
            if self._oggmhub is not None:
                self._oggmhub[0].remove(self.name)
