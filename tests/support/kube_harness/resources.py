"""The emulated resource table and small Kubernetes helpers shared by the harness modules."""

from __future__ import annotations

import datetime

import kmock

_VERBS = ("create", "delete", "get", "list", "patch", "update", "watch")

# "group/version/plural" -> (Kind, singular, namespaced, subresources)
RESOURCES: dict[str, tuple[str, str, bool, tuple[str, ...]]] = {
    "v1/pods": ("Pod", "pod", True, ("status", "log", "exec", "eviction")),
    "v1/events": ("Event", "event", True, ()),
    "v1/persistentvolumeclaims": ("PersistentVolumeClaim", "persistentvolumeclaim", True, ("status",)),
    "v1/services": ("Service", "service", True, ("status",)),
    "v1/secrets": ("Secret", "secret", True, ()),
    "v1/configmaps": ("ConfigMap", "configmap", True, ()),
    "v1/serviceaccounts": ("ServiceAccount", "serviceaccount", True, ()),
    "v1/resourcequotas": ("ResourceQuota", "resourcequota", True, ("status",)),
    "v1/namespaces": ("Namespace", "namespace", False, ("status", "finalize")),
    "rbac.authorization.k8s.io/v1/roles": ("Role", "role", True, ()),
    "rbac.authorization.k8s.io/v1/rolebindings": ("RoleBinding", "rolebinding", True, ()),
    "kubernetes.dask.org/v1/daskclusters": ("DaskCluster", "daskcluster", True, ("status",)),
    "batch/v1/jobs": ("Job", "job", True, ("status",)),
}

_RES_OBJS: dict[str, kmock.resource] = {key: kmock.resource(key) for key in RESOURCES}
_RES_INFO: dict[kmock.resource, tuple[str, str, bool, tuple[str, ...]]] = {
    _RES_OBJS[key]: info for key, info in RESOURCES.items()
}
_BY_PLURAL: dict[str, kmock.resource] = {res.plural: res for res in _RES_OBJS.values()}

_DEFAULT_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def _resolve(resource: str | kmock.resource) -> kmock.resource:
    """'pods', 'v1/pods', 'rbac.authorization.k8s.io/v1/roles', a kmock.resource -> resource."""
    if isinstance(resource, kmock.resource):
        return resource
    if resource in _BY_PLURAL:
        return _BY_PLURAL[resource]
    if resource in _RES_OBJS:
        return _RES_OBJS[resource]
    return kmock.resource(resource)


def _api_version(res: kmock.resource) -> str:
    return f"{res.group}/{res.version}" if res.group else str(res.version)


def _is_namespaced(res: kmock.resource) -> bool:
    info = _RES_INFO.get(res)
    return True if info is None else info[2]


def _kind(res: kmock.resource) -> str:
    info = _RES_INFO.get(res)
    return info[0] if info else str(res.plural).capitalize()


def _now() -> str:
    return datetime.datetime.now(tz=datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _bad_request(message: str) -> kmock.KubernetesError:
    return kmock.KubernetesError(status=400, reason="BadRequest", message=message, details={})
