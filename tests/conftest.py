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


@pytest_asyncio.fixture
async def api(tmp_path):
    """A Kubernetes API server (kmock's emulator, over HTTP) that kubespawner talks to."""
    from kube_harness import KubeAPI, configure_kubespawner, reset_kubespawner

    async with KubeAPI() as api:
        await configure_kubespawner(api, tmp_path / "kubeconfig")
        try:
            yield api
        finally:
            await reset_kubespawner()  # stop class-level reflectors before the server goes


@pytest_asyncio.fixture
async def kubelet(api):
    """The test kubelet: pods the API accepts start running."""
    from kube_harness import TestKubelet

    async with TestKubelet(api) as kubelet:
        yield kubelet
