"""Pure functions: the objects that fence a user into their own namespace.

With kubespawner's ``enable_user_namespaces`` a user's pods live in a namespace of their
own, which kubespawner creates. :class:`~oggmhub.spawner.OGGMHubSpawner` adds to it, at
every spawn and idempotently (:func:`user_objects`):

* a **ResourceQuota**: the user's server (its size, GPUs and dataset sidecar) plus the
  catalog's Dask limits (clusters, workers, worker cores, memory and GPUs, and each
  cluster's scheduler and worker sidecars). The limits :mod:`oggmhub.session.dask_limits` checks
  in the notebook then also hold against direct Kubernetes API calls;
* a **LimitRange** giving a container without limits default ones (a quota on
  ``limits.cpu`` refuses such pods otherwise);
* with Dask on Kubernetes only: a **ServiceAccount** for the user's pod, a **Role** that
  reaches nothing but pods, pod logs, services and events (read) and the Dask custom
  resources in that namespace, and the **RoleBinding** between them.

A user who may create DaskClusters can have the Dask operator create any pod in their
namespace. :func:`pod_policy` is the cluster-wide admission policy (install it once, with
the chart) that keeps user code unprivileged there: in namespaces labelled
``oggmhub.org/user-namespace``, only the exact dataset mount sidecar may be privileged,
every other container runs as non-root with nothing to escalate, and no pod reaches the
node (hostPath, host network, PID or IPC).
"""

from __future__ import annotations

from oggmhub.session import env as session_vars
from oggmhub.session.quantities import parse_memory
from oggmhub.session.dask_kubernetes import SCHEDULER_RESOURCES, WORKER_SIDECAR_RESOURCES
from oggmhub.session.mount_sidecar import DEFAULT_SIDECAR_RESOURCES, SIDECAR_NAME

QUOTA = "oggmhub-quota"
LIMIT_RANGE = "oggmhub-defaults"
SERVICE_ACCOUNT = "oggmhub-user"
ROLE = "oggmhub-dask"
TASKS_ROLE = "oggmhub-tasks"
NAMESPACE_LABELS = {"oggmhub.org/user-namespace": "true"}
MANAGED = {"app.kubernetes.io/managed-by": "oggmhub"}
# what a container without resources gets in a user namespace
CONTAINER_DEFAULTS = {"default": {"cpu": "500m", "memory": "512Mi"},
                      "defaultRequest": {"cpu": "100m", "memory": "256Mi"}}
DASK_RESOURCES = ("daskclusters", "daskworkergroups", "daskautoscalers", "daskjobs")
POD_POLICY = "oggmhub-user-pods"
MOUNT_COMMAND = ["oggmhub", "datasets", "mount", "--from-env", "--root", "/", "--wait"]
# folders a mount may never cover (as the catalog's mount_path rule)
_SYSTEM_DIRS = "bin|boot|dev|etc|home|lib|lib32|lib64|opt|proc|root|run|sbin|srv|sys|usr|var"
_SYSTEM = f"^/({_SYSTEM_DIRS})(/|$)"
# OGGMHUB_DATASETS_JSON a user could hand the privileged sidecar: a mount_path with '..',
# a backslash escape or a system folder, or any key written with an escape (best effort:
# the sidecar must check mount paths itself too)
_BAD_MOUNT_JSON = ('"mount_path": *"([^"]*[.][.]|[^"]*\\\\|/(' + _SYSTEM_DIRS + ')(/|"))'
                   '|"[^"]*\\\\u[0-9a-fA-F]{4}[^"]*" *:')


def hub_namespace():
    """The hub's namespace: $POD_NAMESPACE, else this pod's service account's, else ``default``."""
    import os

    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    try:
        with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as f:
            return f.read().strip()
    except OSError:
        return "default"


def _user_fields(username, hub_ns):
    from kubespawner.slugs import escape_slug, safe_slug

    safe = safe_slug(username, max_length=48)  # kubespawner's per-field limit
    return dict(username=safe, safe_username=safe, escaped_username=escape_slug(username),
                unescaped_username=username, hubnamespace="user" if hub_ns == "default" else hub_ns,
                servername="", safe_servername="", user_server=safe, safe_user_server=safe)


