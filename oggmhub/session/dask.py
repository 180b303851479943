"""``oggmhub.session.dask.cluster()``: one call in a notebook for a Dask cluster that fits where
the session runs::

    import oggmhub.session.dask
    cluster, client = oggmhub.session.dask.cluster(workers=2)

The backend follows the session (``OGGMHUB_DASK_BACKEND``, set by the spawner):

* ``local`` (the local hub, or any machine outside a hub): a ``distributed.LocalCluster``
  of worker processes inside the session's own CPU and memory allotment
  (:mod:`oggmhub.session.dask_local`), private to its owner: TLS with the cluster's own
  credentials, its dashboard under a secret prefix reached through the owner's server.
  Each cluster is recorded in the session's registry (``OGGMHUB_DASK_REGISTRY``), which
  counts it for the limits;
* ``kubernetes``: dask-kubernetes' operator ``KubeCluster`` in the user's namespace,
  rendered from the worker template the spawner put in the session
  (:mod:`oggmhub.session.dask_kubernetes`): workers on the notebook's own image, sized from the
  session, the session's datasets mounted, owned by the user's pod.

Both check the per-user limits first (:mod:`oggmhub.session.dask_limits`), counting the user's
other clusters: a request over a limit raises :class:`DaskLimitError` naming the limit,
and nothing is started. ``cluster.scale()`` and ``cluster.adapt()`` keep to the same
limits. An idle cluster shuts itself down after the catalog's ``idle_timeout``.

The dashboard link goes through the user's server (jupyter-server-proxy): the spawners
set ``DASK_DISTRIBUTED__DASHBOARD__LINK`` (:func:`oggmhub.session.dask_limits.dashboard_env`),
which dask-labextension shows too; its "new cluster" button calls :func:`new_cluster`.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid

import dask
from distributed import Client

from oggmhub.session import dask_limits
from oggmhub.session import env as session_vars
from oggmhub.session.dask_limits import ClusterRequest, DaskLimitError, Usage
from oggmhub.session.dask_local import (  # noqa: F401  (the local backend, public here as before)
    DEFAULT_MAX_WORKERS, DaskStartError, LocalBackend, Registry, SessionLocalCluster, _memory)

__all__ = ["cluster", "new_cluster", "limits", "DaskLimitError", "DaskStartError", "backend_name"]

ENV_BACKEND = session_vars.DASK_BACKEND
ENV_REGISTRY = session_vars.DASK_REGISTRY
BACKENDS = ("local", "kubernetes")


def proxy_host_allowed(handler, host):
    """jupyter-server-proxy's ``host_allowlist`` for Kubernetes sessions: this machine and
    the Dask scheduler services of the session's own namespace."""
    namespace = os.environ.get(session_vars.NAMESPACE, "")
    if host in ("localhost", "127.0.0.1"):
        return True
    pattern = rf"^[a-z0-9]([-a-z0-9]*[a-z0-9])?-scheduler\.{re.escape(namespace)}(\.svc(\.cluster\.local)?)?$"
    return bool(namespace) and re.match(pattern, host) is not None


def backend_name(environ=None):
    """``local`` or ``kubernetes``: what ``OGGMHUB_DASK_BACKEND`` says, else ``local``."""
    environ = os.environ if environ is None else environ
    name = environ.get(ENV_BACKEND) or "local"
    if name not in BACKENDS:
        raise DaskStartError(f"{ENV_BACKEND}={name!r} is not a Dask backend; use one of: {', '.join(BACKENDS)}")
    return name


def _backend(backend, environ):
    name = backend or backend_name(environ)
    if name not in BACKENDS:
        raise DaskStartError(f"{name!r} is not a Dask backend; use one of: {', '.join(BACKENDS)}")
    return (LocalBackend if name == "local" else KubernetesBackend)(environ)


