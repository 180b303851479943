"""A real (emulated) Kubernetes API for testing KubeSpawner, plus a test kubelet.

This module is a plain library (no pytest import) so that both the pytest
fixtures and standalone scripts (``benchmarks/spawn_k8s.py`` does
``sys.path.insert(0, 'tests')``) can use it.

What it provides
----------------
``KubeAPI``
    An async context manager running kmock 0.8's ``KubernetesEmulator`` over
    HTTP on ``127.0.0.1:<free port>``, with a thin subclass that fills the gaps
    kmock 0.8 has for kubernetes_asyncio / kubespawner (see ``_Emulator``):

    * ``?watch=True`` (what kubernetes_asyncio sends) is lower-cased, so it is a
      watch and not a plain list;
    * creates get ``metadata.uid``, ``namespace``, ``creationTimestamp``,
      ``generation``, ``generateName`` expansion, and a ``status`` (pods:
      ``phase: Pending``; PVCs: ``Bound``; namespaces: ``Active``);
    * every write (create/patch/replace/delete) gets a monotonic
      ``metadata.resourceVersion``; lists report the current one; watches honour
      ``resourceVersion`` (replaying the missed events, so the list->watch gap
      of kubespawner's reflectors loses nothing) and ``timeoutSeconds``;
    * ``labelSelector`` and ``fieldSelector`` are honoured on list and watch;
    * ``PUT`` (replace) works; ``/api/v1/namespaces[/NAME]`` is parsed as the
      cluster-scoped ``namespaces`` resource (kmock's parser breaks on it);
    * 404/409 errors carry the real Kubernetes reasons/messages
      (``NotFound``/``AlreadyExists``, ``pods "x" already exists``);
    * request dispatch is O(1) per request (kmock 0.8 scans the whole request
      history for every reaction, which is quadratic under load).

    Fault injection (``inject``, ``inject_delay``) is done *before* kmock sees
    the request (so an injected 500 on create creates nothing), or with
    ``after=True`` after the real operation (the object exists, the client
    still gets the error / the hang).  kmock's own reaction DSL is not used for
    this: the emulator applies creates/deletes before any reaction runs, and
    ``kmock[...][:n]`` counts from the start of the request history, not from
    the moment of injection.

``TestKubelet``
    A background task that subscribes in-process to the emulator's pod event
    bus (no polling, O(1) per pod event), emits ``Scheduled``/``Pulled``/
    ``Created``/``Started`` v1 Events and flips pending pods to ``Running``
    (podIP/hostIP 127.0.0.1, ready containers, Ready conditions).  Hooks
    ``on_start(pod)`` / ``on_stop(pod)`` are where a later version can run the
    pod's command as a local process (``on_start`` may return status overrides
    such as ``{"podIP": ...}``).  ``terminate()`` marks a pod's containers as
    exited so ``KubeSpawner.poll()`` sees an exit code.

``configure_kubespawner(api, kubeconfig_path)`` / ``reset_kubespawner()``
    KubeSpawner talks to the API through a process-wide, lru-cached
    ``kubespawner.clients.load_config()`` (it reads the kubeconfig named by
    ``KUBECONFIG`` - kubernetes_asyncio captures that variable *at import
    time* in ``kube_config.KUBE_CONFIG_DEFAULT_LOCATION``) and through shared
    clients cached per event loop in ``kubespawner.clients._client_cache``.
    Its pod/event reflectors are class-level singletons in
    ``KubeSpawner.reflectors``.  So, before constructing spawners against a new
    ``KubeAPI`` (new port), callers must::

        api = await KubeAPI().start()          # or: async with KubeAPI() as api
        await configure_kubespawner(api, tmp_path / "kubeconfig")
        # ... create KubeSpawner instances, start/poll/stop ...
        await reset_kubespawner()              # stop reflectors, drop clients
        await api.close()

    ``configure_kubespawner`` writes the kubeconfig, sets ``KUBECONFIG`` (and
    patches the import-time default of kubernetes_asyncio), clears the
    ``load_config`` cache, loads the config into kubernetes_asyncio's default
    ``Configuration`` and drops cached shared clients, so it works whether or
    not kubespawner was imported before.  ``reset_kubespawner`` stops and
    clears ``KubeSpawner.reflectors`` and closes the shared clients of the
    running loop; call it before the emulator goes away.

``make_spawner(username, ...)``
    Builds a plain ``kubespawner.KubeSpawner`` the way kubespawner's own test
    suite does (``jupyterhub.objects.Hub()`` + a minimal user object,
    ``api_token``/``oauth_client_id`` set), with sane test defaults.

Not emulated: admission (quotas, RBAC enforcement, namespace existence,
schema validation), strategic-merge list semantics (kmock merges dicts and
replaces lists), graceful deletion (pods without finalizers vanish at once),
``limit``/``continue`` pagination, deletecollection.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import datetime
import inspect
import json
import os
import re
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import aiohttp.web
import aiohttp.web_runner
import aiohttp.web_server
import aiohttp.test_utils
import attrs
import kmock
from kmock._internal import dsl, enums, parsing, rendering

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
    "make_spawner",
    "wait_until",
]

# --------------------------------------------------------------------------------------
# Resources
# --------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------
# Label / field selectors
# --------------------------------------------------------------------------------------


def _split_top(s: str) -> list[str]:
    """Split a selector by commas that are not inside parentheses."""
    parts, depth, cur = [], 0, []
    for ch in s:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


_SET_RE = re.compile(r"^([^\s!=(),]+)\s+(in|notin)\s*\(([^)]*)\)$")
_EQ_RE = re.compile(r"^([^\s!=(),]+)\s*(==|=|!=)\s*([^\s!=(),]*)$")
_EXISTS_RE = re.compile(r"^(!?)\s*([^\s!=(),]+)$")


def _bad_request(message: str) -> kmock.KubernetesError:
    return kmock.KubernetesError(status=400, reason="BadRequest", message=message, details={})


def _parse_label_selector(selector: str) -> Callable[[Mapping[str, str]], bool]:
    preds: list[Callable[[Mapping[str, str]], bool]] = []
    for term in _split_top(selector):
        if m := _SET_RE.match(term):
            key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",") if v.strip()}
            if op == "in":
                preds.append(lambda lb, k=key, vs=values: lb.get(k) in vs)
            else:
                preds.append(lambda lb, k=key, vs=values: lb.get(k) not in vs)
        elif m := _EQ_RE.match(term):
            key, op, value = m.groups()
            if op == "!=":
                preds.append(lambda lb, k=key, v=value: lb.get(k) != v)
            else:
                preds.append(lambda lb, k=key, v=value: lb.get(k) == v)
        elif m := _EXISTS_RE.match(term):
            neg, key = m.groups()
            if neg:
                preds.append(lambda lb, k=key: k not in lb)
            else:
                preds.append(lambda lb, k=key: k in lb)
        else:
            raise _bad_request(f"unable to parse requirement: {term!r}")
    return lambda labels: all(p(labels) for p in preds)


def _field_value(obj: Mapping[str, Any], path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, Mapping):
            return ""
        cur = cur.get(part)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def _parse_field_selector(selector: str) -> Callable[[Mapping[str, Any]], bool]:
    preds: list[Callable[[Mapping[str, Any]], bool]] = []
    for term in _split_top(selector):
        m = _EQ_RE.match(term)
        if not m:
            raise _bad_request(f"invalid field selector: {term!r}")
        path, op, value = m.groups()
        if op == "!=":
            preds.append(lambda o, p=path, v=value: _field_value(o, p) != v)
        else:
            preds.append(lambda o, p=path, v=value: _field_value(o, p) == v)
    return lambda obj: all(p(obj) for p in preds)


def _make_selector(params: Mapping[str, str]) -> Callable[[Mapping[str, Any]], bool] | None:
    label_sel = params.get("labelSelector") or ""
    field_sel = params.get("fieldSelector") or ""
    if not label_sel and not field_sel:
        return None
    lpred = _parse_label_selector(label_sel) if label_sel else None
    fpred = _parse_field_selector(field_sel) if field_sel else None

    def check(obj: Mapping[str, Any]) -> bool:
        if lpred is not None and not lpred((obj.get("metadata") or {}).get("labels") or {}):
            return False
        if fpred is not None and not fpred(obj):
            return False
        return True

    return check


# --------------------------------------------------------------------------------------
# Faults and the request log
# --------------------------------------------------------------------------------------

_HTTP_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}
_VERB_TO_METHOD = {"create": "POST", "update": "PATCH", "replace": "PUT"}
_VERB_TO_ACTION = {"list": "list", "watch": "watch", "fetch": "fetch", "read": "fetch"}


@attrs.define
class Fault:
    """One injected fault; ``hits`` counts the requests it has affected so far."""

    method: str | None  # HTTP method, upper-case; None = any
    action: str | None  # kmock action value ('list', 'watch', 'fetch'); None = any
    resource: kmock.resource | None
    namespace: str | None = None
    name: str | None = None
    status: int | None = None
    reason: str | None = None
    message: str | None = None
    seconds: float = 0.0
    times: int | None = 1  # None = forever
    after: bool = False
    hits: int = 0

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times

    def matches(self, request: rendering.Request, method: str, action: str | None) -> bool:
        if self.exhausted:
            return False
        if self.method is not None and self.method != method:
            return False
        if self.action is not None and self.action != action:
            return False
        if self.resource is not None:
            res = request.resource
            if res is None or res.plural != self.resource.plural:
                return False
            if self.resource.group is not None and res.group != self.resource.group:
                return False
        if self.namespace is not None and request.namespace != self.namespace:
            return False
        if self.name is not None and request.name != self.name:
            return False
        return True


@attrs.define
class RequestRecord:
    """A cheap, JSON-free record of one HTTP request served by the emulator."""

    id: int
    time: float
    method: str
    path: str
    query: dict[str, str]
    action: str | None
    resource: str | None  # plural
    namespace: str | None
    name: str | None
    subresource: str | None
    status: int | None = None
    duration: float | None = None
    fault: bool = False


def _parse_method_spec(method: str | None) -> tuple[str | None, str | None]:
    """'POST'/'post'/'create' -> ('POST', None); 'list' -> ('GET', 'list'); None -> any."""
    if method is None or method in ("*", "any"):
        return None, None
    low = method.lower()
    if low in _VERB_TO_METHOD:
        return _VERB_TO_METHOD[low], None
    if low in _VERB_TO_ACTION:
        return "GET", _VERB_TO_ACTION[low]
    if method.upper() in _HTTP_METHODS:
        return method.upper(), None
    raise ValueError(f"unknown method/verb: {method!r}")


# --------------------------------------------------------------------------------------
# The emulator subclass
# --------------------------------------------------------------------------------------

_CLOSE = object()  # bus sentinel: ends watch streams and kubelet subscriptions


def _fast_contains(view: dsl.View, request: rendering.Request) -> bool:
    """``request in view`` without scanning the whole request history (kmock 0.8 does)."""
    if isinstance(view, dsl.Root):
        return True  # every request handled here was appended to this root
    if type(view) is dsl.Priority:
        return _fast_contains(view._source, request)
    if type(view) is dsl.Filter:
        return bool(view.criteria(request)) and _fast_contains(view._source, request)
    return request in view  # slicers, groups, exclusions: the generic (slow) path


@attrs.define(kw_only=True)
class _FastDispatch(kmock.RawHandler):
    """RawHandler._handle with O(1) membership checks for plain filter chains."""

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        priorities = [payload.priorities for payload in self._payloads]
        max_length = max((len(p) for p in priorities), default=0)
        keys = [tuple(-p for p in prio) + (0,) * (max_length - len(prio)) for prio in priorities]
        indexes = sorted(range(len(keys)), key=lambda index: keys[index])
        for index in indexes:
            payload = self._payloads[index]
            if payload._disabled.is_set() or not _fast_contains(payload._source, request):
                continue
            try:
                return await payload(request)
            except rendering.ReactionMismatchError:
                payload._disabled.set()
            except NotImplementedError:
                pass
        raise NotImplementedError("Undefined server behaviour: no reaction matches the request.")


@attrs.mutable(weakref_slot=True)
class _StampingBus(kmock.Bus):
    """A kmock bus that lets the emulator stamp resourceVersions and keep history."""

    stamp: Callable[[Any], Any] | None = attrs.field(default=None, kw_only=True)

    async def put(self, *items: Any) -> None:
        if self.stamp is not None:
            items = tuple(self.stamp(item) for item in items)
        await super().put(*items)


class _BusDict(dict):
    def __init__(self, emulator: "_Emulator") -> None:
        super().__init__()
        self._emulator = emulator

    def __missing__(self, key: kmock.resource) -> _StampingBus:
        emulator = self._emulator
        bus = _StampingBus(stamp=lambda event: emulator._stamp(key, event))
        self[key] = bus
        return bus


_NS_PATH = re.compile(r"^/api/v1/namespaces(?:/([^/]+)(?:/(status|finalize))?)?/?$")


@attrs.define(kw_only=True)
class _Emulator(kmock.KubernetesEmulator, _FastDispatch):
    """kmock's KubernetesEmulator with the gaps that matter to kubespawner filled in."""

    history_size: int = 50_000

    _rv: int = attrs.field(default=0, init=False)
    _history: dict[Any, collections.deque] = attrs.field(
        factory=lambda: collections.defaultdict(collections.deque), init=False)
    _evicted_rv: dict[Any, int] = attrs.field(factory=lambda: collections.defaultdict(int), init=False)
    _faults: list[Fault] = attrs.field(factory=list, init=False)
    _log: list[RequestRecord] = attrs.field(factory=list, init=False)
    _closing: bool = attrs.field(default=False, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._buses = _BusDict(self)
        for key, (kind, singular, namespaced, subresources) in RESOURCES.items():
            self.resources[key] = kmock.ResourceInfo(
                kind=kind, singular=singular, namespaced=namespaced,
                verbs=set(_VERBS), subresources=set(subresources),
            )

    # -- resourceVersion stamping & history (called by the buses, under self._lock) --

    def _stamp(self, resource: kmock.resource, event: Any) -> Any:
        if not isinstance(event, dict) or "object" not in event:
            return event
        self._rv += 1
        rv = str(self._rv)
        obj = event["object"]
        if event.get("type") == "DELETED":
            obj = dict(obj)
            obj["metadata"] = dict(obj.get("metadata") or {}, resourceVersion=rv)
            event = {"type": "DELETED", "object": obj}
        else:
            # The event's object is a shallow copy of the stored version, its metadata
            # dict is the stored one: this stamps the stored object too.
            obj.setdefault("metadata", {})["resourceVersion"] = rv
        history = self._history[resource]
        history.append((self._rv, event))
        if len(history) > self.history_size:
            self._evicted_rv[resource] = history.popleft()[0]
        return event

    # -- request entry point: normalisation, parsing fix-ups, logging --

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        query = raw_request.query
        if "watch" in query and query["watch"] != query["watch"].lower():
            new_query = [(k, v.lower() if k == "watch" else v) for k, v in query.items()]
            raw_request = raw_request.clone(rel_url=raw_request.rel_url.with_query(new_query))
        await raw_request.read()

        started = time.monotonic()
        raw_response: aiohttp.web.StreamResponse | None = None
        record: RequestRecord | None = None
        try:
            request = await self._parse_request(raw_request, id=len(self._requests))
            self._requests.append(request)
            record = RequestRecord(
                id=request.id, time=time.time(), method=raw_request.method, path=raw_request.path,
                query=dict(raw_request.query),
                action=request.action.value if request.action is not None else None,
                resource=request.resource.plural if request.resource is not None else None,
                namespace=request.namespace, name=request.name, subresource=request.subresource,
            )
            self._log.append(record)
            try:
                response = await self._handle(request)
            except rendering.StreamingError as e:
                raw_response = e.args[0]
                raise e.__cause__ if e.__cause__ is not None else e
        except Exception as e:
            if not self._errors:
                raise
            self._errors[-1].append(e)
            if raw_response is None or not raw_response.prepared:
                response = await self._render_error(e)
            else:
                await self._stream_error(e, raw_response)
                await raw_response.write_eof()
                response = raw_response
        if record is not None:
            record.status = response.status
            record.duration = time.monotonic() - started
        return response

    async def _parse_request(self, raw_request: aiohttp.web.BaseRequest, *, id: int) -> rendering.Request:
        match = _NS_PATH.match(raw_request.path)
        if match is None:
            return await rendering.Request._parse(raw_request, id=id)
        # kmock 0.8 cannot parse the cluster-scoped namespaces resource: do it here.
        body = await raw_request.read()
        text = await raw_request.text()
        try:
            data = json.loads(body) if body else None
        except ValueError:
            data = None
        name, subresource = match.group(1), match.group(2)
        method = enums.method(raw_request.method)
        k8s = parsing.ParsedPath(group="", version="v1", plural="namespaces", namespace=None, name=name,
                                 subresource=subresource)
        action = parsing.guess_k8s(k8s, method, dict(raw_request.query))
        return rendering.Request(
            id=id, raw_request=raw_request, url=raw_request.url, method=raw_request.method,
            params=dict(raw_request.query), headers=dict(raw_request.headers),
            cookies=dict(raw_request.cookies), data=data, body=body, text=text,
            action=action, resource=_RES_OBJS["v1/namespaces"], namespace=None,
            name=name, subresource=subresource,
        )

    # -- faults, metadata, realistic errors; then kmock's own state handling --

    def _take_fault(self, request: rendering.Request, after: bool) -> Fault | None:
        if not self._faults:
            return None
        method = str(request.method.value if hasattr(request.method, "value") else request.method).upper()
        action = request.action.value if request.action is not None else None
        for fault in self._faults:
            if fault.after == after and fault.matches(request, method, action):
                fault.hits += 1
                if self._log and self._log[-1].id == request.id:
                    self._log[-1].fault = True
                else:
                    for rec in reversed(self._log):
                        if rec.id == request.id:
                            rec.fault = True
                            break
                return fault
        return None

    async def _apply_fault(self, fault: Fault | None, request: rendering.Request) -> None:
        if fault is None:
            return
        if fault.seconds:
            await asyncio.sleep(fault.seconds)
        if fault.status is not None:
            status = fault.status
            reason = fault.reason or _DEFAULT_REASONS.get(status, "InternalError")
            if status == 409 and fault.reason is None and request.action == enums.action.CREATE:
                reason = "AlreadyExists"
            message = fault.message or f"injected fault: {status} {reason}"
            raise kmock.KubernetesError(status=status, reason=reason, message=message,
                                        details={"name": request.name, "kind": request.resource.plural})

    def _key(self, resource: kmock.resource, namespace: str | None, name: str | None) -> tuple:
        return (resource, namespace if _is_namespaced(resource) else None, name)

    def _live(self, key: tuple) -> Any:
        if key in self._objects:
            obj = self._objects[key]
            if not obj.deleted:
                return obj
        return None

    def _not_found(self, resource: kmock.resource, name: str | None) -> kmock.KubernetesError:
        return kmock.KubernetesError(
            status=404, reason="NotFound", message=f'{resource.plural} "{name}" not found',
            details={"name": name, "kind": resource.plural})

    def _conflict(self, resource: kmock.resource, name: str | None) -> kmock.KubernetesError:
        return kmock.KubernetesError(
            status=409, reason="AlreadyExists", message=f'{resource.plural} "{name}" already exists',
            details={"name": name, "kind": resource.plural})

    def _prepare_new(self, resource: kmock.resource, namespace: str | None, body: dict) -> dict:
        """Fill in what the API server sets on create (in place); return body."""
        meta = body.setdefault("metadata", {})
        if not meta.get("name"):
            if meta.get("generateName"):
                meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
            else:
                raise kmock.KubernetesError(status=422, reason="Invalid",
                                            message="metadata.name: Required value", details={})
        if _is_namespaced(resource):
            meta["namespace"] = namespace or meta.get("namespace") or "default"
        else:
            meta.pop("namespace", None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = _now()
        meta.setdefault("generation", 1)
        meta.pop("resourceVersion", None)  # stamped by the bus
        meta.pop("deletionTimestamp", None)
        body.setdefault("apiVersion", _api_version(resource))
        body.setdefault("kind", _kind(resource))
        plural = resource.plural
        if plural == "pods":
            status = body.setdefault("status", {})
            status.setdefault("phase", "Pending")
            status.setdefault("qosClass", "BestEffort")
        elif plural == "persistentvolumeclaims":
            spec = body.get("spec") or {}
            requests = ((spec.get("resources") or {}).get("requests") or {})
            status = body.setdefault("status", {})
            status.setdefault("phase", "Bound")
            status.setdefault("accessModes", spec.get("accessModes") or ["ReadWriteOnce"])
            if requests.get("storage"):
                status.setdefault("capacity", {"storage": requests["storage"]})
        elif plural == "namespaces":
            body.setdefault("status", {"phase": "Active"})
            body.setdefault("spec", {"finalizers": ["kubernetes"]})
        elif plural == "services":
            body.setdefault("status", {"loadBalancer": {}})
        elif plural == "daskclusters":
            body.setdefault("status", {})
        return body

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        if request.resource is None or request.resource.plural is None:
            return await super()._handle(request)  # discovery endpoints etc.

        await self._apply_fault(self._take_fault(request, after=False), request)

        resource = request.resource
        action = request.action
        method = str(request.method.value if hasattr(request.method, "value") else request.method).upper()

        if method == "PUT" and request.name is not None:
            response = await self._replace(request)
            await self._apply_fault(self._take_fault(request, after=True), request)
            return response

        if action == enums.action.CREATE:
            if not isinstance(request.data, dict):
                raise _bad_request("the request body must be a JSON object")
            ns = request.namespace or (request.data.get("metadata") or {}).get("namespace")
            self._prepare_new(resource, ns, request.data)
            name = request.data["metadata"]["name"]
            if self._live(self._key(resource, ns, name)) is not None:
                raise self._conflict(resource, name)
        elif action in (enums.action.FETCH, enums.action.UPDATE, enums.action.DELETE) and request.name:
            if self._live(self._key(resource, request.namespace, request.name)) is None:
                raise self._not_found(resource, request.name)
            if action == enums.action.UPDATE and isinstance(request.data, dict):
                meta = request.data.get("metadata")
                if isinstance(meta, dict):  # these are server-managed
                    for field in ("resourceVersion", "uid", "creationTimestamp", "name", "namespace"):
                        meta.pop(field, None)

        response = await super()._handle(request)
        if action != enums.action.WATCH:
            await self._apply_fault(self._take_fault(request, after=True), request)
        return response

    async def _replace(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        resource = request.resource
        key = self._key(resource, request.namespace, request.name)
        body = request.data
        if not isinstance(body, dict):
            raise _bad_request("the request body must be a JSON object")
        async with self._lock:
            obj = self._live(key)
            if obj is None:
                raise self._not_found(resource, request.name)
            old_meta = obj.raw.get("metadata") or {}
            meta = body.setdefault("metadata", {})
            want_rv = meta.get("resourceVersion")
            if want_rv and want_rv != old_meta.get("resourceVersion"):
                raise kmock.KubernetesError(
                    status=409, reason="Conflict",
                    message=(f'Operation cannot be fulfilled on {resource.plural} "{request.name}": '
                             "the object has been modified; please apply your changes to the latest "
                             "version and try again"),
                    details={"name": request.name, "kind": resource.plural})
            for field in ("uid", "creationTimestamp", "name", "namespace", "generation"):
                if field in old_meta:
                    meta[field] = old_meta[field]
            meta.pop("resourceVersion", None)
            body.setdefault("apiVersion", _api_version(resource))
            body.setdefault("kind", _kind(resource))
            if request.subresource == "status":
                body = dict(obj.raw, status=body.get("status"))
            elif "status" not in body and "status" in obj.raw:
                body["status"] = obj.raw["status"]
            obj.create(body)
            raw = obj.raw
            await self._buses[resource].put({"type": "MODIFIED", "object": raw})
            result = copy.deepcopy(obj.raw)
        return aiohttp.web.json_response(result)

    # -- serving: O(1) lookups, selectors, resourceVersions, watch replay/timeouts --

    def _known(self, resource: kmock.resource) -> bool:
        return resource in _RES_INFO or any(res == resource for res in self._get_resources())

    def _matching(self, request: rendering.Request, selector: Callable | None) -> list[dict]:
        resource, namespace = request.resource, request.namespace
        items = []
        for (res, ns, _name), obj in self._objects.items():
            if res != resource or obj.deleted:
                continue
            if namespace is not None and ns != namespace:
                continue
            raw = obj.raw
            if selector is None or selector(raw):
                items.append(raw)
        return items

    async def _serve_list(self, request: rendering.Request) -> rendering.Payload:
        if not self._known(request.resource):
            raise kmock.KubernetesResourceNotFoundError()
        selector = _make_selector(request.params)
        async with self._lock:
            items = self._matching(request, selector)
            rv = str(self._rv)
        return {
            "apiVersion": _api_version(request.resource),
            "kind": _kind(request.resource) + "List",
            "metadata": {"resourceVersion": rv},
            "items": items,
        }

    async def _serve_watch(self, request: rendering.Request):
        if not self._known(request.resource):
            raise kmock.KubernetesResourceNotFoundError()
        selector = _make_selector(request.params)
        resource, namespace = request.resource, request.namespace
        name = request.name
        try:
            timeout = float(request.params.get("timeoutSeconds") or 0)
        except ValueError:
            timeout = 0.0
        since = request.params.get("resourceVersion") or ""

        def wanted(obj: Mapping[str, Any]) -> bool:
            meta = obj.get("metadata") or {}
            if namespace is not None and meta.get("namespace") != namespace:
                return False
            if name is not None and meta.get("name") != name:
                return False
            return selector is None or selector(obj)

        yield b""  # send the headers now
        bus = self._buses[resource]
        stream = None
        async with self._lock:
            marker = await bus.mark()
            initial: list[dict] = []
            if since not in ("", "0") and since.isdigit() and int(since) >= self._evicted_rv[resource]:
                initial = [ev for rv, ev in self._history[resource] if rv > int(since)]
            else:
                initial = [{"type": "ADDED", "object": raw} for raw in self._matching(request, None)]
        try:
            for event in initial:
                if wanted(event["object"]):
                    yield event
            if self._closing:
                return
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout if timeout > 0 else None
            stream = bus.stream(since=marker)
            while True:
                if deadline is None:
                    event = await stream.__anext__()
                else:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        event = await asyncio.wait_for(stream.__anext__(), remaining)
                    except asyncio.TimeoutError:
                        break
                if event is _CLOSE:
                    break
                if isinstance(event, dict) and wanted(event.get("object") or {}):
                    yield event
        except StopAsyncIteration:
            pass
        finally:
            if stream is not None:
                with contextlib.suppress(BaseException):
                    await stream.aclose()
            with contextlib.suppress(Exception):
                await bus.unmark(marker)

    async def _serve_fetch(self, request: rendering.Request) -> rendering.Payload:
        obj = self._live(self._key(request.resource, request.namespace, request.name))
        if obj is None:
            raise self._not_found(request.resource, request.name)
        return obj.raw

    async def _serve_create(self, request: rendering.Request) -> rendering.Payload:
        meta = request.data.get("metadata") or {}
        key = self._key(request.resource, request.namespace or meta.get("namespace"), meta.get("name"))
        return self._objects[key].last.raw

    async def _serve_update(self, request: rendering.Request) -> rendering.Payload:
        return self._objects[self._key(request.resource, request.namespace, request.name)].last.raw

    async def _serve_delete(self, request: rendering.Request) -> rendering.Payload:
        return self._objects[self._key(request.resource, request.namespace, request.name)].last.raw

    # -- in-process API (for the kubelet and for tests) --

    async def obj_create(self, resource: kmock.resource, body: dict, namespace: str | None = None) -> dict:
        body = copy.deepcopy(body)
        self._prepare_new(resource, namespace, body)
        key = self._key(resource, body["metadata"].get("namespace"), body["metadata"]["name"])
        async with self._lock:
            if self._live(key) is not None:
                raise self._conflict(resource, key[2])
            if key not in self._objects:
                self._objects[key] = body
            else:
                self._objects[key].create(body)
            await self._buses[resource].put({"type": "ADDED", "object": self._objects[key].last.raw})
            return copy.deepcopy(self._objects[key].raw)

    async def obj_patch(self, resource: kmock.resource, namespace: str | None, name: str, patch: dict) -> dict:
        key = self._key(resource, namespace, name)
        async with self._lock:
            obj = self._live(key)
            if obj is None:
                raise self._not_found(resource, name)
            obj.patch(copy.deepcopy(patch))
            await self._buses[resource].put({"type": "MODIFIED", "object": obj.raw})
            return copy.deepcopy(obj.raw)

    async def obj_delete(self, resource: kmock.resource, namespace: str | None, name: str) -> dict:
        key = self._key(resource, namespace, name)
        async with self._lock:
            obj = self._live(key)
            if obj is None:
                raise self._not_found(resource, name)
            obj.delete()
            last = obj.last.raw
            await self._buses[resource].put({"type": "DELETED", "object": last})
            return copy.deepcopy(last)

    async def subscribe(self, resource: kmock.resource, namespace: str | None = None,
                        ready: asyncio.Event | None = None):
        """In-process watch: ADDED for existing objects, then every event; ends on close.

        ``ready`` (if given) is set once the subscription is registered, i.e. no later
        event can be missed.
        """
        bus = self._buses[resource]
        async with self._lock:
            marker = await bus.mark()
            existing = []
            for (res, ns, _name), obj in self._objects.items():
                if res == resource and not obj.deleted and (namespace is None or ns == namespace):
                    existing.append(obj.raw)
        if ready is not None:
            ready.set()
        stream = bus.stream(since=marker)
        try:
            for raw in existing:
                yield {"type": "ADDED", "object": raw}
            if self._closing:
                return
            async for event in stream:
                if event is _CLOSE:
                    return
                if not isinstance(event, dict):
                    continue
                if namespace is not None and (event["object"].get("metadata") or {}).get("namespace") != namespace:
                    continue
                yield event
        finally:
            with contextlib.suppress(BaseException):
                await stream.aclose()
            with contextlib.suppress(Exception):
                await bus.unmark(marker)

    async def end_streams(self) -> None:
        self._closing = True
        for bus in list(self._buses.values()):
            await kmock.Bus.put(bus, _CLOSE)  # bypass stamping


class _QuickShutdownServer(aiohttp.test_utils.RawTestServer):
    """RawTestServer whose runner does not wait 60 s for open (watch) handlers."""

    async def _make_runner(self, debug: bool = True, **kwargs: Any) -> aiohttp.web_runner.ServerRunner:
        kwargs.setdefault("access_log", None)  # KubeAPI keeps its own request log
        srv = aiohttp.web_server.Server(self._handler, loop=self._loop, debug=debug, **kwargs)
        kwargs.pop("access_log")
        return aiohttp.web_runner.ServerRunner(srv, debug=debug, shutdown_timeout=1.0, **kwargs)


# --------------------------------------------------------------------------------------
# Public: the API server
# --------------------------------------------------------------------------------------


class KubeAPI:
    """A kmock-based Kubernetes API emulator on http://127.0.0.1:PORT.

    Use as ``async with KubeAPI() as api:`` or ``api = await KubeAPI().start()`` +
    ``await api.close()``.  ``api.emulator`` is the underlying kmock handler (its
    ``objects``, ``resources`` and reaction DSL remain usable).
    """

    def __init__(self, host: str = "127.0.0.1", port: int | None = None, *, history_size: int = 50_000) -> None:
        self._host = host
        self._port = port
        self.emulator = _Emulator(history_size=history_size)
        self._server: kmock.Server | None = None
        self._entered = False

    # -- lifecycle --

    async def start(self) -> "KubeAPI":
        if self._server is not None:
            raise RuntimeError("KubeAPI already started")
        await self.emulator.__aenter__()
        self._entered = True
        self._server = kmock.Server(self.emulator, host=self._host, port=self._port,
                                    server_cls=_QuickShutdownServer)
        await self._server.__aenter__()
        return self

    async def close(self) -> None:
        if self._server is not None:
            await self.emulator.end_streams()
            await asyncio.sleep(0)
            server, self._server = self._server, None
            await server.__aexit__(None, None, None)
        if self._entered:
            self._entered = False
            await self.emulator.__aexit__(None, None, None)

    async def __aenter__(self) -> "KubeAPI":
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    @property
    def host(self) -> str:
        return self._server.host if self._server else self._host

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("KubeAPI is not started")
        return self._server.port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def resource_version(self) -> int:
        return self.emulator._rv

    def write_kubeconfig(self, path: str | os.PathLike, namespace: str = "default") -> str:
        """Write a kubeconfig for this server (plain HTTP, no auth); return its path."""
        path = os.fspath(path)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "kmock", "cluster": {"server": self.url}}],
            "users": [{"name": "kmock", "user": {"token": "kmock-test-token"}}],
            "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "kmock",
                                                       "namespace": namespace}}],
            "current-context": "kmock",
            "preferences": {},
        }
        with open(path, "w") as f:
            json.dump(config, f, indent=2)  # JSON is valid YAML
        return path

    # -- state inspection --

    def objects(self, resource: str | kmock.resource, namespace: str | None = None) -> list[dict]:
        """Deep copies of the live objects of a resource ('pods', 'v1/pods', ...)."""
        res = _resolve(resource)
        out = []
        for (r, ns, _name), obj in self.emulator.objects.items():
            if r == res and not obj.deleted and (namespace is None or ns == namespace):
                out.append(copy.deepcopy(obj.raw))
        return out

    def names(self, resource: str | kmock.resource, namespace: str | None = None) -> list[str]:
        return sorted(o["metadata"]["name"] for o in self.objects(resource, namespace))

    def get(self, resource: str | kmock.resource, namespace: str | None, name: str) -> dict | None:
        res = _resolve(resource)
        obj = self.emulator._live(self.emulator._key(res, namespace, name))
        return None if obj is None else copy.deepcopy(obj.raw)

    async def create(self, resource: str | kmock.resource, body: dict, namespace: str | None = None) -> dict:
        """Create an object in-process (fires watch events); raises KubernetesError 409."""
        return await self.emulator.obj_create(_resolve(resource), body, namespace)

    async def patch(self, resource: str | kmock.resource, namespace: str | None, name: str, patch: dict) -> dict:
        """JSON-merge-patch an object in-process (dicts merge, lists replace, None deletes)."""
        return await self.emulator.obj_patch(_resolve(resource), namespace, name, patch)

    async def delete(self, resource: str | kmock.resource, namespace: str | None, name: str) -> dict:
        return await self.emulator.obj_delete(_resolve(resource), namespace, name)

    def subscribe(self, resource: str | kmock.resource, namespace: str | None = None):
        """Async iterator of watch events (in-process, no HTTP): existing objects as ADDED first."""
        return self.emulator.subscribe(_resolve(resource), namespace)

    # -- request log --

    @property
    def requests(self) -> list[RequestRecord]:
        return list(self.emulator._log)

    def count(self, method: str | None = None, resource: str | None = None, *,
              namespace: str | None = None, name: str | None = None,
              status: int | None = None) -> int:
        """Count logged requests; ``method`` is an HTTP method or a verb like in ``inject``."""
        http_method, action = _parse_method_spec(method)
        plural = _resolve(resource).plural if resource else None
        n = 0
        for rec in self.emulator._log:
            if http_method is not None and rec.method != http_method:
                continue
            if action is not None and rec.action != action:
                continue
            if plural is not None and rec.resource != plural:
                continue
            if namespace is not None and rec.namespace != namespace:
                continue
            if name is not None and rec.name != name:
                continue
            if status is not None and rec.status != status:
                continue
            n += 1
        return n

    def clear_requests(self) -> None:
        self.emulator._log.clear()

    # -- fault injection --

    def inject(self, method: str | None, resource: str | None, status: int = 500, times: int | None = 1, *,
               namespace: str | None = None, name: str | None = None, reason: str | None = None,
               message: str | None = None, after: bool = False) -> Fault:
        """Make the next ``times`` matching requests fail with ``status`` (None = forever).

        ``method``: HTTP method ('POST', 'DELETE', ...) or verb ('create', 'list', 'watch',
        'fetch', 'update', 'replace', 'delete'); ``resource``: 'pods', 'v1/pods', ...
        With ``after=True`` the real operation happens first and then the error is returned.
        """
        http_method, action = _parse_method_spec(method)
        fault = Fault(method=http_method, action=action, resource=_resolve(resource) if resource else None,
                      namespace=namespace, name=name, status=status, reason=reason, message=message,
                      times=times, after=after)
        self.emulator._faults.append(fault)
        return fault

    def inject_delay(self, method: str | None, resource: str | None, seconds: float, times: int | None = 1, *,
                     namespace: str | None = None, name: str | None = None, after: bool = False,
                     status: int | None = None) -> Fault:
        """Make the next ``times`` matching requests hang ``seconds`` (then proceed, or fail
        with ``status`` if given).  ``after=True``: the operation is applied first and the
        response hangs (the "server did it but the client timed out" case)."""
        http_method, action = _parse_method_spec(method)
        fault = Fault(method=http_method, action=action, resource=_resolve(resource) if resource else None,
                      namespace=namespace, name=name, status=status, seconds=seconds, times=times,
                      after=after)
        self.emulator._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        self.emulator._faults.clear()