def user_namespace_name(username, hub_ns="default", template="{hubnamespace}-{username}"):
    """``username``'s namespace, as KubeSpawner names it with ``enable_user_namespaces``
    (``user_namespace_template``, the "safe" slug scheme)."""
    return template.format(**_user_fields(username, hub_ns))


def home_pvc_name(username, template="home-{username}"):
    """``username``'s home volume claim (the spawner's ``pvc_name_template``)."""
    return template.format(**_user_fields(username, "default"))


def _meta(name, namespace):
    return {"name": name, "namespace": namespace, "labels": dict(MANAGED)}


def limit_range(namespace, defaults=CONTAINER_DEFAULTS):
    """Default resources for containers that declare none."""
    return {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": _meta(LIMIT_RANGE, namespace),
        "spec": {"limits": [{"type": "Container", **{k: dict(v) for k, v in defaults.items()}}]},
    }


def _cpu(value):
    value = str(value)
    return int(value[:-1]) / 1000 if value.endswith("m") else float(value)


def effective(resources, defaults=CONTAINER_DEFAULTS):
    """(cpu, memory) limits and requests of a container once the LimitRange applied:
    ``{"limits": (cores, bytes), "requests": (cores, bytes)}``."""
    out = {}
    for kind, fallback in (("limits", "default"), ("requests", "defaultRequest")):
        given = (resources or {}).get(kind) or {}
        if kind == "requests":  # Kubernetes: an unset request is the limit, if there is one
            given = {**{k: v for k, v in ((resources or {}).get("limits") or {}).items()}, **given}
        cpu = given.get("cpu", defaults[fallback]["cpu"])
        memory = given.get("memory", defaults[fallback]["memory"])
        out[kind] = (_cpu(cpu), parse_memory(memory))
    return out


def _millicores(cores):
    return f"{int(round(cores * 1000))}m"


def resource_quota(namespace, *, size, limits, server_gpus=None, gpu_resources=("nvidia.com/gpu",),
                   datasets=False, servers=1):
    """The user's ResourceQuota: ``servers`` servers of catalog ``size`` (with
    ``server_gpus``, ``{resource: count}``) plus the Dask ``limits`` (``DaskLimits``).

    ``datasets``: whether pods carry the dataset sidecar (counted per pod). Requests are
    bounded like limits (a request never exceeds its limit). Every GPU resource in
    ``gpu_resources`` gets a quota, 0 where none is allowed, so no pod can take one.
    """
    server_sidecar = effective(DEFAULT_SIDECAR_RESOURCES) if datasets else None
    worker_sidecar = effective(WORKER_SIDECAR_RESOURCES) if datasets else None
    scheduler = effective(SCHEDULER_RESOURCES)
    hard = {}
    for i, resource in enumerate(("cpu", "memory")):
        server = (size.cpu_limit, size.mem_limit)[i]
        total = servers * (server + (server_sidecar["limits"][i] if server_sidecar else 0))
        total += limits.clusters * scheduler["limits"][i]
        total += (limits.cores, limits.memory)[i]
        total += limits.workers * (worker_sidecar["limits"][i] if worker_sidecar else 0)
        amount = _millicores(total) if resource == "cpu" else str(int(total))
        hard[f"limits.{resource}"] = hard[f"requests.{resource}"] = amount
    for resource in dict.fromkeys([*gpu_resources, *(server_gpus or {})]):
        count = servers * (server_gpus or {}).get(resource, 0) + limits.gpus
        hard[f"requests.{resource}"] = str(count)  # extended resources are quota'd by request
    hard.update({
        "pods": str(servers + limits.clusters + limits.workers),
        "services": str(servers + limits.clusters),
        "count/daskclusters.kubernetes.dask.org": str(limits.clusters),
        "count/daskworkergroups.kubernetes.dask.org": str(2 * limits.clusters),  # default + GPU
    })
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": _meta(QUOTA, namespace),
        "spec": {"hard": hard},
    }


