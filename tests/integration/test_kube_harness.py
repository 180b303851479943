"""KubeSpawner (unmodified) against the kmock-based Kubernetes API emulator.

Proves the harness in ``kube_harness/``: start -> poll -> stop, PVC handling,
fault injection on pod/PVC creation (500, 409, hangs) and concurrency.
"""

import asyncio
import json

import aiohttp
import pytest
from kubernetes_asyncio.client.exceptions import ApiException

from support.kube_harness import (
    TestKubelet,
    make_spawner,
    wait_until,
)

NS = "default"
# Integer traits: 1 s per API request, 2 s of retries, 5 s to become ready.
FAST = dict(k8s_api_request_timeout=1, k8s_api_request_retry_timeout=2, start_timeout=5)


def spawner(name="alice", **traits):
    return make_spawner(name, storage_pvc_ensure=True, **{**FAST, **traits})


# ------------------------------------------------------------------------------------
# the happy path
# ------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_start_poll_stop_keeps_pvc(api, kubelet):
    sp = spawner("alice")
    assert (sp.pod_name, sp.pvc_name) == ("jupyter-alice", "claim-alice")
    assert await sp.poll() == 1  # nothing running yet

    url = await sp.start()
    assert url == "http://127.0.0.1:8888"
    pod = api.get("pods", NS, "jupyter-alice")
    assert pod["status"]["phase"] == "Running"
    assert pod["metadata"]["labels"]["component"] == "singleuser-server"
    assert pod["metadata"]["uid"] and int(pod["metadata"]["resourceVersion"]) > 0
    assert api.names("persistentvolumeclaims", NS) == ["claim-alice"]
    assert await sp.poll() is None
    assert sp.get_state()["pvc_name"] == "claim-alice"

    # progress() replays the kubelet's events once start has finished
    messages = [event["message"] async for event in sp.progress()]
    assert any("Successfully assigned default/jupyter-alice" in m for m in messages)
    assert any("Started container notebook" in m for m in messages)

    await sp.stop()
    assert api.names("pods", NS) == []
    assert api.names("persistentvolumeclaims", NS) == ["claim-alice"]  # the PVC stays
    assert await sp.poll() == 1

    # a restart of the same spawner skips PVC creation (_pvc_exists is remembered) ...
    await sp.start()
    assert api.count("create", "persistentvolumeclaims") == 1
    await sp.stop()
    # ... a fresh spawner (no state) gets a real 409 from the API and treats it as "exists"
    sp2 = spawner("alice")
    await sp2.start()
    assert api.count("create", "persistentvolumeclaims", status=409) == 1
    assert await sp2.poll() is None
    await sp2.stop()
    assert api.names("persistentvolumeclaims", NS) == ["claim-alice"]


@pytest.mark.asyncio
async def test_poll_reports_exit_code(api, kubelet):
    sp = spawner("bob")
    await sp.start()
    await kubelet.terminate(NS, sp.pod_name, exit_code=3)
    await wait_until(lambda: sp.pod_reflector.pods[f"{NS}/{sp.pod_name}"]["status"]["phase"] == "Failed")
    assert await sp.poll() == 3  # and, delete_stopped_pods=True, it deletes the pod
    assert api.names("pods", NS) == []


@pytest.mark.asyncio
async def test_reflector_sees_only_its_pods(api, kubelet):
    # objects of other components / namespaces must not leak into the reflector
    other = {"spec": {"containers": [{"name": "c", "image": "x"}]}}
    await api.create("pods", {"metadata": {"name": "hub", "labels": {"component": "hub"}}, **other}, NS)
    await api.create("pods", {"metadata": {"name": "jupyter-x", "labels": {"component": "singleuser-server"}},
                              **other}, "elsewhere")
    sp = spawner("carol")
    await sp.start()
    assert set(sp.pod_reflector.pods) == {f"{NS}/jupyter-carol"}
    assert all(e["involvedObject"]["kind"] == "Pod" for e in sp.event_reflector.resources.values())
    await sp.stop()
    assert set(sp.pod_reflector.pods) == set()


# ------------------------------------------------------------------------------------
# faults on pod creation
# ------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_pod_create_500_fails_without_retry(api, kubelet):
    api.inject("create", "pods", status=500)
    sp = spawner("dave")
    with pytest.raises(ApiException) as info:
        await sp.start()
    assert info.value.status == 500
    assert "injected fault" in str(info.value)  # the body is part of the message the hub shows
    assert api.count("create", "pods") == 1  # no retry
    assert api.names("pods", NS) == []  # no orphan
    assert api.names("persistentvolumeclaims", NS) == ["claim-dave"]  # created before the pod
    await sp.stop()  # what JupyterHub does after a failed start: harmless (404 tolerated)
    assert api.names("pods", NS) == []