def new_cluster(workers=None, *, worker_cores=None, worker_memory=None, gpu_workers=0,
                idle_timeout=None, timeout=300, backend=None, environ=None):
    """Start a Dask cluster for this session, within its limits; the cluster object.

    ``workers``: CPU workers (default: as many as the limits allow, at most
    :data:`DEFAULT_MAX_WORKERS`); ``worker_cores``/``worker_memory`` (e.g. ``"2Gi"``):
    each worker's size (default: one core and an even share of the memory locally, the
    session's size on Kubernetes); ``gpu_workers``: workers with the session's GPU
    variant (Kubernetes); ``idle_timeout``: seconds before an idle cluster shuts down (at
    most the catalog's); ``timeout``: seconds to wait for Kubernetes to start it.
    Raises :class:`DaskLimitError` (over a limit) or :class:`DaskStartError`.
    """
    environ = dict(os.environ if environ is None else environ)
    impl = _backend(backend, environ)
    _check_dashboard_link()
    limits = impl.limits()
    usage = impl.usage()
    request = impl.request(workers, worker_cores, worker_memory, gpu_workers, limits, usage)
    dask_limits.check(request, limits, usage)
    idle = _idle_timeout(idle_timeout, limits)
    return impl.start(request, limits, idle, timeout)


def limits(backend=None, environ=None):
    """This session's Dask limits (a ``DaskLimits``; ``sources`` says where each was set)."""
    return _backend(backend, dict(os.environ if environ is None else environ)).limits()


def cluster(workers=None, **kwargs):
    """:func:`new_cluster` and a client connected to it: ``(cluster, client)``."""
    started = new_cluster(workers, **kwargs)
    try:
        return started, Client(started)
    except BaseException:
        started.close()
        raise


def _check_dashboard_link():
    """Fall back to Dask's own dashboard link where the session's template names a variable
    this process lacks (outside a hub server, ``JUPYTERHUB_SERVICE_PREFIX``)."""
    template = dask.config.get("distributed.dashboard.link")
    try:
        template.format(**{**os.environ, "scheme": "http", "host": "localhost", "port": 8787})
    except (KeyError, IndexError, ValueError):
        dask.config.set({"distributed.dashboard.link": "{scheme}://{host}:{port}/status"})


def _idle_timeout(asked, limits):
    limit = limits.idle_timeout
    if asked is None:
        return limit
    asked = int(asked)
    if limit and (asked == 0 or asked > limit):
        raise DaskLimitError(
            "idle_timeout",
            f"an idle timeout of {'never' if asked == 0 else f'{asked} s'} is over your limit of {limit} s "
            f"(idle_timeout, set by {limits.sources['idle_timeout']}); nothing was started.")
    return asked


# --- Kubernetes ---------------------------------------------------------------------------


