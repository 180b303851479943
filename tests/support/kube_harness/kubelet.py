"""``TestKubelet``: flips pending pods to Running and emits the v1 Events a real kubelet would.

It subscribes in-process to the emulator's pod event bus (no polling, O(1) per pod
event), emits ``Scheduled``/``Pulled``/``Created``/``Started`` Events and marks
pending pods ``Running`` (podIP/hostIP 127.0.0.1, ready containers, Ready
conditions).  Hooks ``on_start(pod)`` / ``on_stop(pod)`` are where a later version can
run the pod's command as a local process (``on_start`` may return status overrides
such as ``{"podIP": ...}``; :class:`.pods.PodRunner`'s hooks run the pod's containers as
local processes).  ``terminate()`` marks a pod's containers as exited so
``KubeSpawner.poll()`` sees an exit code.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import secrets
from collections.abc import Awaitable, Callable  # noqa: F401 (Awaitable: in PodHook's forward reference)
from typing import Any

import kmock

from .api import KubeAPI
from .resources import _now, _resolve

PodHook = Callable[[dict], "Awaitable[dict | None] | dict | None"]


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


class TestKubelet:
    """Flips Pending pods to Running; emits v1 Events; runs optional start/stop hooks.

    ``on_start(pod) -> dict | None`` (sync or async) runs before the pod is marked
    Running; a returned dict is merged into ``status`` (e.g. ``{"podIP": "127.0.0.2"}``).
    If it raises, the pod is marked Failed (container terminated, exit code 1, or the
    exception's ``status`` dict merged in: see :class:`.pods.PodRunner`).
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
        self.gave_up: set[str] = set()  # uids whose start failed: not tried again (no back-off loop)
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
            self.gave_up.discard(uid)
            if uid in self.started:
                del self.started[uid]
                if self.on_stop is not None:
                    asyncio.create_task(self._call_stop(pod))
            return
        phase = (pod.get("status") or {}).get("phase", "Pending")
        if (phase != "Pending" or meta.get("deletionTimestamp") or uid in self._tasks or uid in self.started
                or uid in self.gave_up):
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
                    # a hook's own account of the failure (reason, message, container statuses)
                    extra = getattr(e, "status", None) or {"message": f"on_start hook failed: {e!r}"}
            now = _now()
            if failed:
                status = self._failed_status(containers, now, 1, "Error")
                status.update(extra or {})
                self.failed_total += 1
                self.gave_up.add(uid)
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
