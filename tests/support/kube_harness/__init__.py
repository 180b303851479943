"""A real (emulated) Kubernetes API for testing KubeSpawner, plus a test kubelet.

This package is a plain library (no pytest import) so that both the pytest
fixtures and standalone scripts (which do ``sys.path.insert(0, 'tests')``) can
use it.

Modules
-------
``api``        ``KubeAPI``: an async context manager running kmock 0.8's
               ``KubernetesEmulator`` over HTTP on ``127.0.0.1:<free port>``;
               state inspection, the request log, fault injection
               (``inject``, ``inject_delay``).
``emulator``   ``_Emulator``: the kmock subclass that fills the gaps kmock 0.8
               has for kubernetes_asyncio / kubespawner (server-set metadata,
               resourceVersions, PUT, namespaces, real 404/409 errors, O(1)
               request dispatch).
``watch``      list/watch serving: resourceVersion stamping, event history,
               watch replay (``resourceVersion``) and ``timeoutSeconds``,
               in-process subscriptions.
``selectors``  ``labelSelector`` / ``fieldSelector`` parsing.
``faults``     ``Fault``, ``RequestRecord`` and method/verb spec parsing.
``resources``  the emulated resource table (``RESOURCES``) and shared helpers.
``kubelet``    ``TestKubelet``: flips pending pods to ``Running``, emits v1
               Events, runs optional ``on_start``/``on_stop`` hooks,
               ``terminate()`` marks a pod's containers as exited.
``pods``       ``PodRunner``: kubelet hooks that run a pod's containers as local
               processes (images as the environments built from images/, volumes,
               accounts, a loopback address per pod, probes, exit codes).
``dask_operator`` ``DaskOperator``: the dask-kubernetes operator's behaviour
               (DaskCluster -> scheduler pod, Service, default DaskWorkerGroup;
               groups -> worker pods; deletion cascades).
``service_dns`` ``ServiceHosts``: Services by name for pods, as an /etc/hosts file.
``spawners``   kubespawner glue: ``configure_kubespawner``,
               ``reset_kubespawner``, ``make_spawner``, ``FakeUser``,
               ``FakeOrmSpawner``, ``wait_until``.
``oggmhub``    oggmhub on it: ``oggmhub_spawner``, ``declare``,
               ``install_pod_policy``, ``reset_kr8s``, ``reset_oggmhub``.

Usage
-----
KubeSpawner keeps process-wide state (a cached kubeconfig, shared clients per
event loop, class-level reflectors), so before constructing spawners against a
new ``KubeAPI`` (new port), callers must::

    api = await KubeAPI().start()          # or: async with KubeAPI() as api
    await configure_kubespawner(api, tmp_path / "kubeconfig")
    # ... create KubeSpawner instances, start/poll/stop ...
    await reset_kubespawner()              # stop reflectors, drop clients
    await api.close()

Not emulated: admission (quotas, RBAC enforcement, namespace existence,
schema validation), strategic-merge list semantics (kmock merges dicts and
replaces lists), graceful deletion (pods without finalizers vanish at once),
``limit``/``continue`` pagination, deletecollection.
"""

from .api import KubeAPI
from .faults import Fault, RequestRecord
from .kubelet import TestKubelet
from .resources import RESOURCES
from .spawners import (
    FakeOrmSpawner,
    FakeUser,
    configure_kubespawner,
    hub_start,
    make_spawner,
    reset_kubespawner,
    reset_kubespawner_clients,
    wait_until,
)

__all__ = [
    "KubeAPI",
    "TestKubelet",
    "Fault",
    "RequestRecord",
    "FakeUser",
    "FakeOrmSpawner",
    "RESOURCES",
    "configure_kubespawner",
    "reset_kubespawner",
    "reset_kubespawner_clients",
    "hub_start",
    "make_spawner",
    "wait_until",
]
