import os
import pathlib

import pytest
import pytest_asyncio

REPO = pathlib.Path(__file__).resolve().parent.parent
CATALOG = REPO / "hub_config" / "catalog.yaml"
SHARED = pathlib.Path(os.environ.get("OGGMHUB_SHARED", REPO.parent / "shared"))


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
    from kube_harness import KubeAPI, configure_kubespawner, reset_kubespawner
    from kube_harness.oggmhub import reset_kr8s, reset_oggmhub

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
    from kube_harness import TestKubelet

    async with TestKubelet(api) as kubelet:
        yield kubelet


@pytest.fixture(scope="module")
def gcs(request):
    """A GCS emulator for the test module, its buckets filled from the module's
    ``GCS_BUCKETS = {bucket: {path: bytes}}`` (none if it has none)."""
    from gcs_emulator import GCSEmulator

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

    from kube_harness.spawners import FakeOrmSpawner, FakeUser
    from oggmhub.backends.local.spawner import LocalEnvSpawner

    def make(name="ada", config=None, **traits):
        from traitlets.config import Config

        cfg = Config()
        cfg.Catalog.path = str(CATALOG)  # the hub's one catalog setting; config may name another
        if config is not None:
            cfg.merge(config)
        traits.setdefault("data_dir", str(tmp_path / "data"))
        return LocalEnvSpawner(hub=Hub(), user=FakeUser(name), orm_spawner=FakeOrmSpawner(), config=cfg, **traits)

    return make


# --- markers: a quick subset is `pytest -m "not browser and not slow"` --------------------
# A module may set pytestmark itself; otherwise its markers follow from what it uses.

def _uses(module, *names):
    return any(name in vars(module) for name in names)


def pytest_collection_modifyitems(config, items):
    import types

    for item in items:
        module = getattr(item, "module", None)
        if module is None:
            continue
        values = vars(module).values()
        modules = {v.__name__ for v in values if isinstance(v, types.ModuleType)}
        origins = {getattr(v, "__module__", None) for v in values if callable(v)}
        marks = set()
        if "browser" in modules | origins or "browser" in module.__name__:
            marks.add("browser")  # Chromium through playwright (tests/browser.py)
        if "oggmhub.mounts.process" in modules | origins or _uses(module, "FUSE"):
            marks.add("fuse")  # real FUSE mounts
        if {"api", "kubelet"} & set(item.fixturenames) or any(
                str(o).startswith("kube_harness") for o in modules | origins):
            marks.add("k8s")  # the kmock Kubernetes API emulator
        if _uses(module, "LocalHub", "running_hub", "build_local_env", "default_root"):
            marks.add("slow")  # a running hub, or environments built (80-200 s each when not cached)
        for mark in marks - {m.name for m in item.iter_markers()}:
            item.add_marker(mark)
