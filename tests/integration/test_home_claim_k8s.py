"""On Kubernetes (kmock's API emulator + the test kubelet), a user's home claim follows
the catalog's storage section: its size is the user's quota, a cohort's for members; a
larger quota grows an existing claim; a refusal to grow (a storage class without volume
expansion) leaves the claim, starts the server and tells the admin; a claim is never
shrunk."""

import logging
from datetime import timedelta
from types import SimpleNamespace

import kubernetes_validate
import pytest
import yaml

from oggmhub.backends.kubernetes.home_claim import resize_plan
from oggmhub.catalog import load_catalog
from oggmhub.cohorts.model import now_utc
from oggmhub.cohorts.validation import validate_spec
from support.kube_harness import hub_start
from support.kube_harness.oggmhub import oggmhub_spawner
from support.paths import CATALOG

NS = "default"
pytestmark = pytest.mark.usefixtures("kubelet")
GiB = 1024**3


def catalog_with(tmp_path, storage):
    data = yaml.safe_load(CATALOG.read_text())
    data["storage"] = storage
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def spawner_for(name, catalog, cohort=None):
    spawner = oggmhub_spawner(name, catalog_path=catalog, k8s_api_request_timeout=1,
                              k8s_api_request_retry_timeout=2, start_timeout=10)
    if cohort is not None:
        spawner.user.groups = [SimpleNamespace(name=cohort.group, properties=cohort.to_properties())]
    return spawner


def claim_size(api, name):
    return api.get("persistentvolumeclaims", NS, name)["spec"]["resources"]["requests"]["storage"]


def test_resize_plan():
    assert resize_plan("10Gi", 20 * GiB) == "grow"
    assert resize_plan("10Gi", 10 * GiB) == "keep"
    assert resize_plan(str(30 * GiB), 20 * GiB) == "larger"


async def test_claim_size_follows_the_catalog_and_the_cohort(api, tmp_path):
    catalog = catalog_with(tmp_path, {"home_quota": "5Gi", "cohorts": {"glaciers": "2Gi"}, "users": {"ben": "50Gi"}})
    now = now_utc()
    cohort = validate_spec({"name": "glaciers", "start": (now - timedelta(hours=1)).isoformat(),
                            "end": (now + timedelta(days=1)).isoformat(), "environments": ["oggm"]},
                           load_catalog(str(catalog)))
    for name, group, expected in (("ada", None, 5 * GiB), ("cai", cohort, 2 * GiB), ("ben", cohort, 50 * GiB)):
        spawner = spawner_for(name, catalog, group)
        await hub_start(spawner, {"profile": "oggm"})
        claim = api.get("persistentvolumeclaims", NS, f"home-{name}")
        kubernetes_validate.validate(claim, "1.32", strict=True)
        assert claim_size(api, f"home-{name}") == str(expected), name
        await spawner.stop()


def catalog_without_storage(tmp_path):
    data = yaml.safe_load(CATALOG.read_text())
    data.pop("storage", None)
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


async def test_the_shipped_catalogs_quota_is_the_claims_size(api):
    spawner = spawner_for("cal", CATALOG)
    await hub_start(spawner, {"profile": "oggm"})
    assert claim_size(api, "home-cal") == str(10 * 2**30)  # storage.home_quota: 10Gi
    await spawner.stop()


async def test_no_storage_section_keeps_the_configured_capacity(api, tmp_path):
    spawner = spawner_for("dee", catalog_without_storage(tmp_path))
    await hub_start(spawner, {"profile": "oggm"})
    assert claim_size(api, "home-dee") == "10Gi"
    await spawner.stop()


async def test_a_larger_quota_grows_the_existing_claim_and_a_smaller_never_shrinks_it(api, tmp_path, caplog):
    catalog = catalog_with(tmp_path, {"home_quota": "5Gi"})
    spawner = spawner_for("eve", catalog)
    await hub_start(spawner, {"profile": "oggm"})
    await spawner.stop()
    catalog_with(tmp_path, {"home_quota": "20Gi"})
    spawner = spawner_for("eve", catalog)
    with caplog.at_level(logging.INFO):
        await hub_start(spawner, {"profile": "oggm"})
    assert claim_size(api, "home-eve") == str(20 * GiB)
    assert api.count("patch", "persistentvolumeclaims") == 1
    assert "home claim default/home-eve grown from 5368709120 to 20 GiB" in caplog.text
    await spawner.stop()
    catalog_with(tmp_path, {"home_quota": "1Gi"})
    spawner = spawner_for("eve", catalog)
    await hub_start(spawner, {"profile": "oggm"})
    assert claim_size(api, "home-eve") == str(20 * GiB)  # never shrunk: that would lose data
    assert api.count("patch", "persistentvolumeclaims") == 1
    await spawner.stop()


async def test_a_refused_growth_starts_the_server_and_tells_the_admin(api, tmp_path, caplog):
    catalog = catalog_with(tmp_path, {"home_quota": "5Gi"})
    spawner = spawner_for("fay", catalog)
    await hub_start(spawner, {"profile": "oggm"})
    await spawner.stop()
    catalog_with(tmp_path, {"home_quota": "8Gi"})
    api.inject("patch", "persistentvolumeclaims", status=403, times=None)
    spawner = spawner_for("fay", catalog)
    with caplog.at_level(logging.WARNING):
        url = await hub_start(spawner, {"profile": "oggm"})
    assert url and claim_size(api, "home-fay") == str(5 * GiB)
    assert "home claim default/home-fay stays at 5368709120: growing it to 8 GiB (its quota) was refused (403" in caplog.text
    assert "allowVolumeExpansion: true" in caplog.text
    await spawner.stop()