def service_account(namespace, name=SERVICE_ACCOUNT):
    """The user pod's identity when it may start Dask clusters."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(name, namespace),
        "automountServiceAccountToken": False,  # the pod asks for it, only with Dask on
    }


def role(namespace, name=ROLE):
    """Read pods, logs, services and events; manage Dask clusters: in this namespace only."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _meta(name, namespace),
        "rules": [
            {"apiGroups": [""], "resources": ["pods", "pods/log", "services", "events"],
             "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["kubernetes.dask.org"], "resources": list(DASK_RESOURCES),
             "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
        ],
    }


def role_binding(namespace, name=ROLE, account=SERVICE_ACCOUNT):
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _meta(name, namespace),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
    }


def tasks_role(namespace, name=TASKS_ROLE):
    """What the tasks service does in a user namespace: run Jobs (each with its plan in a
    ConfigMap), watch them, read their pods' logs, delete both on cancel. Nothing else."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _meta(name, namespace),
        "rules": [
            {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "get", "list", "watch", "delete"]},
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "get", "delete"]},
            {"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"]},
        ],
    }


def tasks_role_binding(namespace, account, name=TASKS_ROLE):
    """Bind :func:`tasks_role` to the tasks service's ``account`` (``NAMESPACE/NAME``)."""
    account_ns, _, account_name = account.rpartition("/")
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _meta(name, namespace),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": account_name, "namespace": account_ns or namespace}],
    }


def user_objects(namespace, choice, limits, *, dask=False, account=SERVICE_ACCOUNT, servers=1, tasks_account=None):
    """Every object the spawner ensures in a user namespace, in creation order.

    ``choice`` is the session's ``SpawnChoice``; ``limits`` its ``DaskLimits`` (with
    neither Dask nor tasks, the quota leaves room for the server only; with tasks but no
    Dask, for task-run pods within the Dask limits' workers, cores and memory, but no
    cluster). ``tasks_account``: the tasks service's ``NAMESPACE/NAME`` service account,
    which then gets :func:`tasks_role` here.
    """
    env = choice.environment
    if not dask and not tasks_account:
        limits = type(limits)(clusters=0, workers=0, cores=0.0, memory=0, gpus=0)
    elif not dask:
        limits = type(limits)(clusters=0, workers=limits.workers, cores=limits.cores, memory=limits.memory,
                              gpus=0)
    gpu = choice.gpu
    objects = [
        limit_range(namespace),
        resource_quota(
            namespace, size=choice.size, limits=limits, datasets=bool(choice.datasets), servers=servers,
            server_gpus={gpu.resource: gpu.count} if gpu else {},
            gpu_resources=tuple(dict.fromkeys(["nvidia.com/gpu", *(g.resource for g in env.gpus.values())])),
        ),
    ]
    if dask:
        objects += [service_account(namespace, account), role(namespace), role_binding(namespace, account=account)]
    if tasks_account:
        objects += [tasks_role(namespace), tasks_role_binding(namespace, tasks_account)]
    return objects


def _cel_str(value):
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _unprivileged(c):
    """CEL: container ``c`` runs as non-root, unprivileged, with nothing to escalate."""
    sc = f"{c}.securityContext"
    pod_non_root = ("(has(object.spec.securityContext) && has(object.spec.securityContext.runAsNonRoot) "
                    "&& object.spec.securityContext.runAsNonRoot == true)")
    return (f"(has({sc}) ? ("
            f"(!has({sc}.privileged) || {sc}.privileged == false)"
            f" && has({sc}.allowPrivilegeEscalation) && {sc}.allowPrivilegeEscalation == false"
            f" && (!has({sc}.capabilities) || !has({sc}.capabilities.add) || size({sc}.capabilities.add) == 0)"
            f" && ((has({sc}.runAsNonRoot) && {sc}.runAsNonRoot == true) || {pod_non_root})"
            f" && !(has({sc}.runAsUser) && {sc}.runAsUser == 0)"
            f") : false)")


