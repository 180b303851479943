"""GPU profiles: a catalog GPU variant becomes nvidia.com/gpu limits, node selector,
tolerations and (optionally) a CUDA-capable image on the user pod and on Dask GPU
workers; a hub with no node for the variant refuses at once; nothing of a GPU choice
leaks into a later spawn without one.

Against kmock (the Kubernetes API emulator) holding v1 nodes; manifests validated with
kubernetes-validate (strict, 1.32).
"""

import json
import time

import kubernetes_validate
import pytest
import yaml

from oggmhub.backends.kubernetes.spawner import gpu_node_problem
from oggmhub.catalog import CatalogError, load_catalog
from oggmhub.errors import SpawnFailed
from oggmhub.session import dask_kubernetes as dask_k8s
from oggmhub.session import dask_limits
from support.kube_harness import hub_start
from support.kube_harness.oggmhub import declare, install_pod_policy, oggmhub_spawner
from support.paths import CATALOG

CUDA = {"name": "ghcr.io/oggmhub/slicer-cuda", "tag": "r2d-cuda12-1"}
T4_LABEL = {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}
FAST = dict(k8s_api_request_timeout=2, k8s_api_request_retry_timeout=4, start_timeout=10)


def node(name, labels=None, gpus=0, unschedulable=False):
    body = {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
            "status": {"allocatable": {"cpu": "8", "memory": "32Gi", **({"nvidia.com/gpu": str(gpus)} if gpus else {})}}}
    if unschedulable:
        body["spec"] = {"unschedulable": True}
    return body


@pytest.fixture
def gpu_catalog(tmp_path):
    """The shipped catalog with a CUDA build for Slicer's T4 variant."""
    data = yaml.safe_load(CATALOG.read_text())
    data["environments"]["slicer"]["gpus"]["t4"]["image"] = dict(CUDA)
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


async def setup_api(api, request):
    """conftest's api fixture: nodes to list, and the pod policy installed."""
    declare(api, "v1/nodes", "Node", namespaced=False, verbs={"create", "get", "list", "watch", "delete"},
            subresources={"status"})
    await install_pod_policy(api)


def hub_spawner(catalog_path, name="alice", **traits):
    return oggmhub_spawner(name, catalog_path=catalog_path, **{**FAST, **traits})


spawn = hub_start  # what JupyterHub does to start a server


def notebook(pod):
    return next(c for c in pod["spec"]["containers"] if c["name"] == "notebook")


def env_of(pod):
    return {e["name"]: e.get("value") for e in notebook(pod)["env"]}


async def test_a_gpu_variant_runs_its_cuda_image_on_gpu_nodes_and_never_leaks(api, kubelet, gpu_catalog):
    await api.create("v1/nodes", node("cpu-1"))
    await api.create("v1/nodes", node("gpu-1", T4_LABEL, gpus=1))
    spawner = hub_spawner(gpu_catalog, node_selector={"pool": "users"})
    await spawn(spawner, {"profile": "slicer", "gpu": "t4"})
    [pod] = api.objects("pods", "default")
    kubernetes_validate.validate(pod, "1.32", strict=True)
    container = notebook(pod)
    assert container["image"] == f"{CUDA['name']}:{CUDA['tag']}"
    assert env_of(pod)["OGGMHUB_IMAGE"] == container["image"]  # what the session says it runs
    assert container["resources"]["limits"]["nvidia.com/gpu"] in ("1", 1)
    assert pod["spec"]["nodeSelector"] == {"pool": "users", **T4_LABEL}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["spec"]["tolerations"]
    assert pod["metadata"]["labels"]["oggmhub.org/gpu"] == "t4"
    await spawner.stop()

    await spawn(spawner, {"profile": "slicer", "gpu": "none"})
    [pod] = api.objects("pods", "default")
    container = notebook(pod)
    slicer = load_catalog(gpu_catalog).environments["slicer"]
    assert container["image"] == slicer.image.ref == env_of(pod)["OGGMHUB_IMAGE"]
    assert "nvidia.com/gpu" not in container["resources"].get("limits", {})
    assert pod["spec"]["nodeSelector"] == {"pool": "users"}
    assert not any(t.get("key") == "nvidia.com/gpu" for t in pod["spec"].get("tolerations") or [])
    assert env_of(pod)["OGGMHUB_GPU"] == "none" and env_of(pod)["OGGMHUB_GPU_COUNT"] == "0"
    await spawner.stop()


