"""The worker template: what every Dask pod of a session shares, rendered by the
Kubernetes spawner from the user's choice when it starts their pod (hub side).

The spawner hands it to the session as ``OGGMHUB_DASK_TEMPLATE``; the session renders each
cluster from it (:mod:`oggmhub.session.dask_kubernetes`): the notebook's image, environment,
uid and placement, and the session's datasets mounted read-only on every worker by the same
sidecar as in the notebook (:func:`oggmhub.session.mount_sidecar.pod_settings`).
"""

from __future__ import annotations

from oggmhub.session.dask_kubernetes import ENV_TEMPLATE, WORKER_SIDECAR_RESOURCES
from oggmhub.session.mount_sidecar import pod_settings


def worker_template(*, image, env, size, datasets=(), mounter_image=None, mounter_env=None, uid=1000, gid=None,
                    fs_gid=None, container_security_context=None, node_selector=None,
                    tolerations=(), gpu=None, gpu_image=None):
    """What every Dask pod of a session shares (a JSON-able dict).

    ``env`` is the notebook's own (expanded) environment; ``size`` the catalog ``Size``
    (default worker size); ``datasets`` the session's catalog ``Dataset`` objects; ``gpu``
    the catalog ``GpuVariant`` GPU workers use (None: no GPU workers), on ``gpu_image``
    (default: ``image``); ``mounter_env`` the mount sidecar's own variables (its options).
    """
    security = dict(container_security_context or {})
    security["runAsUser"] = uid
    if gid is not None:
        security["runAsGroup"] = gid
    data = pod_settings(datasets, mounter_image, env=mounter_env, resources=WORKER_SIDECAR_RESOURCES) if datasets else {}
    template = {
        "image": image,
        "env": {**{k: v for k, v in env.items() if k != ENV_TEMPLATE}, **data.get("environment", {})},
        "worker_cores": size.cpu_limit,
        "worker_memory": size.mem_limit,
        "container_security_context": security,
        "pod_security_context": {"fsGroup": fs_gid} if fs_gid is not None else {},
        "node_selector": dict(node_selector or {}),
        "tolerations": list(tolerations),
        "init_containers": data.get("init_containers", []),
        "volumes": data.get("volumes", []),
        "volume_mounts": data.get("volume_mounts", []),
        "gpu": None,
    }
    if gpu is not None:
        template["gpu"] = {
            "variant": gpu.name,
            "resource": gpu.resource,
            "count": gpu.count,
            "image": gpu_image or image,
            "node_selector": {**template["node_selector"], **gpu.node_selector},
            "tolerations": [*template["tolerations"], *(t for t in gpu.tolerations if t not in template["tolerations"])],
        }
    return template
