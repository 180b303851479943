"""Pure functions: a session's datasets in, the pod pieces that mount them out.

One *mount sidecar* per pod is the only container with FUSE privileges. It mounts each
dataset read-only (``oggmhub datasets mount --from-env --wait``, the same code as the
local backend) into a per-pod ``emptyDir`` that it shares with the user's container
through mount propagation:

* the sidecar mounts the ``emptyDir`` with ``mountPropagation: Bidirectional`` (allowed
  only to a privileged container), so the FUSE mounts it makes inside it propagate to
  the node and back into every container that mounts the same volume;
* the user container mounts it with ``mountPropagation: HostToContainer`` and
  ``readOnly: true``: it receives those mounts (even ones made after it started) and
  keeps every privilege dropped (:func:`oggmhub.backends.kubernetes.pod.check_user_container`).

FUSE mounts are made in *sub-folders* of the shared volume (the volume is mounted at the
parent folder of the catalog mount paths: ``/data`` for ``/data/oggm-mirror``), never on
the volume's own mount point, which is the arrangement that propagates on containerd and
CRI-O (kubelet keeps its pod folders on an rshared mount). By default the sidecar is a
Kubernetes *native sidecar* (an init container with ``restartPolicy: Always``, Kubernetes
>= 1.29): its startup probe holds the user container back until every mount is live, and
it is stopped after the user container, unmounting on SIGTERM so the ``emptyDir`` can be
removed.

Credentials: ``{secret: NAME, key: KEY}`` reaches the sidecar only, as a ``secretKeyRef``
environment variable (the manifest never holds a secret's value); ``{env: VAR}`` must be
given to the sidecar by the operator (``sidecar_env``); ``{ambient: true}`` uses the pod's
identity (GKE Workload Identity).
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re

from oggmhub.session import env as session_vars
from oggmhub.session.datasets import credentials_env_var, session_env, split_source

SIDECAR_NAME = "oggmhub-datasets"
DEFAULT_SIDECAR_RESOURCES = {
    "requests": {"cpu": "100m", "memory": "256Mi"},
    "limits": {"memory": "2Gi"},
}


class DatasetMountError(ValueError):
    """The datasets cannot be mounted in a pod as configured; the message says why."""


def mount_parents(datasets):
    """The distinct parent folders of the datasets' mount paths, sorted."""
    return sorted({posixpath.dirname(d.mount_path) for d in datasets})


def volume_name(parent):
    """A valid volume name for the shared folder ``parent``, e.g. ``oggmhub-data-1a2b3c``."""
    slug = re.sub(r"[^a-z0-9]+", "-", parent.lower()).strip("-")[:30].strip("-") or "root"
    digest = hashlib.sha1(parent.encode()).hexdigest()[:6]
    return f"oggmhub-{slug}-{digest}"


def check_mountable(datasets, home_mount_path="/home/jovyan", sidecar_env=None):
    """Raise :class:`DatasetMountError` naming the dataset unless all can be mounted here."""
    provided = {e["name"] for e in _env_list(sidecar_env)}
    parents = mount_parents(datasets)
    for dataset in datasets:
        protocol, _ = split_source(dataset.source)
        if protocol == "file":
            raise DatasetMountError(
                f"dataset {dataset.name!r}: a local source ({dataset.source}) cannot be "
                "mounted in a Kubernetes pod; put it in a bucket (oggmhub datasets mirror)")
        home = home_mount_path.rstrip("/")
        if dataset.mount_path == home or dataset.mount_path.startswith(home + "/") or home.startswith(posixpath.dirname(dataset.mount_path) + "/"):
            raise DatasetMountError(
                f"dataset {dataset.name!r}: mount path {dataset.mount_path} overlaps the home "
                f"volume at {home_mount_path}; choose a path outside it, e.g. /data/{dataset.name}")
        var = (dataset.credentials or {}).get("env")
        if var and var not in provided:
            raise DatasetMountError(
                f"dataset {dataset.name!r}: its credentials are read from ${var}, which the mount "
                f"sidecar is not given; add {var} to the sidecar's environment (from a secret) "
                "or refer to a Kubernetes secret with credentials: {secret: NAME}")
    for parent in parents:
        for dataset in datasets:
            if dataset.mount_path != parent and parent.startswith(dataset.mount_path + "/"):
                raise DatasetMountError(f"dataset {dataset.name!r}: mount path {dataset.mount_path} contains {parent}")