class KubernetesBackend:
    """dask-kubernetes' operator ``KubeCluster`` from the spawner's worker template."""

    name = "kubernetes"

    def __init__(self, environ):
        from oggmhub.session import dask_kubernetes as dask_k8s

        self.k8s = dask_k8s
        missing = [v for v in (dask_k8s.ENV_TEMPLATE, dask_k8s.ENV_NAMESPACE, dask_k8s.ENV_POD_NAME,
                               dask_k8s.ENV_POD_UID) if not environ.get(v)]
        if missing:
            raise DaskStartError(
                f"this session cannot start Dask clusters on Kubernetes: the spawner did not set "
                f"{', '.join(missing)} (ask the hub's admins to turn on OGGMHubSpawner.dask_kubernetes)")
        self.environ = environ
        self.template = json.loads(environ[dask_k8s.ENV_TEMPLATE])
        self.namespace = environ[dask_k8s.ENV_NAMESPACE]
        self.owner = dask_k8s.owner_reference(environ[dask_k8s.ENV_POD_NAME], environ[dask_k8s.ENV_POD_UID])

    def limits(self):
        limits = dask_limits.from_env(self.environ)
        if self.template.get("gpu") is None:
            limits = limits.cap("gpus", 0, "this environment, which has no GPU variant")
        return limits

    def usage(self):
        import kr8s
        from dask_kubernetes.operator._objects import DaskCluster, DaskWorkerGroup

        try:
            clusters = [o.raw for o in kr8s.get(DaskCluster, namespace=self.namespace)]
            groups = [o.raw for o in kr8s.get(DaskWorkerGroup, namespace=self.namespace)]
        except Exception as e:
            if isinstance(e, kr8s.NotFoundError) or getattr(getattr(e, "response", None), "status_code", None) == 404:
                raise _no_operator() from None
            raise
        return self.k8s.usage(clusters, groups)

    def request(self, workers, worker_cores, worker_memory, gpu_workers, limits, usage):
        cores = float(worker_cores or self.template["worker_cores"])
        memory = _memory(worker_memory) or int(self.template["worker_memory"])
        gpu = self.template.get("gpu") or {}
        if workers is None:
            fit = dask_limits.max_workers(limits, usage, cores, memory)
            workers = max(0 if gpu_workers else 1, min(DEFAULT_MAX_WORKERS, fit - int(gpu_workers or 0)))
        return ClusterRequest(workers=int(workers), worker_cores=cores, worker_memory=memory,
                              gpu_workers=int(gpu_workers or 0), gpus_per_worker=int(gpu.get("count", 1)))

    def start(self, request, limits, idle_timeout, timeout):
        name = f"oggmhub-{uuid.uuid4().hex[:8]}"
        spec = self.k8s.cluster_spec(name, self.template, workers=request.workers, owner=self.owner,
                                     worker_cores=request.worker_cores, worker_memory=request.worker_memory,
                                     idle_timeout=idle_timeout)
        group = None
        if request.gpu_workers:
            group = self.k8s.gpu_worker_group(name, self.template, workers=request.gpu_workers, owner=self.owner,
                                              worker_cores=request.worker_cores, worker_memory=request.worker_memory)
        started = time.monotonic()
        try:
            cluster = _kube_cluster_class()(custom_cluster_spec=spec, namespace=self.namespace,
                                            resource_timeout=timeout, shutdown_on_close=True, quiet=True)
        except Exception as e:
            if "Custom Resource Definitions" in str(e):  # dask-kubernetes: the API has no DaskCluster
                raise _no_operator() from None
            raise DaskStartError(
                f"Kubernetes did not start Dask cluster {name} in namespace {self.namespace} "
                f"(after {time.monotonic() - started:.0f} s): {e}. Nothing was left behind.") from e
        cluster._oggmhub = (self, limits, request)
        if group is not None:
            try:
                cluster.sync(_create, group, self.namespace)
            except Exception as e:
                cluster.close()
                raise DaskStartError(f"the GPU workers of Dask cluster {name} could not be created: {e}. "
                                     "Nothing was left behind.") from e
        return cluster


def _no_operator():
    return DaskStartError(
        "Dask clusters cannot start on this hub because its Kubernetes cluster has no Dask operator "
        "(the API has no DaskCluster resource): ask the hub's admins to install the dask-kubernetes operator; "
        "nothing was created.")


async def _create(manifest, namespace):
    from dask_kubernetes.operator._objects import DaskWorkerGroup

    group = await DaskWorkerGroup(manifest, namespace=namespace)
    await group.create()


def _kube_cluster_class():
    from dask_kubernetes.operator import KubeCluster

    class SessionKubeCluster(KubeCluster):
        """A KubeCluster held to the session's limits when scaled."""

        _oggmhub = None

        def scale(self, n, worker_group="default"):
            if self._oggmhub is not None and n:
                backend, limits, request = self._oggmhub
                others = backend.usage()
                mine = self.k8s_usage(backend, worker_group)
                gpu = worker_group == backend.k8s.GPU_GROUP
                asked = ClusterRequest(0 if gpu else n, request.worker_cores, request.worker_memory,
                                       gpu_workers=n if gpu else 0, gpus_per_worker=request.gpus_per_worker)
                # the group being scaled is replaced by n workers; the cluster itself stays one
                base = Usage(others.clusters - 1, others.workers - mine.workers, others.cores - mine.cores,
                             others.memory - mine.memory, others.gpus - mine.gpus)
                dask_limits.check(asked, limits, base)
            return super().scale(n, worker_group=worker_group)

        def k8s_usage(self, backend, worker_group):
            import kr8s
            from dask_kubernetes.operator._objects import DaskWorkerGroup

            try:
                [group] = kr8s.get(DaskWorkerGroup, f"{self.name}-{worker_group}", namespace=self.namespace)
            except (ValueError, kr8s.NotFoundError):
                return Usage()
            return backend.k8s._group_usage(group.raw["spec"]["worker"])

    return SessionKubeCluster
