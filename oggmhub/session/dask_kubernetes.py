"""Pure functions: a session's Dask clusters on Kubernetes, as dask-kubernetes operator
resources (``DaskCluster``, ``DaskWorkerGroup``).

The spawner renders a *worker template* from the user's choice when it starts their pod
(:func:`oggmhub.backends.kubernetes.dask_template.worker_template`, hub side) and hands it
to the session as ``OGGMHUB_DASK_TEMPLATE``, with
the pod's name, uid and namespace (:func:`downward_env`). The notebook call
(:func:`oggmhub.session.dask.cluster`) renders each cluster from it (:func:`cluster_spec`,
:func:`gpu_worker_group`), so that:

* scheduler and workers run the notebook's own image (same Python, same packages), with
  its environment variables, its uid and every privilege dropped, and no API token;
* the session's datasets are mounted read-only on every worker by the same sidecar as in
  the notebook (:func:`oggmhub.session.mount_sidecar.pod_settings`);
* workers are sized from the session's size unless the call asks otherwise (within the
  limits of :mod:`oggmhub.session.dask_limits`); GPU workers are a separate worker group on the
  GPU variant's nodes, image and ``nvidia.com/gpu`` limits;
* every object is owned by the user's pod (``ownerReferences``): Kubernetes deletes it
  with the pod, and the spawner deletes it on stop (:func:`owned_by`).
"""

from __future__ import annotations

import copy
import math

from oggmhub.session import env as session_vars
from oggmhub.session.dask_limits import Usage
from oggmhub.session.quantities import parse_memory

ENV_TEMPLATE = session_vars.DASK_TEMPLATE
ENV_POD_NAME = session_vars.POD_NAME
ENV_POD_UID = session_vars.POD_UID
ENV_NAMESPACE = session_vars.NAMESPACE
OWNER_LABEL = "oggmhub.org/owner-pod"
GPU_GROUP = "gpu"
# the scheduler's pod; the namespace's ResourceQuota counts one per cluster
SCHEDULER_RESOURCES = {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": "1", "memory": "2Gi"}}
# the dataset sidecar of each worker (explicit limits: the namespace has a quota)
WORKER_SIDECAR_RESOURCES = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "500m", "memory": "1Gi"}}
_DASK_GROUP = "kubernetes.dask.org"


def downward_env():
    """KubeSpawner ``environment`` entries giving the session its pod's name, uid and namespace."""
    return {
        name: {"valueFrom": {"fieldRef": {"fieldPath": path}}}
        for name, path in ((ENV_POD_NAME, "metadata.name"), (ENV_POD_UID, "metadata.uid"),
                           (ENV_NAMESPACE, "metadata.namespace"))
    }


def owner_reference(pod_name, pod_uid):
    """An ownerReference to the user's pod: Kubernetes deletes the owned object with it."""
    return {"apiVersion": "v1", "kind": "Pod", "name": pod_name, "uid": pod_uid}


def worker_resources(cores, memory, gpu=None):
    """A worker container's resources: requests equal limits (predictable for Dask)."""
    limits = {"cpu": _cpu(cores), "memory": str(int(memory))}
    if gpu:
        limits[gpu["resource"]] = str(gpu["count"])
    return {"requests": dict(limits), "limits": limits}


def _cpu(cores):
    return f"{int(round(cores * 1000))}m"


def worker_command(cores, memory, gpu=None):
    # ``dask worker``: distributed no longer installs the ``dask-worker`` script (nor
    # ``dask-scheduler``), which dask-kubernetes' make_cluster_spec still names
    command = ["dask", "worker", "--nthreads", str(max(1, math.floor(cores))), "--memory-limit", str(int(memory))]
    if gpu:
        command += ["--resources", f"GPU={gpu['count']}"]
    return command


def _pod_spec(template, container, *, gpu=None, datasets=True):
    """A pod spec around ``container`` with the template's security, placement and mounts."""
    container["securityContext"] = copy.deepcopy(template["container_security_context"])
    spec = {
        "automountServiceAccountToken": False,  # Dask pods never talk to the Kubernetes API
        "containers": [container],
        "securityContext": copy.deepcopy(template["pod_security_context"]),
    }
    placement = gpu or template
    if placement["node_selector"]:
        spec["nodeSelector"] = dict(placement["node_selector"])
    if placement["tolerations"]:
        spec["tolerations"] = copy.deepcopy(placement["tolerations"])
    if datasets and template["init_containers"]:
        spec["initContainers"] = copy.deepcopy(template["init_containers"])
        spec["volumes"] = copy.deepcopy(template["volumes"])
        container["volumeMounts"] = copy.deepcopy(template["volume_mounts"])
    return spec