# --------------------------------------------------------------------------------------
# Public: the test kubelet
# --------------------------------------------------------------------------------------

PodHook = Callable[[dict], "Awaitable[dict | None] | dict | None"]


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


class TestKubelet:
    """Flips Pending pods to Running; emits v1 Events; runs optional start/stop hooks.

    ``on_start(pod) -> dict | None`` (sync or async) runs before the pod is marked
    Running; a returned dict is merged into ``status`` (e.g. ``{"podIP": "127.0.0.2"}``).
    If it raises, the pod is marked Failed (container terminated, exit code 1).
    ``on_stop(pod)`` runs when a pod this kubelet started is deleted.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, api: KubeAPI, *, node_name: str = "kmock-node", pod_ip: str = "127.0.0.1",
                 host_ip: str = "127.0.0.1", startup_delay: float = 0.0, emit_events: bool = True,
                 namespace: str | None = None, on_start: PodHook | None = None,
                 on_stop: PodHook | None = None) -> None:
        self.api = api
        self.node_name = node_name
        self.pod_ip = pod_ip
        self.host_ip = host_ip
        self.startup_delay = startup_delay
        self.emit_events = emit_events
        self.namespace = namespace
        self.on_start = on_start
        self.on_stop = on_stop
        self.started: dict[str, tuple[str, str]] = {}  # uid -> (namespace, name), currently running
        self.started_total = 0
        self.failed_total = 0
        self._tasks: dict[str, asyncio.Task] = {}  # uid -> starting task
        self._main: asyncio.Task | None = None
        self._ready = asyncio.Event()

    async def start(self) -> "TestKubelet":
        self._main = asyncio.create_task(self._run(), name="test-kubelet")
        await self._ready.wait()
        return self

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        if self._main is not None:
            tasks.append(self._main)
            self._main = None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()

    async def __aenter__(self) -> "TestKubelet":
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    async def _run(self) -> None:
        stream = self.api.emulator.subscribe(_resolve("v1/pods"), self.namespace, ready=self._ready)
        try:
            async for event in stream:
                self._on_event(event["type"], event["object"])
        finally:
            self._ready.set()
            with contextlib.suppress(BaseException):
                await stream.aclose()

    def _on_event(self, typ: str, pod: dict) -> None:
        meta = pod.get("metadata") or {}
        uid = meta.get("uid")
        if typ == "DELETED":
            task = self._tasks.pop(uid, None)
            if task is not None:
                task.cancel()
            if uid in self.started:
                del self.started[uid]
                if self.on_stop is not None:
                    asyncio.create_task(self._call_stop(pod))
            return
        phase = (pod.get("status") or {}).get("phase", "Pending")
        if phase != "Pending" or meta.get("deletionTimestamp") or uid in self._tasks or uid in self.started:
            return
        node = (pod.get("spec") or {}).get("nodeName")
        if node and node != self.node_name:
            return
        self._tasks[uid] = asyncio.create_task(self._start_pod(pod), name=f"kubelet-{meta.get('name')}")

    async def _call_stop(self, pod: dict) -> None:
        with contextlib.suppress(Exception):
            await _maybe_await(self.on_stop(pod))

    async def emit_event(self, pod: dict, reason: str, message: str, *, type: str = "Normal",
                         component: str = "kubelet", field_path: str | None = None) -> dict:
        """Create a core v1 Event about ``pod`` (what kubespawner's progress() shows)."""
        meta = pod["metadata"]
        now = _now()
        involved = {"kind": "Pod", "apiVersion": "v1", "namespace": meta.get("namespace"),
                    "name": meta["name"], "uid": meta.get("uid"),
                    "resourceVersion": meta.get("resourceVersion")}
        if field_path:
            involved["fieldPath"] = field_path
        body = {
            "metadata": {"name": f"{meta['name']}.{secrets.token_hex(8)}", "namespace": meta.get("namespace")},
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "type": type,
            "source": {"component": component, "host": self.node_name} if component == "kubelet"
            else {"component": component},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "eventTime": None,
            "count": 1,
            "reportingComponent": component,
            "reportingInstance": self.node_name if component == "kubelet" else "",
        }
        return await self.api.create("v1/events", body, meta.get("namespace"))

    async def _start_pod(self, pod: dict) -> None:
        meta = pod["metadata"]
        ns, name, uid = meta.get("namespace"), meta["name"], meta.get("uid")
        containers = (pod.get("spec") or {}).get("containers") or []
        try:
            if self.emit_events:
                await self.emit_event(pod, "Scheduled", f"Successfully assigned {ns}/{name} to {self.node_name}",
                                      component="default-scheduler")
            if self.startup_delay:
                await asyncio.sleep(self.startup_delay)
            if self.emit_events:
                for c in containers:
                    fp = f"spec.containers{{{c.get('name')}}}"
                    await self.emit_event(pod, "Pulled", f'Container image "{c.get("image")}" already present on machine',
                                          field_path=fp)
                    await self.emit_event(pod, "Created", f"Created container {c.get('name')}", field_path=fp)
            extra: dict | None = None
            failed = False
            if self.on_start is not None:
                try:
                    extra = await _maybe_await(self.on_start(pod))
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # the "container" failed to start
                    failed = True
                    extra = {"message": f"on_start hook failed: {e!r}"}
            now = _now()
            if failed:
                status = self._failed_status(containers, now, 1, "Error")
                status.update(extra or {})
                self.failed_total += 1
            else:
                status = self._running_status(containers, now)
                status.update(extra or {})
            if not failed:
                self.started[uid] = (ns, name)
            try:
                await self.api.patch("v1/pods", ns, name, {"spec": {"nodeName": self.node_name}, "status": status})
            except kmock.KubernetesError:
                self.started.pop(uid, None)
                return  # deleted meanwhile
            if not failed:
                self.started_total += 1
                if self.emit_events:
                    for c in containers:
                        await self.emit_event(pod, "Started", f"Started container {c.get('name')}",
                                              field_path=f"spec.containers{{{c.get('name')}}}")
        except kmock.KubernetesError:
            pass  # the pod (or namespace) went away
        finally:
            self._tasks.pop(uid, None)

    def _running_status(self, containers: list[dict], now: str) -> dict:
        conds = [{"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": now}
                 for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")]
        return {
            "phase": "Running",
            "podIP": self.pod_ip,
            "podIPs": [{"ip": self.pod_ip}],
            "hostIP": self.host_ip,
            "hostIPs": [{"ip": self.host_ip}],
            "startTime": now,
            "conditions": conds,
            "containerStatuses": [
                {"name": c.get("name"), "ready": True, "started": True, "restartCount": 0,
                 "image": c.get("image"), "imageID": f"docker-pullable://{c.get('image')}",
                 "containerID": f"containerd://{secrets.token_hex(32)}",
                 "state": {"running": {"startedAt": now}}, "lastState": {}}
                for c in containers
            ],
        }

    def _failed_status(self, containers: list[dict], now: str, exit_code: int, reason: str) -> dict:
        return {
            "phase": "Succeeded" if exit_code == 0 else "Failed",
            "podIP": self.pod_ip,
            "hostIP": self.host_ip,
            "conditions": [{"type": "Ready", "status": "False", "lastProbeTime": None,
                            "lastTransitionTime": now, "reason": "PodCompleted"}],
            "containerStatuses": [
                {"name": c.get("name"), "ready": False, "started": False, "restartCount": 0,
                 "image": c.get("image"), "imageID": "",
                 "state": {"terminated": {"exitCode": exit_code, "reason": reason,
                                          "startedAt": now, "finishedAt": now}},
                 "lastState": {}}
                for c in containers
            ],
        }

    async def terminate(self, namespace: str, name: str, exit_code: int = 0, reason: str | None = None) -> dict:
        """Mark a pod's containers as exited (phase Succeeded/Failed) like a real kubelet."""
        pod = self.api.get("v1/pods", namespace, name)
        if pod is None:
            raise KeyError(f"no pod {namespace}/{name}")
        containers = (pod.get("spec") or {}).get("containers") or []
        status = self._failed_status(containers, _now(), exit_code,
                                     reason or ("Completed" if exit_code == 0 else "Error"))
        uid = pod["metadata"].get("uid")
        self.started.pop(uid, None)
        return await self.api.patch("v1/pods", namespace, name, {"status": status})


# --------------------------------------------------------------------------------------
# Public: kubespawner glue
# --------------------------------------------------------------------------------------


async def wait_until(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.01) -> Any:
    """Poll ``predicate`` (sync or async) until truthy; raise TimeoutError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = await _maybe_await(predicate())
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


async def reset_kubespawner_clients() -> None:
    """Close and forget kubespawner's shared API clients (all loops; closes this loop's)."""
    try:
        from kubespawner import clients
    except ImportError:
        return
    loop = asyncio.get_running_loop()
    tasks = [t for t in asyncio.all_tasks(loop)
             if getattr(t.get_coro(), "__qualname__", "").endswith("shared_client.<locals>.close_client_task")]
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    for key, client in list(clients._client_cache.items()):
        if key[0] is loop:
            with contextlib.suppress(Exception):
                await client.api_client.close()
        clients._client_cache.pop(key, None)


async def configure_kubespawner(api: KubeAPI, kubeconfig_path: str | os.PathLike) -> str:
    """Point kubespawner (and kubernetes_asyncio's default config) at ``api``.

    Writes the kubeconfig, sets ``KUBECONFIG``, patches kubernetes_asyncio's import-time
    default location, clears ``kubespawner.clients.load_config``'s cache, loads the config
    and drops cached shared clients.  Call before constructing spawners.
    """
    path = api.write_kubeconfig(kubeconfig_path)
    os.environ["KUBECONFIG"] = path
    from kubernetes_asyncio.config import kube_config
    kube_config.KUBE_CONFIG_DEFAULT_LOCATION = path
    await kube_config.load_kube_config(config_file=path)
    try:
        from kubespawner import clients
    except ImportError:
        return path
    clients.load_config.cache_clear()
    await reset_kubespawner_clients()
    return path


async def reset_kubespawner(spawner_class: type | None = None) -> None:
    """Stop and clear KubeSpawner's class-level reflectors; drop shared clients."""
    try:
        from kubespawner import KubeSpawner
    except ImportError:
        return
    classes = {KubeSpawner}
    if spawner_class is not None:
        classes.add(spawner_class)
    for cls in classes:
        reflectors = cls.reflectors
        items = list(reflectors.items())
        reflectors.clear()
        for _key, reflector in items:
            with contextlib.suppress(Exception):
                await reflector.stop()
    await reset_kubespawner_clients()


class FakeUser:
    """The bits of ``jupyterhub.user.User`` that Spawner/KubeSpawner read."""

    def __init__(self, name: str, id: int = 1, groups: Iterable[Any] = ()) -> None:
        from jupyterhub.objects import Server
        self.name = name
        self.id = id
        self.escaped_name = name
        self.groups = list(groups)
        self.server = Server()
        self.spawners: dict[str, Any] = {}

    @property
    def url(self) -> str:
        return f"/user/{self.name}/"

    def progress_url(self, server_name: str = "") -> str:
        return f"/hub/api/users/{self.name}/servers/{server_name}/progress"


class FakeOrmSpawner:
    """Stand-in for ``jupyterhub.orm.Spawner``: ``Spawner.name`` is read from it."""

    def __init__(self, name: str = "") -> None:
        self.name = name
        self.display_name = name
        self.server = None
        self.last_activity = None
        self.user_options = None
        self.state = None


def make_spawner(username: str, *, servername: str = "", user_id: int = 1, config: Any = None,
                 spawner_class: type | None = None, hub: Any = None, **traits: Any):
    """A plain ``KubeSpawner`` built as kubespawner's own tests do, with test defaults.

    Defaults (override via ``traits`` or ``config``): namespace 'default',
    cmd ['jupyterhub-singleuser'], image 'quay.io/jupyter/base-notebook:latest',
    start_timeout 10, k8s_api_request_timeout 3, k8s_api_request_retry_timeout 10,
    api_token 'abc123', oauth_client_id 'unused'.
    """
    from jupyterhub.objects import Hub
    from traitlets.config import Config

    if spawner_class is None:
        from kubespawner import KubeSpawner as spawner_class  # noqa: N813
    cfg = Config()
    cls_name = spawner_class.__name__
    defaults = dict(namespace="default", cmd=["jupyterhub-singleuser"],
                    image="quay.io/jupyter/base-notebook:latest", start_timeout=10,
                    k8s_api_request_timeout=3, k8s_api_request_retry_timeout=10)
    for key, value in defaults.items():
        cfg[cls_name][key] = value
    if config is not None:
        cfg.merge(config)
    traits.setdefault("api_token", "abc123")
    traits.setdefault("oauth_client_id", "unused")
    traits.setdefault("orm_spawner", FakeOrmSpawner(servername))  # Spawner.name comes from here
    return spawner_class(hub=hub if hub is not None else Hub(), user=FakeUser(username, id=user_id),
                         config=cfg, **traits)
