"""oggmhub on the emulated API: its spawner, the resources it needs declared, the
admission policy its Dask mode requires, and the process-wide state to reset between
tests (one place for what test modules used to copy)."""

from __future__ import annotations

import kmock

from support import paths as _paths

from .spawners import make_spawner

CATALOG = _paths.CATALOG
POLICIES = "admissionregistration.k8s.io/v1/validatingadmissionpolicies"
BINDINGS = "admissionregistration.k8s.io/v1/validatingadmissionpolicybindings"
DASK_GROUPS = "kubernetes.dask.org/v1/daskworkergroups"
MOUNTER = "ghcr.io/oggmhub/mounter:0.1.0"


def declare(api, resource, kind, namespaced=True, verbs=None, subresources=()):
    """Declare a resource the harness does not (yet) serve, as kmock's emulator expects."""
    api.emulator.resources[resource] = kmock.ResourceInfo(
        kind=kind, singular=kind.lower(), namespaced=namespaced,
        verbs=set(verbs or {"create", "delete", "get", "list", "patch", "update", "watch"}),
        subresources=set(subresources))


async def install_pod_policy(api, install=True, mounter_image=MOUNTER):
    """Declare the admission policy resources; install oggmhub's policy unless told not to."""
    from oggmhub.backends.kubernetes import namespace as user_namespace

    declare(api, POLICIES, "ValidatingAdmissionPolicy", namespaced=False)
    declare(api, BINDINGS, "ValidatingAdmissionPolicyBinding", namespaced=False)
    if install:
        policy, binding = user_namespace.pod_policy(mounter_image)
        await api.create(POLICIES, policy)
        await api.create(BINDINGS, binding)


def reset_kr8s():
    """Forget kr8s's cached API clients (each test's emulator has its own port)."""
    from kr8s._api import Api

    Api._instances.clear()


def reset_oggmhub():
    """Forget what OGGMHubSpawner remembers class-wide (the pod policy, once found)."""
    from oggmhub.spawner import OGGMHubSpawner

    OGGMHubSpawner._pod_policy_found = False


def oggmhub_spawner(name="alice", *, catalog_path=None, config=None, **traits):
    """An ``OGGMHubSpawner`` for ``name`` on the shipped catalog, or ``catalog_path`` (as
    ``c.Catalog.path``, the hub's one setting; see ``make_spawner``)."""
    from traitlets.config import Config

    from oggmhub.spawner import OGGMHubSpawner

    cfg = Config()
    cfg.Catalog.path = str(catalog_path or CATALOG)
    if config is not None:
        cfg.merge(config)
    return make_spawner(name, spawner_class=OGGMHubSpawner, config=cfg, **traits)