def _env_list(env):
    if not env:
        return []
    if isinstance(env, dict):
        return [{"name": k, "value": str(v)} for k, v in env.items()]
    return list(env)


def sidecar_env(datasets, extra=None):
    """The sidecar's environment: the datasets (JSON) and secret references."""
    env = [{"name": session_vars.DATASETS_JSON, "value": session_env(datasets)[session_vars.DATASETS_JSON]},
           {"name": "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "value": "false"}]
    for dataset in datasets:
        ref = dataset.credentials or {}
        if "secret" in ref:
            env.append({
                "name": credentials_env_var(dataset.name),
                "valueFrom": {"secretKeyRef": {"name": ref["secret"], "key": ref.get("key", "credentials")}},
            })
    return env + _env_list(extra)


def _mounted_check(datasets):
    # the namespace's admission policy admits exactly this form (backends/kubernetes/namespace.py)
    paths = " && ".join(f"mountpoint -q {json.dumps(d.mount_path)}" for d in datasets)
    return {"exec": {"command": ["sh", "-c", paths]}}


def sidecar_container(datasets, image, *, command=None, env=None, resources=None,
                      native=True, image_pull_policy=None):
    """The mount sidecar: privileged (FUSE and Bidirectional propagation need it), root.

    ``native`` makes it a native sidecar, for ``init_containers`` (``restartPolicy:
    Always``; a startup probe waits for every mount); otherwise a plain container for
    ``extra_containers`` (older clusters: the mounts then appear in the user container
    shortly after it starts, through HostToContainer propagation).
    """
    container = {
        "name": SIDECAR_NAME,
        "image": image,
        "command": command or ["oggmhub", "datasets", "mount", "--from-env", "--root", "/", "--wait"],
        "env": sidecar_env(datasets, env),
        "securityContext": {"privileged": True, "runAsUser": 0, "runAsNonRoot": False},
        "volumeMounts": [
            {"name": volume_name(parent), "mountPath": parent, "mountPropagation": "Bidirectional"}
            for parent in mount_parents(datasets)
        ],
        "resources": resources or DEFAULT_SIDECAR_RESOURCES,
        "livenessProbe": {**_mounted_check(datasets), "periodSeconds": 10, "failureThreshold": 3},
    }
    if image_pull_policy:
        container["imagePullPolicy"] = image_pull_policy
    if native:
        container["restartPolicy"] = "Always"
        container["startupProbe"] = {**_mounted_check(datasets), "periodSeconds": 1, "failureThreshold": 120}
    return container


def dataset_volumes(datasets):
    """One ``emptyDir`` per distinct parent folder of the mount paths."""
    return [{"name": volume_name(parent), "emptyDir": {}} for parent in mount_parents(datasets)]


def user_volume_mounts(datasets):
    """The user container's view of the shared folders: receives mounts, cannot write."""
    return [
        {"name": volume_name(parent), "mountPath": parent, "mountPropagation": "HostToContainer", "readOnly": True}
        for parent in mount_parents(datasets)
    ]


def pod_settings(datasets, image, *, home_mount_path="/home/jovyan", env=None, resources=None,
                 native=True, image_pull_policy=None):
    """KubeSpawner trait additions mounting ``datasets`` (catalog ``Dataset`` objects).

    Returns ``{"init_containers" or "extra_containers": [sidecar], "volumes": [...],
    "volume_mounts": [...], "environment": {...}}``, each to be *added* to the configured
    base; ``{}`` when there are no datasets. Raises :class:`DatasetMountError`.
    """
    datasets = list(datasets)
    if not datasets:
        return {}
    check_mountable(datasets, home_mount_path, env)
    sidecar = sidecar_container(datasets, image, env=env, resources=resources, native=native,
                                image_pull_policy=image_pull_policy)
    return {
        "init_containers" if native else "extra_containers": [sidecar],
        "volumes": dataset_volumes(datasets),
        "volume_mounts": user_volume_mounts(datasets),
        "environment": session_env(datasets),
    }