def _make_cluster_spec(*args, **kwargs):
    # dask-kubernetes' own renderer; imported here so the hub does not need dask-kubernetes
    from dask_kubernetes.operator import make_cluster_spec

    return make_cluster_spec(*args, **kwargs)


def _worker(template, replicas, cores, memory, gpu=None):
    spec = _make_cluster_spec("x", image=(gpu or template)["image"], n_workers=replicas,
                             resources=worker_resources(cores, memory, gpu), env=template["env"],
                             worker_command=worker_command(cores, memory, gpu))["spec"]["worker"]
    container = spec["spec"]["containers"][0]
    spec["spec"] = _pod_spec(template, container, gpu=gpu)
    return spec


def _metadata(name, owner, labels=None):
    return {
        "name": name,
        "labels": {OWNER_LABEL: owner["name"], "app.kubernetes.io/managed-by": "oggmhub", **(labels or {})},
        "ownerReferences": [dict(owner)],
    }


def cluster_spec(name, template, *, workers, owner, worker_cores=None, worker_memory=None,
                 idle_timeout=0):
    """The ``DaskCluster`` for ``workers`` CPU workers, from the session's ``template``.

    ``owner`` is :func:`owner_reference` to the user's pod; worker cores and memory
    default to the session's size.
    """
    cores = worker_cores or template["worker_cores"]
    memory = worker_memory or template["worker_memory"]
    spec = _make_cluster_spec(name, image=template["image"], n_workers=workers, env=template["env"],
                             resources=SCHEDULER_RESOURCES, idle_timeout=int(idle_timeout or 0))
    spec["metadata"] = _metadata(name, owner)
    spec["spec"]["worker"] = _worker(template, workers, cores, memory)
    scheduler = spec["spec"]["scheduler"]
    container = scheduler["spec"]["containers"][0]
    container["resources"] = copy.deepcopy(SCHEDULER_RESOURCES)
    container["args"] = ["dask", "scheduler", *container["args"][1:]]  # see worker_command
    scheduler["spec"] = _pod_spec(template, container, datasets=False)
    return spec


def gpu_worker_group(cluster_name, template, *, workers, owner, worker_cores=None, worker_memory=None):
    """A ``DaskWorkerGroup`` of GPU workers for cluster ``cluster_name``.

    Tasks reach them with ``client.submit(..., resources={"GPU": 1})``.
    """
    gpu = template["gpu"]
    if gpu is None:
        raise ValueError("this session has no GPU variant for Dask workers")
    cores = worker_cores or template["worker_cores"]
    memory = worker_memory or template["worker_memory"]
    return {
        "apiVersion": f"{_DASK_GROUP}/v1",
        "kind": "DaskWorkerGroup",
        "metadata": _metadata(f"{cluster_name}-{GPU_GROUP}", owner, {"oggmhub.org/gpu": gpu["variant"]}),
        "spec": {"cluster": cluster_name, "worker": _worker(template, workers, cores, memory, gpu)},
    }


def owned_by(obj, pod_name):
    """Whether a Kubernetes object (a dict) is owned by the pod named ``pod_name``."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(r.get("kind") == "Pod" and r.get("name") == pod_name for r in refs)


def _group_usage(worker_spec, replicas=None):
    """Usage of one worker group: replicas x its worker container's limits."""
    replicas = worker_spec.get("replicas", 0) if replicas is None else replicas
    containers = (worker_spec.get("spec") or {}).get("containers") or [{}]
    limits = (containers[0].get("resources") or {}).get("limits") or {}
    cores = _parse_cpu(limits.get("cpu", "0"))
    memory = parse_memory(limits["memory"]) if limits.get("memory") else 0
    gpus = sum(int(v) for k, v in limits.items() if k.endswith("/gpu"))
    return Usage(workers=replicas, cores=replicas * cores, memory=replicas * memory, gpus=replicas * gpus)


def _parse_cpu(value):
    value = str(value)
    return int(value[:-1]) / 1000 if value.endswith("m") else float(value)


def usage(clusters, groups=()):
    """What the DaskClusters and DaskWorkerGroups (dicts) of a namespace hold.

    A cluster's default group is counted from its ``DaskWorkerGroup`` once the operator
    made it (``cluster.scale()`` changes that one), else from the cluster's spec.
    """
    groups = {g["metadata"]["name"]: g for g in groups}
    total = Usage()
    names = set()
    for cluster in clusters:
        name = cluster["metadata"]["name"]
        names.add(name)
        default = groups.get(f"{name}-default")
        worker = (default or cluster)["spec"]["worker"]
        total = total + _group_usage(worker) + Usage(clusters=1)
    for group_name, group in groups.items():
        cluster_name = group["spec"].get("cluster")
        if cluster_name in names and group_name != f"{cluster_name}-default":
            total = total + _group_usage(group["spec"]["worker"])
    return total
