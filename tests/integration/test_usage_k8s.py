"""Usage records on Kubernetes (kmock): a notebook with a GPU variant started by oggmhub's
spawner, a Dask worker pod it owns and a task Job's pod, read back from the API and turned
into records from their lifetimes × requests and limits; collected again, nothing doubles;
a pod gone from the API closes at its last sighting.

The Dask and task pods are created directly with oggmhub's labels (no Dask operator or
Job controller runs here); there are no real GPUs: the GPU count is the pod's limit.
"""

import time

import kubernetes_asyncio
import pytest
import yaml

from oggmhub.usage import kubernetes as usage_k8s
from oggmhub.usage.store import UsageStore
from support.kube_harness import hub_start, wait_until
from support.kube_harness.oggmhub import declare, install_pod_policy, oggmhub_spawner
from support.paths import CATALOG

T4_LABEL = {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}
FAST = dict(k8s_api_request_timeout=2, k8s_api_request_retry_timeout=4, start_timeout=10)


async def setup_api(api, request):
    declare(api, "v1/nodes", "Node", namespaced=False, verbs={"create", "get", "list", "watch", "delete"},
            subresources={"status"})
    await install_pod_policy(api)


@pytest.fixture
def catalog(tmp_path):
    data = yaml.safe_load(CATALOG.read_text())
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def pod(name, labels, cpu, memory):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "main", "image": "x:1",
                                     "resources": {"requests": {"cpu": cpu}, "limits": {"memory": memory}}}]}}


async def read_pods(tmp_path):
    """The namespace's pods, from the API, as the hub would read them."""
    await kubernetes_asyncio.config.load_kube_config(config_file=str(tmp_path / "kubeconfig"))
    async with kubernetes_asyncio.client.ApiClient() as client:
        return await usage_k8s.list_pods(kubernetes_asyncio.client.CoreV1Api(client), "default")


async def test_records_from_pod_lifetimes_and_requests(api, kubelet, catalog, tmp_path):
    await api.create("v1/nodes", {"metadata": {"name": "gpu-1", "labels": {"kubernetes.io/hostname": "gpu-1", **T4_LABEL}},
                                  "status": {"allocatable": {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "1"}}})
    spawner = oggmhub_spawner("alice", catalog_path=catalog, **FAST)
    await hub_start(spawner, {"profile": "slicer", "gpu": "t4"})
    await api.create("v1/pods", pod("dask-worker-a", {usage_k8s.OWNER_LABEL: spawner.pod_name}, "1", "2Gi"), "default")
    await api.create("v1/pods", pod("task-run-1", {"oggmhub.org/task-run": "r1", "oggmhub.org/user": "alice",
                                                   "oggmhub.org/environment": "fiji"}, "500m", "4Gi"), "default")
    for name in ("dask-worker-a", "task-run-1"):
        await wait_until(lambda: (api.get("v1/pods", "default", name).get("status") or {}).get("phase") == "Running",
                         timeout=10)
    await kubelet.terminate("default", "task-run-1")  # the run finished
    assert api.get("v1/pods", "default", "task-run-1")["status"]["phase"] == "Succeeded"
    store = UsageStore(str(tmp_path / "usage.sqlite"))
    later = time.time() + 3600  # an hour on
    pods = await read_pods(tmp_path)
    records = {r["kind"]: r for r in usage_k8s.collect(store, pods, now=later)}
    assert set(records) == {"server", "dask", "task"}
    assert {r["user"] for r in records.values()} == {"alice"}  # the worker is charged to its notebook's user
    server = records["server"]
    assert server["environment"] == "slicer" and server["gpus"] == 1
    rows = {r["kind"]: r for r in store.totals(later - 7200, later + 1, by="kind", now=later)}
    assert rows["server"]["gpu-hours"] == pytest.approx(1, abs=0.01)  # one T4 for an hour
    assert rows["server"]["gib-hours"] == pytest.approx(server["mem_limit"] / 2 ** 30, rel=0.01)
    assert rows["dask"]["core-hours"] == pytest.approx(1, abs=0.01) and rows["dask"]["gib-hours"] == pytest.approx(2, abs=0.02)
    assert rows["task"]["gib-hours"] < 0.01  # terminated at once: no hour charged
    usage_k8s.collect(store, await read_pods(tmp_path), now=later + 60)  # collected again: replaced, not added
    assert len(store.records()) == 3
    await spawner.stop()
    usage_k8s.collect(store, await read_pods(tmp_path), now=later + 120)
    assert store.get(server["id"])["stop"] == pytest.approx(later + 60)  # closed at its last sighting
