"""OGGMHubSpawner against a Kubernetes API server (kmock's emulator + a test kubelet).

Nothing of the Kubernetes client is mocked: kubespawner talks HTTP to the emulator,
whose state the tests inspect. Manifests are validated with kubernetes-validate
(strict, Kubernetes 1.32).
"""

import asyncio
import json
import posixpath

import kubernetes_validate
import pytest
from tornado import web

from oggmhub.backends.kubernetes.pod import UnsafePodError
from oggmhub.backends.kubernetes.spawner import SpawnFailed
from support.kube_harness import hub_start
from support.kube_harness.oggmhub import oggmhub_spawner

NS = "default"
FAST = dict(k8s_api_request_timeout=1, k8s_api_request_retry_timeout=2, start_timeout=10)


def hub_spawner(name="alice", **traits):
    return oggmhub_spawner(name, **{**FAST, **traits})


spawn = hub_start  # what JupyterHub does to start a server


def validate(manifest):
    kubernetes_validate.validate(manifest, "1.32", strict=True)


def notebook_container(pod):
    return next(c for c in pod["spec"]["containers"] if c["name"] == "notebook")


@pytest.mark.parametrize(
    "options, image, cpu_limit, env_var",
    [
        ({"profile": "oggm"}, "ghcr.io/oggmhub/oggm:", "2", "OGGM_DOWNLOAD_CACHE_RO"),
        ({"profile": "slicer", "size": "large"}, "ghcr.io/oggmhub/slicer:", "4", "LIBGL_ALWAYS_SOFTWARE"),
        ({"profile": "fiji", "size": "small"}, "ghcr.io/oggmhub/fiji:", "1", "OGGMHUB_SIZE"),
    ],
)
async def test_start_poll_stop_each_environment(api, kubelet, options, image, cpu_limit, env_var):
    spawner = hub_spawner("alice")
    url = await spawn(spawner, options)
    assert url.startswith("http://127.0.0.1:")
    assert await spawner.poll() is None

    [pod] = api.objects("pods", NS)
    [pvc] = api.objects("persistentvolumeclaims", NS)
    validate(pod)
    validate(pvc)
    container = notebook_container(pod)
    assert container["image"].startswith(image)
    assert container["resources"]["limits"]["cpu"] in (cpu_limit, float(cpu_limit), int(cpu_limit))
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env_var in env and env["OGGMHUB_ENVIRONMENT"] == options["profile"]
    assert pod["metadata"]["labels"]["oggmhub.org/environment"] == options["profile"]
    # safe defaults in the user container
    sc = container["securityContext"]
    assert sc["runAsUser"] == 1000 and sc["runAsNonRoot"] is True
    assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
    assert pod["spec"]["automountServiceAccountToken"] is False
    # the home volume
    home = next(v for v in pod["spec"]["volumes"] if v["name"] == "home")
    assert home["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"] == "home-alice"
    assert {"name": "home", "mountPath": "/home/jovyan"} in container["volumeMounts"]

    await spawner.stop()
    assert await spawner.poll() is not None
    assert api.objects("pods", NS) == []
    assert api.names("persistentvolumeclaims", NS) == ["home-alice"]  # a stop keeps the home


async def test_datasets_are_mounted_by_a_sidecar_the_user_container_stays_unprivileged(api, kubelet):
    spawner = hub_spawner("alice")
    await spawn(spawner, {"profile": "fiji", "datasets": ["oggm-mirror"]})
    [pod] = api.objects("pods", NS)
    validate(pod)
    [mounter] = pod["spec"]["initContainers"]
    assert mounter["image"] == spawner.dataset_mounter_image
    assert mounter["securityContext"]["privileged"] is True
    container = notebook_container(pod)
    # the shipped dataset (OGGM's server) is mounted where OGGM's cache looks: <host>/<path>
    mount_path = "/data/oggm-mirror"
    data_mount = next(m for m in container["volumeMounts"] if m["mountPath"] == posixpath.dirname(mount_path))
    assert data_mount["readOnly"] is True and data_mount["mountPropagation"] == "HostToContainer"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["OGGMHUB_DATASETS"] == "idr-nuclei-3d,oggm-mirror"  # Fiji's own (IDR), and the one added
    entries = {d["name"]: d for d in json.loads(env["OGGMHUB_DATASETS_JSON"])}
    assert entries["oggm-mirror"]["mount_path"] == mount_path
    await spawner.stop()
    # a later spawn without the added dataset mounts the environment's own only
    await spawn(spawner, {"profile": "fiji"})
    [pod] = api.objects("pods", NS)
    env = {e["name"]: e.get("value") for e in notebook_container(pod)["env"]}
    assert env["OGGMHUB_DATASETS"] == "idr-nuclei-3d"
    await spawner.stop()


