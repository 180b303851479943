"""The test cluster's network: a loopback address per pod, Services by name.

Each deployment takes a random ``127.A.B.0/24`` (any 127.x.y.z binds on Linux), so pods
keep the ports the chart gives them (hub 8081, proxy 8000/8001, servers 8888) without
meeting another test's. There is no cluster DNS here and ``/etc/hosts`` is left alone:
the hub's configuration is pointed at pod addresses instead, by one file the harness
mounts into the chart's ``jupyterhub_config.d`` (loaded after ``hub.config``, before
``hub.extraConfig``; :func:`cluster_network_config`). It rewrites exactly these settings,
each ``http://<service>[:<port>]`` to ``http://<pod address>:<target port>``:
``ConfigurableHTTPProxy.api_url``, ``JupyterHub.hub_connect_url``, ``JupyterHub.hub_bind_url``
(``http://:8081``: all addresses, here the hub pod's), the managed services' ``url``,
``command`` and ``environment`` (the culler's ``localhost:8081``, the tasks service's bind
address) and ``OGGMHubSpawner.tasks_url``. User pods reach the hub at the address the
spawner gives them (``hub_connect_url``).
"""

from __future__ import annotations

import random


class Network:
    """Addresses of one deployment's pods, and its Services."""

    def __init__(self):
        self.prefix = f"127.{random.randint(100, 250)}.{random.randint(1, 250)}"
        self._next = 10
        self.services = {}  # name -> (pod address, {port: target port})

    def address(self, last):
        return f"{self.prefix}.{last}"

    def allocate(self):
        """A fresh pod address."""
        if self._next > 254:
            raise RuntimeError(f"no pod address left in {self.prefix}.0/24")
        self._next += 1
        return self.address(self._next - 1)

    def add_service(self, name, address, ports):
        self.services[name] = (address, dict(ports))

    def resolve(self, url):
        """``url`` with a Service's name and port replaced by its pod's address and target port."""
        for name, (address, ports) in self.services.items():
            for scheme in ("http://", "https://"):
                head = f"{scheme}{name}"
                if url.startswith(head) and url[len(head):len(head) + 1] in ("", ":", "/"):
                    rest = url[len(head):]
                    port = 80
                    if rest.startswith(":"):
                        digits = rest[1:].split("/", 1)[0]
                        port, rest = int(digits), rest[1 + len(digits):]
                    return f"{scheme}{address}:{ports.get(port, port)}{rest}"
        return url

    def cluster_network_config(self, hub_address):
        """The ``jupyterhub_config.d`` file that points the hub's config at pod addresses."""
        return f'''# The test cluster's network (tests/support/deployment/network.py): no cluster DNS,
# so Service names in the hub's settings become pod addresses.
SERVICES = {self.services!r}
HUB_ADDRESS = {hub_address!r}


def _resolve(value):
    for name, (address, ports) in SERVICES.items():
        for scheme in ("http://", "https://"):
            head = scheme + name
            if value.startswith(head) and value[len(head):len(head) + 1] in ("", ":", "/"):
                rest = value[len(head):]
                port = 80
                if rest.startswith(":"):
                    digits = rest[1:].split("/", 1)[0]
                    port, rest = int(digits), rest[1 + len(digits):]
                return f"{{scheme}}{{address}}:{{ports.get(port, port)}}{{rest}}"
    return value.replace("http://localhost:", f"http://{{HUB_ADDRESS}}:")  # inside the hub pod


c.ConfigurableHTTPProxy.api_url = _resolve(c.ConfigurableHTTPProxy.api_url)
c.JupyterHub.hub_connect_url = _resolve(c.JupyterHub.hub_connect_url)
c.JupyterHub.hub_bind_url = c.JupyterHub.hub_bind_url.replace("http://:", f"http://{{HUB_ADDRESS}}:")
for _service in c.JupyterHub.services:
    if "url" in _service:
        _service["url"] = _resolve(_service["url"])
    if "command" in _service:
        _service["command"] = ["--url=" + _resolve(part[6:]) if part.startswith("--url=") else part
                               for part in _service["command"]]
    _env = _service.get("environment") or {{}}
    for _key, _value in list(_env.items()):
        _env[_key] = HUB_ADDRESS if _value == "0.0.0.0" else _resolve(_value)
if "tasks_url" in c.OGGMHubSpawner:
    c.OGGMHubSpawner.tasks_url = _resolve(c.OGGMHubSpawner.tasks_url)
'''
