"""``ServiceHosts``: cluster DNS for pods, as an ``/etc/hosts`` file (test equipment).

Every Service whose selector picks a running pod with an address is written as that
pod's address under the names cluster DNS answers (``<svc>``, ``<svc>.<ns>``,
``<svc>.<ns>.svc``, ``<svc>.<ns>.svc.cluster.local``); ``extra`` adds fixed entries (the
deployment's hub and proxy, which are processes, not API objects). :class:`.pods.PodRunner`
binds the file at each pod's ``/etc/hosts``; it is rewritten in place (the bind keeps the
same file), every ``interval`` s. Services without a selector or a ready pod are left out,
so their names do not resolve, as with a headless Service without endpoints.
"""

from __future__ import annotations

import asyncio
import contextlib
import os


def _selects(selector, pod):
    labels = pod["metadata"].get("labels") or {}
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


class ServiceHosts:
    def __init__(self, api, path, *, extra=None, interval=0.3):
        self.api, self.path, self.extra, self.interval = api, str(path), dict(extra or {}), interval
        self._task = None
        self._text = None
        self.write()

    def entries(self):
        """``{name: address}`` for every Service that resolves now."""
        out = dict(self.extra)
        pods = [p for p in self.api.objects("v1/pods") if (p.get("status") or {}).get("phase") == "Running"
                and (p.get("status") or {}).get("podIP")]
        for service in self.api.objects("v1/services"):
            meta = service["metadata"]
            ns, name = meta["namespace"], meta["name"]
            match = [p for p in pods if p["metadata"]["namespace"] == ns
                     and _selects((service.get("spec") or {}).get("selector"), p)]
            if match:
                for host in (name, f"{name}.{ns}", f"{name}.{ns}.svc", f"{name}.{ns}.svc.cluster.local"):
                    out[host] = match[0]["status"]["podIP"]
        return out

    def write(self):
        lines = ["127.0.0.1 localhost", *(f"{address} {host}" for host, address in sorted(self.entries().items()))]
        text = "\n".join(lines) + "\n"
        if text != self._text:
            mode = "r+" if os.path.exists(self.path) else "w"
            with open(self.path, mode) as f:  # in place: pods bind this very file
                f.seek(0)
                f.write(text)
                f.truncate()
            os.chmod(self.path, 0o644)
            self._text = text

    async def start(self):
        async def loop():
            while True:
                with contextlib.suppress(Exception):
                    self.write()
                await asyncio.sleep(self.interval)

        self._task = asyncio.create_task(loop(), name="service-hosts")
        return self

    async def stop(self):
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
