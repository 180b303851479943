"""Per-user Dask limits: read from the catalog, carried into the session, checked before
anything starts (pure functions, no I/O).

A user's limits count everything they run at once, all clusters together: ``clusters``,
``workers``, worker ``cores``, worker ``memory`` and worker ``gpus``; an idle cluster is
shut down after ``idle_timeout`` seconds. They are resolved field by field, later wins:

1. :data:`DEFAULTS`;
2. the environment's ``dask:`` block in the catalog;
3. the chosen size's ``dask:`` block;
4. the member's cohort limit ``dask_workers`` (``OGGMHUB_MAX_DASK_WORKERS``), for workers;
5. on the local backend, the session's own allotment (``OGGMHUB_CPU_LIMIT``,
   ``OGGMHUB_MEM_LIMIT``) caps cores and memory: its workers run inside it.

Every limit remembers where it was set, so a refusal names it::

    DaskLimitError: 3 workers x 1 core = 3 cores is over your limit of 2 cores (cores, set
    by this session's CPU allotment, size 'medium'). Ask for fewer or smaller workers;
    nothing was started.

On Kubernetes the same numbers also become the user namespace's ResourceQuota
(:mod:`oggmhub.backends.kubernetes.namespace`), so they hold against direct API calls too.

Both spawners put :func:`session_env` in the session (through
:func:`oggmhub.backends.session_env.session_environment`): the limits
(``OGGMHUB_DASK_LIMITS``) and :func:`dashboard_env`, Dask's dashboard link through the
user's server.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, replace

from oggmhub.session import env as session_vars
from oggmhub.session.quantities import parse_memory

ENV_LIMITS = session_vars.DASK_LIMITS  # JSON of DaskLimits.to_json(), set by both spawners
ENV_COHORT_WORKERS = session_vars.MAX_DASK_WORKERS  # a cohort's dask_workers limit
FIELDS = ("clusters", "workers", "cores", "memory", "gpus", "idle_timeout")
DEFAULTS = {
    "clusters": 1,
    "workers": 2,
    "cores": 2.0,
    "memory": 8 * 1024**3,
    "gpus": 0,
    "idle_timeout": 1800,
}
_UNITS = {"clusters": "cluster", "workers": "worker", "cores": "core", "gpus": "GPU"}


class DaskLimitError(ValueError):
    """A cluster request over a limit; ``limit`` names the limit (e.g. ``"cores"``)."""

    def __init__(self, limit, message):
        super().__init__(message)
        self.limit = limit


@dataclass(frozen=True)
class DaskLimits:
    """What one user may run at once; ``sources`` says where each limit was set."""

    clusters: int = DEFAULTS["clusters"]
    workers: int = DEFAULTS["workers"]
    cores: float = DEFAULTS["cores"]
    memory: int = DEFAULTS["memory"]
    gpus: int = DEFAULTS["gpus"]
    idle_timeout: int = DEFAULTS["idle_timeout"]
    sources: dict = field(default_factory=lambda: {name: "oggmhub's default" for name in FIELDS})

    def override(self, values, source):
        """These limits with ``values`` (a catalog ``dask:`` mapping) set by ``source``
        (which may say ``{name}``, the limit's name)."""
        changes = {name: _parse(name, value) for name, value in (values or {}).items() if name in FIELDS}
        sources = {**self.sources, **{name: source.format(name=name) for name in changes}}
        return replace(self, **changes, sources=sources)

    def cap(self, name, value, source):
        """These limits with ``name`` lowered to ``value`` unless already lower (when equal,
        ``source`` is named: it is the tighter reason)."""
        if value > getattr(self, name):
            return self
        return replace(self, **{name: value}, sources={**self.sources, name: source})

    def to_json(self):
        return json.dumps({**{name: getattr(self, name) for name in FIELDS}, "sources": self.sources},
                          separators=(",", ":"))

    @classmethod
    def from_json(cls, text):
        data = json.loads(text)
        return cls(**{name: _parse(name, data[name]) for name in FIELDS if name in data},
                   sources={**cls().sources, **data.get("sources", {})})


@dataclass(frozen=True)
class Usage:
    """What a user's running clusters already hold."""

    clusters: int = 0
    workers: int = 0
    cores: float = 0.0
    memory: int = 0
    gpus: int = 0

    def __add__(self, other):
        return Usage(*(getattr(self, f) + getattr(other, f) for f in ("clusters", "workers", "cores", "memory", "gpus")))


@dataclass(frozen=True)
class ClusterRequest:
    """One new cluster: ``workers`` CPU workers plus ``gpu_workers`` with GPUs, all of a size."""

    workers: int
    worker_cores: float
    worker_memory: int
    gpu_workers: int = 0
    gpus_per_worker: int = 0

    @property
    def usage(self):
        total = self.workers + self.gpu_workers
        return Usage(clusters=1, workers=total, cores=total * self.worker_cores,
                     memory=total * self.worker_memory, gpus=self.gpu_workers * self.gpus_per_worker)


def _parse(name, value):
    if name == "memory":
        return parse_memory(value)
    if name == "cores":
        return float(value)
    return int(value)


def limits_for(environment, size):
    """The catalog's limits for a catalog ``Environment`` at a ``Size``."""
    where = f"environments.{environment.name}"
    limits = DaskLimits().override(environment.dask, f"the catalog's {where}.dask.{{name}}")
    return limits.override(size.dask, f"the catalog's {where}.sizes.{size.name}.dask.{{name}}")


def with_cohort(limits, environ):
    """``limits`` with a cohort's worker limit (``OGGMHUB_MAX_DASK_WORKERS``) applied."""
    value = environ.get(ENV_COHORT_WORKERS)
    if value in (None, ""):
        return limits
    return limits.override({"workers": int(value)}, "your cohort's dask_workers limit")


def within_allotment(limits, cpu_limit, mem_limit, size_name=None):
    """``limits`` capped by a session's own CPU and memory (the local backend's workers
    share them); ``None`` leaves that resource uncapped."""
    what = f", size {size_name!r}" if size_name else ""
    if cpu_limit is not None:
        limits = limits.cap("cores", float(cpu_limit), f"this session's CPU allotment{what}")
    if mem_limit is not None:
        limits = limits.cap("memory", int(mem_limit), f"this session's memory allotment{what}")
    return limits


def session_env(environment, size, backend="local"):
    """What a session needs for Dask: its limits and :func:`dashboard_env` (both backends)."""
    return {ENV_LIMITS: limits_for(environment, size).to_json(), **dashboard_env(backend)}


SECURITY_LOADER = "oggmhub.session.dask_local.load_security"


def dashboard_env(backend="local"):
    """Session variables pointing Dask's dashboard link (and dask-labextension) through
    the user's server, and labextension's "new cluster" button at :func:`new_cluster`;
    locally also the security loader that gives the session's own clients the TLS
    credentials of the clusters it started (:func:`oggmhub.session.dask_local.load_security`).

    Locally the scheduler is on the server's machine (``proxy/PORT``); on Kubernetes it is
    the cluster's scheduler service (``proxy/HOST:PORT``: allow those hosts with
    ``c.ServerProxy.host_allowlist = oggmhub.session.dask.proxy_host_allowed``).
    """
    target = "{port}" if backend == "local" else "{host}:{port}"
    env = {
        "DASK_DISTRIBUTED__DASHBOARD__LINK": "{JUPYTERHUB_SERVICE_PREFIX}proxy/" + target + "/status",
        "DASK_LABEXTENSION__FACTORY__MODULE": "oggmhub.session.dask",
        "DASK_LABEXTENSION__FACTORY__CLASS": "new_cluster",
        "DASK_LABEXTENSION__FACTORY__ARGS": "[]",
        "DASK_LABEXTENSION__FACTORY__KWARGS": "{}",
    }
    if backend == "local":  # local clusters are TLS-only: the session's clients find their credentials
        env["DASK_DISTRIBUTED__CLIENT__SECURITY_LOADER"] = SECURITY_LOADER
    return env



def from_env(environ=None):
    """The session's limits (defaults outside a hub session), the cohort's applied."""
    environ = os.environ if environ is None else environ
    text = environ.get(ENV_LIMITS)
    limits = DaskLimits.from_json(text) if text else DaskLimits()
    return with_cohort(limits, environ)


def describe(name, value):
    """``value`` of limit ``name`` in words: ``2 cores``, ``8 GiB``, ``1 cluster``."""
    if name == "memory":
        return format_memory(value)
    if name == "idle_timeout":
        return f"{value} s"
    number = f"{value:g}" if isinstance(value, float) else str(value)
    unit = _UNITS[name]
    return f"{number} {unit}{'' if value == 1 else 's'}"


def format_memory(nbytes):
    """Bytes as the largest binary unit that keeps two decimals: ``1.5 GiB``."""
    for unit, factor in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if nbytes >= factor:
            return f"{nbytes / factor:.3g} {unit}"
    return f"{nbytes} bytes"


def check(request, limits, usage=Usage()):
    """Raise :class:`DaskLimitError` if ``request`` on top of ``usage`` breaks a limit."""
    if request.workers < 0 or request.gpu_workers < 0 or request.workers + request.gpu_workers < 1:
        raise DaskLimitError("workers", "ask for at least one worker")
    if request.worker_cores <= 0 or request.worker_memory <= 0:
        raise DaskLimitError("cores" if request.worker_cores <= 0 else "memory",
                             "worker cores and memory must be positive")
    if limits.clusters == 0:
        raise DaskLimitError("clusters", f"Dask clusters are off for this session (clusters is 0, "
                                         f"set by {limits.sources['clusters']}); nothing was started.")
    asked = request.usage
    total = usage + asked
    n = request.workers + request.gpu_workers
    what = {
        "clusters": "one more cluster",
        "workers": describe("workers", n),
        "cores": f"{describe('workers', n)} x {describe('cores', request.worker_cores)} = {describe('cores', asked.cores)}",
        "memory": f"{describe('workers', n)} x {format_memory(request.worker_memory)} = {format_memory(asked.memory)}",
        "gpus": f"{describe('workers', request.gpu_workers)} x {describe('gpus', request.gpus_per_worker)} = {describe('gpus', asked.gpus)}",
    }
    hints = {
        "clusters": "Close one first (cluster.close())",
        "workers": "Ask for fewer workers",
        "cores": "Ask for fewer or smaller workers",
        "memory": "Ask for fewer workers or less memory each",
        "gpus": "Ask for fewer GPU workers",
    }
    for name in ("clusters", "workers", "cores", "memory", "gpus"):
        have, limit = getattr(total, name), getattr(limits, name)
        if have > limit + 1e-9:
            in_use = getattr(usage, name)
            held = f", as your other clusters already hold {describe(name, in_use)}" if in_use else ""
            raise DaskLimitError(
                name,
                f"{what[name]} is over your limit of {describe(name, limit)}{held} "
                f"({name}, set by {limits.sources[name]}). {hints[name]}; nothing was started.",
            )


def max_workers(limits, usage, worker_cores, worker_memory):
    """The most workers of this size that still fit (0 if none)."""
    free = [limits.workers - usage.workers]
    free.append(math.floor((limits.cores - usage.cores) / worker_cores + 1e-9))
    free.append((limits.memory - usage.memory) // worker_memory)
    return max(0, min(free))
