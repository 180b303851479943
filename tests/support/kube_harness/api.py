"""``KubeAPI``: the emulator served over HTTP, with state inspection, the request log and fault injection."""

from __future__ import annotations

import asyncio
import copy
import json
import os
from typing import Any

import aiohttp.test_utils
import aiohttp.web_runner
import aiohttp.web_server
import kmock

from .emulator import _Emulator
from .faults import Fault, RequestRecord, _parse_method_spec
from .resources import _resolve


class _QuickShutdownServer(aiohttp.test_utils.RawTestServer):
    """RawTestServer whose runner does not wait 60 s for open (watch) handlers."""

    async def _make_runner(self, debug: bool = True, **kwargs: Any) -> aiohttp.web_runner.ServerRunner:
        kwargs.setdefault("access_log", None)  # KubeAPI keeps its own request log
        srv = aiohttp.web_server.Server(self._handler, loop=self._loop, debug=debug, **kwargs)
        kwargs.pop("access_log")
        return aiohttp.web_runner.ServerRunner(srv, debug=debug, shutdown_timeout=1.0, **kwargs)


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