@pytest.mark.parametrize("nodes, reason", [
    ([node("cpu-1"), node("cpu-2")], "no schedulable node has cloud.google.com/gke-accelerator=nvidia-tesla-t4"),
    ([node("gpu-1", T4_LABEL, gpus=0)], "1 node(s) match cloud.google.com/gke-accelerator=nvidia-tesla-t4 but none "
                                        "has 1 nvidia.com/gpu allocatable (is the GPU device plugin running?)"),
    ([node("gpu-1", T4_LABEL, gpus=1, unschedulable=True)], "no schedulable node has"),
])
async def test_a_gpu_variant_without_gpu_nodes_fails_fast_and_creates_nothing(api, kubelet, gpu_catalog, nodes, reason):
    for body in nodes:
        await api.create("v1/nodes", body)
    api.clear_requests()
    spawner = hub_spawner(gpu_catalog, name="bob", start_timeout=60)
    started = time.monotonic()
    with pytest.raises(SpawnFailed) as info:
        await spawn(spawner, {"profile": "slicer", "gpu": "t4"})
    assert time.monotonic() - started < 5  # not the 60 s start timeout
    message = str(info.value)
    assert message.startswith("This hub has no node for 1 NVIDIA T4: ") and reason in message
    assert message.endswith("Choose 'No GPU', or ask the hub's admins for GPU nodes. Nothing was started.")
    assert [r for r in api.requests if r.method in ("POST", "PUT", "PATCH", "DELETE")] == []
    # the same user without a GPU starts at once
    await spawn(spawner, {"profile": "slicer", "gpu": "none"})
    assert len(api.objects("pods", "default")) == 1
    await spawner.stop()


async def test_the_node_check_can_be_turned_off_for_autoscaled_gpu_pools(api, kubelet, gpu_catalog):
    spawner = hub_spawner(gpu_catalog, gpu_node_check=False)
    await spawn(spawner, {"profile": "slicer", "gpu": "t4"})  # the autoscaler would add the node
    assert api.count("list", "nodes") == 0
    await spawner.stop()


def test_gpu_node_problem_reads_labels_and_allocatable(catalog):
    t4 = catalog.environments["slicer"].gpus["t4"]
    assert gpu_node_problem([node("gpu-1", T4_LABEL, gpus=2)], t4) is None
    assert "no schedulable node" in gpu_node_problem([], t4)
    assert "none has 1 nvidia.com/gpu" in gpu_node_problem([node("g", T4_LABEL)], t4)


async def test_dask_gpu_workers_get_the_variant_and_its_limit(api, kubelet, gpu_catalog):
    await api.create("v1/nodes", node("gpu-1", T4_LABEL, gpus=1))
    spawner = hub_spawner(gpu_catalog, enable_user_namespaces=True, user_namespace_template="oggmhub-{username}",
                          dask_kubernetes=True)
    await spawn(spawner, {"profile": "slicer"})  # no GPU for the notebook: the workers get the variant
    [pod] = api.objects("pods", "oggmhub-alice")
    env = env_of(pod)
    template = json.loads(env[dask_k8s.ENV_TEMPLATE])
    assert template["image"] == notebook(pod)["image"]  # CPU workers: the notebook's image
    assert template["gpu"]["image"] == f"{CUDA['name']}:{CUDA['tag']}"  # GPU workers: the CUDA build
    assert template["gpu"]["node_selector"] == T4_LABEL
    quota = api.objects("resourcequotas", "oggmhub-alice")[0]["spec"]["hard"]
    assert quota["requests.nvidia.com/gpu"] == "1"  # slicer's dask.gpus, none for the server
    owner = dask_k8s.owner_reference(pod["metadata"]["name"], "uid")
    group = dask_k8s.gpu_worker_group("c", template, workers=1, owner=owner)
    kubernetes_validate.validate({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "w"},
                                  "spec": group["spec"]["worker"]["spec"]}, "1.32", strict=True)
    # more GPU workers than the catalog allows: refused, naming the limit
    limits = dask_limits.from_env({dask_limits.ENV_LIMITS: env[dask_limits.ENV_LIMITS]})
    request = dask_limits.ClusterRequest(workers=0, worker_cores=1, worker_memory=2**30, gpu_workers=2,
                                         gpus_per_worker=1)
    with pytest.raises(dask_limits.DaskLimitError, match=r"2 workers x 1 GPU = 2 GPUs is over your limit of 1 GPU "
                                                         r"\(gpus, set by the catalog's environments.slicer.dask.gpus\)"):
        dask_limits.check(request, limits)
    await spawner.stop()


def test_catalog_gpu_image_and_dask_gpus_are_validated(tmp_path, gpu_catalog):
    assert load_catalog(gpu_catalog).environments["slicer"].gpus["t4"].image.ref == f"{CUDA['name']}:{CUDA['tag']}"
    data = yaml.safe_load(open(gpu_catalog))
    data["environments"]["slicer"]["gpus"]["t4"]["image"] = {"name": "ghcr.io/oggmhub/slicer-cuda", "tag": "bad tag"}
    data["environments"]["oggm"]["dask"]["gpus"] = 1  # OGGM has no GPU variant
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(CatalogError) as info:
        load_catalog(str(path))
    text = "\n".join(info.value.problems)
    assert "environments.slicer.gpus.t4.image.tag: 'bad tag' is invalid: an image tag is" in text
    assert "environments.oggm.dask.gpus: GPU workers need a GPU variant" in text
