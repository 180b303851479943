"""The dataset mount sidecar on Kubernetes, as manifests (pure functions, no cluster).

The pod is built by kubespawner's own ``make_pod`` with the pieces from
``oggmhub.session.mount_sidecar``, validated with kubernetes-validate (strict, 1.32), and the
user container checked to stay unprivileged.
"""

import asyncio
import dataclasses
import json

import kubernetes_validate
import pytest
from kubernetes_asyncio.client import ApiClient
from kubespawner.objects import make_pod

from oggmhub.backends.kubernetes.pod import check_user_container
from oggmhub.backends.kubernetes.spawner import SAFE_CONTAINER_SECURITY_CONTEXT
from oggmhub.catalog import Dataset
from oggmhub.session.datasets import session_datasets
from oggmhub.session.mount_sidecar import (
    SIDECAR_NAME,
    DatasetMountError,
    pod_settings,
    volume_name,
)

IMAGE = "ghcr.io/oggmhub/mounter:0.1.0"  # OGGMHubSpawner.dataset_mounter_image's default
ERA5 = Dataset(name="era5", title="ERA5", source="gs://era5-subset/monthly", mount_path="/data/era5",
               credentials={"secret": "era5-reader", "key": "sa.json"})
MINIO = Dataset(name="minio-obs", title="Observations", source="s3://obs", mount_path="/mnt/obs/v1",
                endpoint="http://minio.data:9000", credentials={"env": "OBS_KEYS"})


def build_pod(settings, native=True):
    home = [{"name": "home", "persistentVolumeClaim": {"claimName": "home-alice"}}]
    pod = make_pod(
        name="jupyter-alice", cmd=["jupyterhub-singleuser"], port=8888, image="ghcr.io/oggmhub/oggm:0.1.0",
        uid=1000, fs_gid=100, container_security_context=dict(SAFE_CONTAINER_SECURITY_CONTEXT),
        env=settings.get("environment"), volumes=home + settings.get("volumes", []),
        volume_mounts=[{"name": "home", "mountPath": "/home/jovyan"}, *settings.get("volume_mounts", [])],
        init_containers=settings.get("init_containers"), extra_containers=settings.get("extra_containers"),
        automount_service_account_token=False,
    )
    return asyncio.run(as_dict(pod))


async def as_dict(obj):
    """What kubespawner sends to the API server, as a dict."""
    async with ApiClient() as client:
        return client.sanitize_for_serialization(obj)


def sidecar(pod):
    containers = pod["spec"].get("initContainers", []) + pod["spec"]["containers"]
    return next(c for c in containers if c["name"] == SIDECAR_NAME)