async def test_home_is_created_once_and_reused_across_restarts_and_environments(api, kubelet):
    spawner = hub_spawner("alice")
    for options in ({"profile": "oggm"}, {"profile": "fiji"}, {"profile": "slicer", "gpu": "t4"}):
        await spawn(spawner, options)
        [pod] = api.objects("pods", NS)
        claims = [v["persistentVolumeClaim"]["claimName"] for v in pod["spec"]["volumes"] if "persistentVolumeClaim" in v]
        assert claims == ["home-alice"]
        await spawner.stop()
    # the hub restarts: a new spawner object from the stored state
    state = spawner.get_state()
    restarted = hub_spawner("alice")
    restarted.load_state(state)
    await spawn(restarted, {"profile": "oggm"})
    await restarted.stop()
    # and a spawner that lost its state finds the existing home instead of making another
    forgetful = hub_spawner("alice")
    await spawn(forgetful, {})
    await forgetful.stop()
    assert api.names("persistentvolumeclaims", NS) == ["home-alice"]
    assert api.count("create", "persistentvolumeclaims", status=200) == 1  # (the emulator answers creates with 200)


async def test_usernames_that_escape_alike_never_share_a_home(api, kubelet):
    names = ["jo.smith", "jo-smith", "Jo_Smith"]
    for name in names:
        spawner = hub_spawner(name)
        await spawn(spawner, {})
        await spawner.stop()
    pvcs = api.names("persistentvolumeclaims", NS)
    assert len(set(pvcs)) == 3, pvcs