def _probe(c, kind):
    cmd = f"{c}.{kind}.exec.command"
    check = 'mountpoint -q "/[A-Za-z0-9_][A-Za-z0-9_./~-]*"'  # '~' is literal in "..." (OGGM's ~oggm)
    return (f"(!has({c}.{kind}) || (!has({c}.{kind}.httpGet) && !has({c}.{kind}.tcpSocket) && !has({c}.{kind}.grpc)"
            f" && has({c}.{kind}.exec) && size({cmd}) == 3 && {cmd}[0] == 'sh' && {cmd}[1] == '-c'"
            f" && {cmd}[2].matches('^{check}( && {check})*$')))")


def _mounter(c, image, env_names):
    """CEL: ``c`` is exactly the dataset mount sidecar oggmhub renders, nothing added."""
    allowed = ", ".join(_cel_str(n) for n in [session_vars.DATASETS_JSON, session_vars.MOUNT_OPTIONS,
                                                 "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", *env_names])
    return (f"({c}.name == {_cel_str(SIDECAR_NAME)} && {c}.image == {_cel_str(image)}"
            f" && has({c}.command) && {c}.command == [{', '.join(_cel_str(x) for x in MOUNT_COMMAND)}]"
            f" && !has({c}.args) && !has({c}.lifecycle) && !has({c}.workingDir) && !has({c}.envFrom)"
            f" && (!has({c}.env) || {c}.env.all(e, (e.name in [{allowed}]"
            f" || e.name.startsWith({_cel_str(session_vars.DATASET_CREDENTIALS_PREFIX)}))"
            f" && (!has(e.value) || !e.value.matches({_cel_str(_BAD_MOUNT_JSON)}))))"
            f" && (!has({c}.volumeMounts) || {c}.volumeMounts.all(m, !has(m.subPath) && !has(m.subPathExpr)"
            f" && !m.mountPath.matches('{_SYSTEM}') && m.mountPath.matches('^(/[A-Za-z0-9_][A-Za-z0-9._-]*)+$')))"
            f" && {_probe(c, 'livenessProbe')} && {_probe(c, 'startupProbe')} && {_probe(c, 'readinessProbe')})")


def pod_policy(mounter_image, sidecar_env_names=()):
    """The ValidatingAdmissionPolicy and its binding that keep user namespaces unprivileged.

    ``mounter_image`` is the dataset sidecar's image (``dataset_mounter_image``), the one
    container allowed privileges; ``sidecar_env_names`` the extra variables the operator
    gives it (``sidecar_env``). Cluster-scoped: install once, with the hub (Kubernetes
    1.30 or later).
    """
    containers = ("object.spec.containers + (has(object.spec.initContainers) ? "
                  "object.spec.initContainers : [])")
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": POD_POLICY, "labels": dict(MANAGED)},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
                "resources": ["pods", "pods/ephemeralcontainers"],
            }]},
            "variables": [{"name": "containers", "expression": containers}],
            "validations": [
                {"expression": "variables.containers.all(c, " + _unprivileged("c") + " || "
                               + _mounter("c", mounter_image, sidecar_env_names) + ")",
                 "message": "in a user namespace every container runs as non-root, unprivileged, with "
                            "allowPrivilegeEscalation false and no added capabilities (only oggmhub's "
                            "dataset sidecar, exactly as oggmhub renders it, may be privileged)"},
                {"expression": "!has(object.spec.ephemeralContainers) || object.spec.ephemeralContainers.all(c, "
                               + _unprivileged("c") + ")",
                 "message": "ephemeral containers in a user namespace run unprivileged, as non-root"},
                {"expression": "!has(object.spec.volumes) || object.spec.volumes.all(v, !has(v.hostPath))",
                 "message": "hostPath volumes are not allowed in a user namespace"},
                {"expression": "!(has(object.spec.hostNetwork) && object.spec.hostNetwork) && "
                               "!(has(object.spec.hostPID) && object.spec.hostPID) && "
                               "!(has(object.spec.hostIPC) && object.spec.hostIPC)",
                 "message": "host network, PID and IPC namespaces are not allowed in a user namespace"},
            ],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": POD_POLICY, "labels": dict(MANAGED)},
        "spec": {
            "policyName": POD_POLICY,
            "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": {"matchLabels": dict(NAMESPACE_LABELS)}},
        },
    }
    return [policy, binding]
