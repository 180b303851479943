"""KubeSpawner glue: point kubespawner at a ``KubeAPI``, reset its process-wide state, build spawners.

KubeSpawner talks to the API through a process-wide, lru-cached
``kubespawner.clients.load_config()`` (it reads the kubeconfig named by ``KUBECONFIG``
- kubernetes_asyncio captures that variable *at import time* in
``kube_config.KUBE_CONFIG_DEFAULT_LOCATION``) and through shared clients cached per
event loop in ``kubespawner.clients._client_cache``.  Its pod/event reflectors are
class-level singletons in ``KubeSpawner.reflectors``.

``configure_kubespawner`` writes the kubeconfig, sets ``KUBECONFIG`` (and patches the
import-time default of kubernetes_asyncio), clears the ``load_config`` cache, loads
the config into kubernetes_asyncio's default ``Configuration`` and drops cached
shared clients, so it works whether or not kubespawner was imported before.
``reset_kubespawner`` stops and clears ``KubeSpawner.reflectors`` and closes the
shared clients of the running loop; call it before the emulator goes away.

``make_spawner`` builds a plain ``kubespawner.KubeSpawner`` the way kubespawner's own
test suite does (``jupyterhub.objects.Hub()`` + a minimal user object,
``api_token``/``oauth_client_id`` set), with sane test defaults.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

from .api import KubeAPI
from .kubelet import _maybe_await


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


async def hub_start(spawner, options):
    """What JupyterHub does to start a server: store the options, apply them, start()."""
    spawner.user_options = options
    await spawner._run_apply_user_options(options)
    return await spawner.start()