async def test_choice_adds_to_the_base_and_a_gpu_never_leaks_into_the_next_spawn(api, kubelet):
    spawner = hub_spawner(
        "alice",
        volumes=[{"name": "shared", "emptyDir": {}}],
        volume_mounts=[{"name": "shared", "mountPath": "/shared"}],
        environment={"SITE": "glacier-lab"},
        node_selector={"pool": "users"},
    )
    await spawn(spawner, {"profile": "slicer", "gpu": "t4"})
    [pod] = api.objects("pods", NS)
    validate(pod)
    container = notebook_container(pod)
    assert {v["name"] for v in pod["spec"]["volumes"]} >= {"home", "shared"}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["SITE"] == "glacier-lab" and env["LIBGL_ALWAYS_SOFTWARE"] == "1"
    assert container["resources"]["limits"]["nvidia.com/gpu"] in ("1", 1)
    assert pod["spec"]["nodeSelector"] == {"pool": "users", "cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["spec"]["tolerations"]
    await spawner.stop()

    await spawn(spawner, {"profile": "slicer", "gpu": "none"})
    [pod] = api.objects("pods", NS)
    container = notebook_container(pod)
    assert "nvidia.com/gpu" not in container["resources"].get("limits", {})
    assert pod["spec"]["nodeSelector"] == {"pool": "users"}
    assert not any(t.get("key") == "nvidia.com/gpu" for t in pod["spec"].get("tolerations", []))
    assert {v["name"] for v in pod["spec"]["volumes"]} >= {"home", "shared"}
    await spawner.stop()


@pytest.mark.parametrize(
    "options, message",
    [
        ({"profile": "matlab"}, "unknown environment 'matlab'"),
        ({"profile": "fiji", "size": "large"}, "size 'large' is not offered for Fiji; choose one of: small, medium"),
        ({"profile": "oggm", "gpu": "t4"}, "GPU variant 't4' is not offered for OGGM"),
        ({"profile": "oggm", "image": "attacker/root"}, "unknown server option 'image'"),
    ],
)
async def test_bad_choices_are_refused_before_anything_is_created(api, kubelet, options, message):
    spawner = hub_spawner("mallory")
    with pytest.raises(web.HTTPError) as info:
        await spawn(spawner, options)
    assert info.value.status_code == 400
    assert message in info.value.jupyterhub_message
    writes = [r for r in api.requests if r.method in ("POST", "PUT", "PATCH", "DELETE")]
    assert writes == []


async def test_tampered_form_is_refused(api):
    spawner = hub_spawner("mallory")
    with pytest.raises(web.HTTPError, match="unexpected form field 'profile-option-oggm--image'"):
        spawner.options_from_form({"profile": ["oggm"], "profile-option-oggm--size": ["small"],
                                   "profile-option-oggm--image": ["attacker/root"]})


async def test_a_root_user_container_is_refused_before_anything_is_created(api, kubelet):
    spawner = hub_spawner("mallory", uid=0)
    spawner.container_security_context = {}
    with pytest.raises(UnsafePodError, match="runAsUser is 0"):
        await spawn(spawner, {})
    assert api.objects("pods", NS) == [] and api.objects("persistentvolumeclaims", NS) == []


async def test_last_choice_is_preselected_and_progress_is_shown(api, kubelet):
    spawner = hub_spawner("alice")
    spawner.user_options = {"profile": "slicer", "size": "large", "gpu": "t4"}
    await spawner._run_apply_user_options(spawner.user_options)
    start = spawner.start()
    messages = [event["message"] async for event in spawner.progress()]
    await start
    assert messages[0] == "Starting 3D Slicer, Large (4 CPU, 16 GB), 1 NVIDIA T4"
    assert any("Started" in m or "Pulled" in m for m in messages[1:]), messages
    await spawner.stop()

    form = await spawner.get_options_form()
    assert 'value="slicer"\n               checked' in form
    assert '"size": "large"' in form and '"gpu": "t4"' in form


# --- the Kubernetes API misbehaves -----------------------------------------------------


async def test_a_500_on_pod_create_gives_a_clear_message_and_no_orphan(api, kubelet):
    api.inject("create", "pods", status=500, times=None, message="etcd is unhappy")
    spawner = hub_spawner("alice")
    with pytest.raises(SpawnFailed) as info:
        await spawn(spawner, {})
    message = str(info.value)
    assert message.startswith("Kubernetes refused to start your server (500 ")
    assert "etcd is unhappy" in message and "CIMultiDictProxy" not in message
    api.clear_faults()
    assert api.objects("pods", NS) == []


async def test_a_409_from_a_stale_pod_is_recovered(api, kubelet):
    api.inject("create", "pods", status=409, times=1)
    spawner = hub_spawner("alice")
    await spawn(spawner, {})
    assert len(api.objects("pods", NS)) == 1
    await spawner.stop()
    assert api.objects("pods", NS) == []


async def test_a_persistent_409_fails_cleanly(api, kubelet):
    api.inject("create", "pods", status=409, times=None)
    spawner = hub_spawner("alice")
    with pytest.raises(SpawnFailed, match="could not start your server in time"):
        await spawn(spawner, {})
    api.clear_faults()
    assert api.objects("pods", NS) == []


async def test_a_create_that_lands_but_never_answers_leaves_no_orphan(api, kubelet):
    api.inject_delay("create", "pods", 30, times=None, after=True)
    spawner = hub_spawner("alice")
    with pytest.raises(SpawnFailed, match="could not start your server in time"):
        await spawn(spawner, {})
    api.clear_faults()
    assert api.objects("pods", NS) == []


async def test_one_slow_create_is_retried_into_exactly_one_pod(api, kubelet):
    api.inject_delay("create", "pods", 30, times=1, after=True)
    spawner = hub_spawner("alice", k8s_api_request_retry_timeout=10)
    await spawn(spawner, {})
    assert len(api.objects("pods", NS)) == 1
    await spawner.stop()


async def test_a_500_on_the_home_volume_leaves_nothing(api, kubelet):
    api.inject("create", "persistentvolumeclaims", status=500, times=None)
    spawner = hub_spawner("alice")
    with pytest.raises(SpawnFailed, match=r"refused to start your server \(500"):
        await spawn(spawner, {})
    api.clear_faults()
    assert api.objects("pods", NS) == [] and api.objects("persistentvolumeclaims", NS) == []


async def test_concurrent_spawns_all_get_their_own_pod_and_home(api, kubelet):
    spawners = [hub_spawner(f"student{i}") for i in range(30)]
    await asyncio.gather(*(spawn(s, {"profile": "oggm"}) for s in spawners))
    assert len(api.objects("pods", NS)) == 30
    assert len(api.objects("persistentvolumeclaims", NS)) == 30
    await asyncio.gather(*(s.stop() for s in spawners))
    assert api.objects("pods", NS) == []