@pytest.mark.asyncio
async def test_pod_create_409_deletes_and_retries(api, kubelet):
    api.inject("create", "pods", status=409)  # "already exists", but nothing is there
    sp = spawner("erin")
    assert await sp.start() == "http://127.0.0.1:8888"
    assert api.count("create", "pods") == 2
    assert api.count("DELETE", "pods", status=404) == 1  # stop(now=True) before the retry
    assert api.names("pods", NS) == ["jupyter-erin"]
    await sp.stop()
    assert api.names("pods", NS) == []


@pytest.mark.asyncio
async def test_pod_create_conflict_with_stale_pod_replaces_it(api, kubelet):
    stale = await api.create("pods", {
        "metadata": {"name": "jupyter-frank", "labels": {"component": "singleuser-server"}},
        "spec": {"containers": [{"name": "notebook", "image": "old:1"}]},
    }, NS)
    await wait_until(lambda: api.get("pods", NS, "jupyter-frank")["status"]["phase"] == "Running")
    sp = spawner("frank")
    await sp.start()
    pod = api.get("pods", NS, "jupyter-frank")
    assert pod["metadata"]["uid"] != stale["metadata"]["uid"]
    assert pod["spec"]["containers"][0]["image"] != "old:1"
    assert api.count("create", "pods", status=409) == 1
    assert api.count("DELETE", "pods", status=200) == 1
    await sp.stop()
    assert api.names("pods", NS) == []


@pytest.mark.asyncio
async def test_pod_create_409_forever_times_out(api, kubelet):
    api.inject("create", "pods", status=409, times=None)
    sp = spawner("gina")
    with pytest.raises(TimeoutError, match="Could not create pod default/jupyter-gina"):
        await sp.start()
    assert api.count("create", "pods") >= 2
    assert api.names("pods", NS) == []


@pytest.mark.asyncio
@pytest.mark.parametrize("after", [False, True], ids=["hang-before-create", "hang-after-create"])
async def test_pod_create_hang_once_is_retried(api, kubelet, after):
    api.inject_delay("create", "pods", seconds=5, after=after)
    sp = spawner("hank", k8s_api_request_retry_timeout=5)
    assert await sp.start() == "http://127.0.0.1:8888"
    assert api.names("pods", NS) == ["jupyter-hank"]  # exactly one pod, no orphan
    if after:  # the hung request did create it: the retry got 409, deleted it, recreated it
        assert [r.status for r in api.requests if r.method in ("POST", "DELETE") and r.resource == "pods"] == [
            None, 409, 200, 200]
    else:
        assert api.count("create", "pods") == 2
    await sp.stop()
    assert api.names("pods", NS) == []


@pytest.mark.asyncio
@pytest.mark.parametrize("after", [False, True], ids=["hang-before-create", "hang-after-create"])
async def test_pod_create_hang_forever(api, kubelet, after):
    api.inject_delay("create", "pods", seconds=30, times=None, after=after)
    sp = spawner("ivan")
    with pytest.raises(TimeoutError, match="Could not create pod default/jupyter-ivan"):
        await sp.start()
    if after:
        # Every hung create did create the pod; the next attempt got 409 and deleted it.
        # If the retry deadline hits right after a hung attempt, start() leaves that pod behind ...
        posts = [r for r in api.requests if r.method == "POST" and r.resource == "pods"]
        assert posts[0].status is None and posts[1].status == 409
        orphan = posts[-1].status is None  # the last attempt hung (the client gave up on it)
        assert api.names("pods", NS) == (["jupyter-ivan"] if orphan else [])
    else:
        assert api.names("pods", NS) == []
    api.clear_faults()
    await sp.stop()  # ... and JupyterHub's cleanup (User.spawn calls stop) removes it
    assert api.names("pods", NS) == []


# ------------------------------------------------------------------------------------
# faults on PVC creation
# ------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_pvc_create_faults(api, kubelet):
    api.inject("create", "persistentvolumeclaims", status=500)
    sp = spawner("judy")
    with pytest.raises(ApiException) as info:
        await sp.start()
    assert info.value.status == 500
    assert api.names("pods", NS) == [] and api.names("persistentvolumeclaims", NS) == []

    # 409 means "exists": kubespawner carries on without checking
    api.inject("create", "persistentvolumeclaims", status=409)
    await sp.start()
    assert api.names("persistentvolumeclaims", NS) == [] and api.names("pods", NS) == ["jupyter-judy"]
    await sp.stop()

    # a hang is retried after k8s_api_request_timeout
    sp2 = spawner("kate", k8s_api_request_retry_timeout=5)
    api.inject_delay("create", "persistentvolumeclaims", seconds=5)
    await sp2.start()
    assert api.names("persistentvolumeclaims", NS) == ["claim-kate"]
    assert api.count("create", "persistentvolumeclaims", name=None) == 4
    await sp2.stop()