@pytest.mark.parametrize("native", [True, False])
def test_the_pod_validates_and_only_the_sidecar_is_privileged(catalog, native):
    # a hub's internal mirror (docs/datasets.md), mounted at OGGM's cache folder itself
    mirror = dataclasses.replace(catalog.datasets["oggm-mirror"], source="gs://my-hub-oggm-mirror",
                                 mount_path="/data/oggm-mirror")
    settings = pod_settings([mirror, ERA5, MINIO], IMAGE, native=native,
                            env=[{"name": "OBS_KEYS", "valueFrom": {"secretKeyRef": {"name": "obs", "key": "keys"}}}])
    pod = build_pod(settings)
    kubernetes_validate.validate(pod, "1.32", strict=True)
    check_user_container(pod)  # raises if the user's container got any privilege
    notebook = next(c for c in pod["spec"]["containers"] if c["name"] == "notebook")
    mounter = sidecar(pod)
    assert mounter["securityContext"] == {"privileged": True, "runAsUser": 0, "runAsNonRoot": False}
    assert notebook["securityContext"]["allowPrivilegeEscalation"] is False

    # one emptyDir per parent folder, Bidirectional in the sidecar, HostToContainer + read-only for the user
    parents = {"/data": volume_name("/data"), "/mnt/obs": volume_name("/mnt/obs")}
    assert {v["name"]: v for v in pod["spec"]["volumes"] if v["name"] in parents.values()} == {
        name: {"name": name, "emptyDir": {}} for name in parents.values()}
    assert sorted((m["mountPath"], m["mountPropagation"]) for m in mounter["volumeMounts"]) == [
        ("/data", "Bidirectional"), ("/mnt/obs", "Bidirectional")]
    user_mounts = {m["mountPath"]: m for m in notebook["volumeMounts"]}
    for parent, name in parents.items():
        assert user_mounts[parent] == {"name": name, "mountPath": parent, "mountPropagation": "HostToContainer", "readOnly": True}
    assert user_mounts["/home/jovyan"]["name"] == "home"

    if native:  # a native sidecar: started first, held until every mount is live
        assert pod["spec"]["initContainers"][0]["name"] == SIDECAR_NAME
        assert mounter["restartPolicy"] == "Always"
        probe = mounter["startupProbe"]["exec"]["command"]
        assert probe[:2] == ["sh", "-c"] and all(f'mountpoint -q "{p}"' in probe[2]
                                                 for p in ("/data/oggm-mirror", "/data/era5", "/mnt/obs/v1"))
    else:
        assert "restartPolicy" not in mounter and "initContainers" not in pod["spec"]
    assert mounter["command"] == ["oggmhub", "datasets", "mount", "--from-env", "--root", "/", "--wait"]


def test_credentials_reach_the_sidecar_by_reference_only(catalog):
    pod = build_pod(pod_settings([ERA5], IMAGE))
    env = {e["name"]: e for e in sidecar(pod)["env"]}
    assert env["OGGMHUB_DATASET_CREDENTIALS_ERA5"]["valueFrom"] == {"secretKeyRef": {"name": "era5-reader", "key": "sa.json"}}
    assert "value" not in env["OGGMHUB_DATASET_CREDENTIALS_ERA5"]
    # the sidecar reads its datasets from the same JSON the session gets
    assert [d.name for d in session_datasets({"OGGMHUB_DATASETS_JSON": env["OGGMHUB_DATASETS_JSON"]["value"]})] == ["era5"]
    notebook = next(c for c in pod["spec"]["containers"] if c["name"] == "notebook")
    user_env = {e["name"]: e for e in notebook["env"]}
    assert not any(name.startswith("OGGMHUB_DATASET_CREDENTIALS") for name in user_env)
    assert user_env["OGGMHUB_DATASETS"]["value"] == "era5"
    assert json.loads(user_env["OGGMHUB_DATASETS_JSON"]["value"])[0]["mount_path"] == "/data/era5"


@pytest.mark.parametrize(
    "dataset, kwargs, message",
    [
        (MINIO, {}, r"dataset 'minio-obs': its credentials are read from \$OBS_KEYS, which the mount sidecar is not given"),
        (Dataset(name="local", title="L", source="/srv/local", mount_path="/data/local"), {},
         r"dataset 'local': a local source \(/srv/local\) cannot be mounted in a Kubernetes pod"),
        (Dataset(name="inhome", title="H", source="gs://h", mount_path="/work/home/data"), {"home_mount_path": "/work/home"},
         r"dataset 'inhome': mount path /work/home/data overlaps the home volume at /work/home"),
    ],
)
def test_what_cannot_be_mounted_is_refused_naming_the_dataset(dataset, kwargs, message):
    with pytest.raises(DatasetMountError, match=message):
        pod_settings([dataset], IMAGE, **kwargs)


def test_no_datasets_no_sidecar():
    assert pod_settings([], IMAGE) == {}


def test_volume_names_are_valid_and_distinct():
    names = {volume_name(p) for p in ("/data", "/mnt/obs", "/DATA", "/very/long/" + "x" * 80)}
    assert len(names) == 4
    for name in names:
        assert len(name) <= 63 and name.replace("-", "").isalnum() and name == name.lower()
