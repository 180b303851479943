"""Fixtures every tier shares; a test's tier is its folder (its marker too):

- ``unit``: no hub, emulator, FUSE or browser (seconds; CI runs it first);
- ``integration``: the Kubernetes API emulator, the GCS emulator, FUSE, real Dask, ImageJ, system accounts;
- ``hub``: a real JupyterHub and proxy (minutes);
- ``e2e``: a browser, or the README's own commands.

``python3 -m pytest tests/unit`` is the quick answer; ``-m "not e2e"`` and the like select by tier.
Shared helpers live in ``tests/support``; no test imports another test module or this file.
"""

import pytest
import pytest_asyncio

from support.paths import CATALOG, REPO, SHARED  # noqa: F401 (fixtures' and old spellings)


@pytest.fixture
def catalog_path():
    return str(CATALOG)


@pytest.fixture
def catalog():
    from oggmhub.catalog import load_catalog

    return load_catalog(str(CATALOG))


@pytest.fixture
def hub_db(tmp_path):
    """A JupyterHub database (SQLite, in the test's tmp_path) with the default roles, as a hub has it."""
    from jupyterhub import orm, roles

    db = orm.new_session_factory(f"sqlite:///{tmp_path / 'jupyterhub.sqlite'}")()
    for role in roles.get_default_roles():
        roles.create_role(db, role)
    yield db
    db.close()


@pytest_asyncio.fixture
async def api(tmp_path, request):
    """A Kubernetes API server (kmock's emulator, over HTTP) that kubespawner talks to.

    A test module adds what it needs before kubespawner connects with
    ``async def setup_api(api, request)`` (resources to declare, the pod policy, nodes).
    """
    from support.kube_harness import KubeAPI, configure_kubespawner, reset_kubespawner
    from support.kube_harness.oggmhub import reset_kr8s, reset_oggmhub

    async with KubeAPI() as api:
        setup = getattr(request.module, "setup_api", None)
        if setup is not None:
            await setup(api, request)
        await configure_kubespawner(api, tmp_path / "kubeconfig")
        reset_kr8s()
        try:
            yield api
        finally:
            reset_kr8s()
            reset_oggmhub()
            await reset_kubespawner()  # stop class-level reflectors before the server goes


@pytest_asyncio.fixture
async def kubelet(api):
    """The test kubelet: pods the API accepts start running."""
    from support.kube_harness import TestKubelet

    async with TestKubelet(api) as kubelet:
        yield kubelet


@pytest.fixture(scope="module")
def gcs(request):
    """A GCS emulator for the test module, its buckets filled from the module's
    ``GCS_BUCKETS = {bucket: {path: bytes}}`` (none if it has none)."""
    from support.gcs_emulator import GCSEmulator

    with GCSEmulator() as emulator:
        for bucket, files in getattr(request.module, "GCS_BUCKETS", {}).items():
            emulator.create_bucket(bucket)
            if files:
                emulator.filesystem().pipe({f"{bucket}/{key}": value for key, value in files.items()})
        yield emulator


@pytest.fixture
def local_spawner(tmp_path):
    """``local_spawner(name="ada", config=None, **traits)``: a LocalEnvSpawner outside a hub,
    on the shipped catalog, with its data directory under the test's tmp_path."""
    from jupyterhub.objects import Hub

    from oggmhub.backends.local.spawner import LocalEnvSpawner
    from support.kube_harness.spawners import FakeOrmSpawner, FakeUser

    def make(name="ada", config=None, **traits):
        from traitlets.config import Config

        cfg = Config()
        cfg.Catalog.path = str(CATALOG)  # the hub's one catalog setting; config may name another
        if config is not None:
            cfg.merge(config)
        traits.setdefault("data_dir", str(tmp_path / "data"))
        return LocalEnvSpawner(hub=Hub(), user=FakeUser(name), orm_spawner=FakeOrmSpawner(), config=cfg, **traits)

    return make


# --- markers: from the folder a test lives in ---------------------------------------------

TIERS = ("unit", "integration", "hub", "e2e")


def pytest_collection_modifyitems(config, items):
    for item in items:
        tier = item.path.parent.name
        if tier in TIERS:
            item.add_marker(tier)