# ------------------------------------------------------------------------------------
# load
# ------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_50_concurrent_spawns(api, kubelet):
    spawners = [spawner(f"user{i}", start_timeout=20, k8s_api_request_retry_timeout=20) for i in range(50)]
    urls = await asyncio.gather(*(sp.start() for sp in spawners))
    assert urls == ["http://127.0.0.1:8888"] * 50
    pods = api.objects("pods", NS)
    assert len(pods) == 50 and all(p["status"]["phase"] == "Running" for p in pods)
    assert len(api.objects("persistentvolumeclaims", NS)) == 50
    assert [await sp.poll() for sp in spawners] == [None] * 50
    await asyncio.gather(*(sp.stop() for sp in spawners))
    assert api.objects("pods", NS) == []


# ------------------------------------------------------------------------------------
# the emulator itself
# ------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_emulator_http_semantics(api):
    base = f"{api.url}/api/v1"
    async with aiohttp.ClientSession() as http:
        pod = {"metadata": {"name": "p", "labels": {"app": "a", "tier": "x"}}, "spec": {"containers": []}}
        async with http.post(f"{base}/namespaces/ns1/pods", json=pod) as r:
            created = await r.json()
        assert created["metadata"]["namespace"] == "ns1" and created["status"]["phase"] == "Pending"
        async with http.post(f"{base}/namespaces/ns1/pods", json=pod) as r:
            assert r.status == 409 and (await r.json())["reason"] == "AlreadyExists"

        async def names(query):
            async with http.get(f"{base}/pods", params=query) as r:
                return [i["metadata"]["name"] for i in (await r.json())["items"]]

        assert await names({"labelSelector": "app in (a,b),tier!=y"}) == ["p"]
        assert await names({"labelSelector": "!app"}) == []
        assert await names({"fieldSelector": "metadata.namespace=ns2"}) == []

        # watch from a resourceVersion replays what happened since; ?watch=True works
        rv = created["metadata"]["resourceVersion"]
        async with http.patch(f"{base}/namespaces/ns1/pods/p", json={"metadata": {"labels": {"tier": "y"}}},
                              headers={"Content-Type": "application/merge-patch+json"}) as r:
            assert r.status == 200
        async with http.delete(f"{base}/namespaces/ns1/pods/p") as r:
            assert r.status == 200
        params = {"watch": "True", "resourceVersion": rv, "timeoutSeconds": "1"}
        async with http.get(f"{base}/namespaces/ns1/pods", params=params) as r:
            events = [json.loads(line) async for line in r.content]
        assert [e["type"] for e in events] == ["MODIFIED", "DELETED"]
        rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
        assert int(rv) < rvs[0] < rvs[1]

        # the cluster-scoped namespaces resource and PUT
        async with http.post(f"{base}/namespaces", json={"metadata": {"name": "user-a"}}) as r:
            assert r.status == 200
        async with http.put(f"{base}/namespaces/user-a", json={"metadata": {"name": "user-a",
                                                                           "labels": {"k": "v"}}}) as r:
            assert (await r.json())["metadata"]["labels"] == {"k": "v"}
        assert api.names("namespaces") == ["user-a"]
        async with http.get(f"{api.url}/apis/rbac.authorization.k8s.io/v1/namespaces/ns1/roles") as r:
            assert r.status == 200 and (await r.json())["items"] == []
        async with http.get(f"{api.url}/apis/kubernetes.dask.org/v1/namespaces/ns1/daskclusters") as r:
            assert r.status == 200
    assert api.count("create", "pods", status=409) == 1


@pytest.mark.asyncio
async def test_kubelet_hooks(api):
    started, stopped = [], []

    async def on_start(pod):  # where a later version runs the pod's command locally
        started.append(pod["spec"]["containers"][0]["args"])
        return {"podIP": "127.0.0.2"}

    async with TestKubelet(api, on_start=on_start, on_stop=lambda pod: stopped.append(pod["metadata"]["name"])):
        sp = spawner("lena")
        assert await sp.start() == "http://127.0.0.2:8888"
        assert started == [["jupyterhub-singleuser"]]
        await sp.stop()
        await wait_until(lambda: stopped == ["jupyter-lena"])
