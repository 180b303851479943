"""``_Emulator``: kmock 0.8's ``KubernetesEmulator`` with the gaps that matter to kubespawner filled in.

* ``?watch=True`` (what kubernetes_asyncio sends) is lower-cased, so it is a watch
  and not a plain list;
* creates get ``metadata.uid``, ``namespace``, ``creationTimestamp``, ``generation``,
  ``generateName`` expansion, and a ``status`` (pods: ``phase: Pending``; PVCs:
  ``Bound``; namespaces: ``Active``);
* every write (create/patch/replace/delete) gets a monotonic
  ``metadata.resourceVersion``; list/watch semantics live in ``watch.py``;
* ``PUT`` (replace) works; ``/api/v1/namespaces[/NAME]`` is parsed as the
  cluster-scoped ``namespaces`` resource (kmock's parser breaks on it);
* 404/409 errors carry the real Kubernetes reasons/messages
  (``NotFound``/``AlreadyExists``, ``pods "x" already exists``);
* injected faults (``faults.py``) are applied before and/or after the real operation;
* request dispatch is O(1) per request (kmock 0.8 scans the whole request history
  for every reaction, which is quadratic under load).
"""

from __future__ import annotations

import asyncio
import collections
import copy
import json
import re
import secrets
import time
import uuid
from typing import Any

import aiohttp.web
import attrs
import kmock
from kmock._internal import dsl, enums, parsing, rendering

from .faults import Fault, RequestRecord
from .resources import (
    _DEFAULT_REASONS,
    _RES_OBJS,
    _VERBS,
    RESOURCES,
    _api_version,
    _bad_request,
    _is_namespaced,
    _kind,
    _now,
)
from .watch import _BusDict, _ListWatchMixin


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


_NS_PATH = re.compile(r"^/api/v1/namespaces(?:/([^/]+)(?:/(status|finalize))?)?/?$")


@attrs.define(kw_only=True)
class _Emulator(_ListWatchMixin, kmock.KubernetesEmulator, _FastDispatch):
    """kmock's KubernetesEmulator with the gaps that matter to kubespawner filled in."""

    history_size: int = 50_000

    _rv: int = attrs.field(default=0, init=False)
    _history: dict[Any, collections.deque] = attrs.field(
        factory=lambda: collections.defaultdict(collections.deque), init=False)
    _evicted_rv: dict[Any, int] = attrs.field(factory=lambda: collections.defaultdict(int), init=False)
    _faults: list[Fault] = attrs.field(factory=list, init=False)
    _log: list[RequestRecord] = attrs.field(factory=list, init=False)
    _closing: bool = attrs.field(default=False, init=False)
    pod_logs: dict = attrs.field(factory=dict, init=False)  # (namespace, pod) -> text, for pods/NAME/log

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._buses = _BusDict(self)
        for key, (kind, singular, namespaced, subresources) in RESOURCES.items():
            self.resources[key] = kmock.ResourceInfo(
                kind=kind, singular=singular, namespaced=namespaced,
                verbs=set(_VERBS), subresources=set(subresources),
            )

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
                body=copy.deepcopy(request.data) if raw_request.method in ("POST", "PUT", "PATCH")
                and isinstance(request.data, dict) else None,
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

        if resource.plural == "pods" and request.subresource == "log" and method == "GET":
            if self._live(self._key(resource, request.namespace, request.name)) is None:
                raise self._not_found(resource, request.name)
            return aiohttp.web.Response(text=self.pod_logs.get((request.namespace, request.name), ""),
                                        content_type="text/plain")

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

    # -- serving single objects (list/watch: see watch.py) --

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
