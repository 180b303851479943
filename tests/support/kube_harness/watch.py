"""List/watch serving: resourceVersion stamping, event history, watch replay and timeouts.

Every write event published on a resource's bus is stamped with a monotonic
``metadata.resourceVersion`` and kept in a bounded per-resource history, so a watch
that names a ``resourceVersion`` replays the events it missed (kubespawner's
reflectors lose nothing in the list->watch gap).  Lists report the current
resourceVersion; list and watch honour ``labelSelector``/``fieldSelector``; watches
honour ``timeoutSeconds``.  ``subscribe`` is the in-process watch the test kubelet uses.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs
import kmock
from kmock._internal import rendering

from .resources import _RES_INFO, _api_version, _kind
from .selectors import _make_selector

if TYPE_CHECKING:
    from .emulator import _Emulator

_CLOSE = object()  # bus sentinel: ends watch streams and kubelet subscriptions


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


class _ListWatchMixin:
    """List/watch/subscribe methods of ``_Emulator`` (listed before kmock's emulator in its bases).

    Uses the emulator's kmock state (``_lock``, ``_objects``, ``_buses``, a ``_BusDict``)
    and its ``_rv``, ``_history``, ``_evicted_rv``, ``_closing`` and ``history_size`` fields.
    """

    __slots__ = ()

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
