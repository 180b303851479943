"""Tool tasks on the Kubernetes backend: a real local hub whose ``tasks`` service runs each
run as a Job in the user's namespace of a Kubernetes API (kmock's emulator, over HTTP).

Stand-ins, honestly: no Kubernetes runs here, so :class:`kube_harness.jobs.TestJobController`
plays the Job controller and the kubelet: it admits a Job's pod within the namespace's
ResourceQuota and runs its container's command as a local process (so the CLI really runs,
SimpleITK on small volumes from the GCS emulator, the same as the local tests), with the
pod's volumes as local folders. The Slicer environment's image is this Python with
SimpleITK and ctk-cli, its tasks folder the repository's images/slicer/tasks.
Every manifest the service sends is validated with kubernetes-validate (strict, 1.32).
"""

import asyncio
import os
import threading
import time

import kubernetes_validate
import psutil
import pytest
import requests
import yaml

from oggmhub.backends.kubernetes import namespace as user_namespace
from oggmhub.catalog import load_catalog
from oggmhub.choice import resolve_choice
from oggmhub.session import dask_limits
from oggmhub.session import tasks as session_tasks
from oggmhub.tasks import kubernetes as k8s
from support import paths as _paths
from support.kube_harness import KubeAPI, hub_start
from support.kube_harness.jobs import TestJobController
from support.kube_harness.oggmhub import declare, oggmhub_spawner
from support.local_hub import LocalHub
from support.paths import CATALOG
from support.tasks import images_with_a_slow_task, tasks_client, volume_bytes

REPO = str(_paths.REPO)
HUB_NS = "oggmhub"
NS = "oggmhub-alice"  # user_namespace_name("alice", "oggmhub")
VOLUMES = 4
GCS_BUCKETS = {"scans": {**{f"ct/vol{i:03d}.nrrd": volume_bytes(i) for i in range(VOLUMES)},
                         "ct/README.txt": b"four small volumes"},
               "results": {}}
WRITES = ("POST", "PUT", "PATCH", "DELETE")


class KubeThread:
    """kmock's API and the stand-in Job controller on an event loop of their own, in a
    thread: the hub's tasks service (another process) talks to them over HTTP while the
    synchronous tests look on."""

    def __init__(self, **controller):
        self.controller = controller
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def call(self, coro, timeout=30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self):
        self.api = await KubeAPI().start()
        self.jobs = await TestJobController(self.api, **self.controller).start()

    async def _stop(self):
        await self.jobs.stop()
        await self.api.close()

    def __enter__(self):
        self.thread.start()
        self.call(self._start())
        return self

    def __exit__(self, *exc):
        self.call(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def writes(self, since=0):
        return [r for r in self.api.requests[since:] if r.method in WRITES]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tasks-k8s")
    images_with_a_slow_task(folder)
    return folder


@pytest.fixture(scope="module")
def kube(folder):
    homes = folder / "data" / "homes"
    claims = {f"home-{u}": str(homes / u) for u in ("alice", "bob")}
    images = lambda job: {k8s.IMAGE_TASKS: str(folder / "images" / job["metadata"]["labels"]["oggmhub.org/environment"] / "tasks")}  # noqa: E731
    env = {"PYTHONPATH": REPO, "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}
    with KubeThread(claims=claims, image_paths=images, env=env) as kube:
        # alice's namespace as her first spawn left it (her quota: one worker's room for tasks)
        catalog = load_catalog(str(CATALOG))
        choice = resolve_choice(catalog, {"profile": "slicer"})
        limits = dask_limits.limits_for(choice.environment, choice.size).override({"workers": 1, "cores": 2}, "test")
        declare(kube.api, "v1/limitranges", "LimitRange")
        kube.call(kube.api.create("v1/namespaces", {"metadata": {"name": NS, "labels": user_namespace.NAMESPACE_LABELS}}))
        for obj in user_namespace.user_objects(NS, choice, limits, tasks_account=f"{HUB_NS}/hub"):
            resource = {"LimitRange": "v1/limitranges", "ResourceQuota": "v1/resourcequotas",
                        "Role": "rbac.authorization.k8s.io/v1/roles",
                        "RoleBinding": "rbac.authorization.k8s.io/v1/rolebindings"}[obj["kind"]]
            kube.call(kube.api.create(resource, obj, NS))
        yield kube


@pytest.fixture(scope="module")
def hub(folder, kube, gcs):
    catalog = yaml.safe_load(CATALOG.read_text())
    (folder / "mirror").mkdir()
    catalog["datasets"]["oggm-mirror"]["source"] = str(folder / "mirror")
    catalog["datasets"]["scans"] = {"title": "CT scans", "source": "gs://scans", "endpoint": gcs.url}
    (folder / "catalog.yaml").write_text(yaml.safe_dump(catalog, sort_keys=False))
    kubeconfig = kube.api.write_kubeconfig(folder / "kubeconfig")
    config = folder / "tasks_config.py"
    config.write_text(
        "c.TasksSettings.backend = 'kubernetes'\n"
        f"c.TasksSettings.kubeconfig = {kubeconfig!r}\n"
        f"c.TasksSettings.hub_namespace = {HUB_NS!r}\n"
        f"c.TasksSettings.storage_options = {{'gs': {{'endpoint_url': {gcs.url!r}, 'token': 'anon'}}}}\n"
        "c.TasksSettings.user_prefix = 'gs://results/users/{username}/'\n"
        "c.TasksSettings.max_batch = 10\n"
        "c.TasksSettings.max_input_str_bytes = 1000\n")
    hub = LocalHub(folder / "data", catalog=str(folder / "catalog.yaml"), images_dir=str(folder / "images"),
                   env={"OGGMHUB_TASKS_CONFIG": str(config)}).start()
    hub.tasks_url = f"{hub.url}/services/tasks/"
    yield hub
    hub.stop()


@pytest.fixture(scope="module")
def alice(hub):
    return tasks_client(hub, "alice")


def api(client, method, path, **kwargs):
    return requests.request(method, client.url + "api/" + path, headers={"Authorization": f"token {client.token}"},
                            **kwargs)


def job_name(run):
    return f"oggmhub-task-{run['id']}"


def sleeping():
    return [p for p in psutil.process_iter(["cmdline"]) if "Sleep.py" in " ".join(p.info["cmdline"] or [])]


def wait_for(check, timeout, what):
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.2)
    return value


def test_a_run_is_a_job_in_the_users_namespace_and_ends_done_with_its_outputs(hub, alice, kube, gcs):
    import SimpleITK as sitk

    since = len(kube.api.requests)
    run = alice.start("slicer/GaussianBlur", {"sigma": 2}, input_map={"inputVolume": "dataset:scans/ct/vol000.nrrd"},
                      output_map={"outputVolume": "home:blurred/vol000.nrrd"})
    done = alice.wait(run, timeout=120)
    assert done["status"] == "done", done
    path = os.path.join(alice.home, "blurred", "vol000.nrrd")
    assert sitk.ReadImage(path).GetSize() == (12, 12, 6) and os.listdir(os.path.dirname(path)) == ["vol000.nrrd"]
    assert "--sigma 2.0" in alice.log(run)  # the pod's log is the run's log
    assert alice.fetch(run, "outputVolume") == open(path, "rb").read()
    # a Job, then its plan owned by it, in alice's namespace; the plan is deleted once the run ended
    job, config_map = [r for r in kube.writes(since) if r.method == "POST"]
    assert (job.resource, job.namespace, config_map.resource, config_map.namespace) == ("jobs", NS, "configmaps", NS)
    stored = kube.api.get("batch/v1/jobs", NS, job_name(run))
    assert stored["status"]["succeeded"] == 1
    assert config_map.body["metadata"]["ownerReferences"][0]["uid"] == stored["metadata"]["uid"]
    assert kube.api.get("v1/configmaps", NS, job_name(run)) is None
    pod = stored["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"].startswith("ghcr.io/oggmhub/slicer:")
    assert {"name": "home", "persistentVolumeClaim": {"claimName": "home-alice"}} in pod["volumes"]
    # a rerun into alice's bucket prefix
    again = alice.rerun(run, {"sigma": 4}, **{"output-map": {"outputVolume": "gs://results/users/alice/vol000-s4.nrrd"}})
    assert alice.wait(again, timeout=120)["status"] == "done"
    assert gcs.filesystem().cat("results/users/alice/vol000-s4.nrrd") == alice.fetch(again, "outputVolume")


def test_a_failing_task_fails_with_the_tail_of_its_stderr(hub, alice, kube):
    with open(os.path.join(alice.home, "not-a-volume.nrrd"), "w") as f:
        f.write("hello")
    run = alice.start("slicer/GaussianBlur", {}, input_map={"inputVolume": "home:not-a-volume.nrrd"},
                      output_map={"outputVolume": "home:failed/out.nrrd"})
    done = alice.wait(run, timeout=120, check=False)
    assert done["status"] == "failed" and done["returncode"] != 0
    assert "ITK" in done["error"] or "Exception" in done["error"], done["error"]
    assert kube.api.get("batch/v1/jobs", NS, job_name(run))["status"]["failed"] == 1
    assert not os.path.exists(os.path.join(alice.home, "failed", "out.nrrd"))
    with pytest.raises(session_tasks.TaskError, match="has no output"):
        alice.fetch(run, "outputVolume")


def test_cancel_deletes_the_job_in_the_background_and_its_plan(hub, alice, kube):
    run = alice.start("slicer/Sleep", {"seconds": 60}, input_map={"inputFile": "dataset:scans/ct/README.txt"},
                      output_map={"outputFile": "home:slow/readme.txt"})
    wait_for(lambda: alice.status(run)["status"] == "running" and sleeping(), 60, "the Sleep task to run")
    since = len(kube.api.requests)
    assert alice.cancel(run)["status"] == "cancelled"
    deletes = [(r.resource, r.name, r.query.get("propagationPolicy")) for r in kube.writes(since)]
    assert ("jobs", job_name(run), "Background") in deletes and ("configmaps", job_name(run), None) in deletes
    assert kube.api.get("batch/v1/jobs", NS, job_name(run)) is None
    assert kube.api.get("v1/configmaps", NS, job_name(run)) is None
    wait_for(lambda: not sleeping() and not [p for p in kube.api.objects("v1/pods", NS)
                                               if p["metadata"]["labels"]["job-name"] == job_name(run)],
             15, "the Job's pod and process to go")
    time.sleep(1)
    assert alice.status(run)["status"] == "cancelled"
    assert not os.path.exists(os.path.join(alice.home, "slow", "readme.txt"))


def test_a_batch_over_a_dataset_folder_runs_within_the_namespace_quota(hub, alice, kube):
    batch = alice.batch("slicer/OtsuThreshold", "inputVolume", "dataset:scans/ct", "vol*.nrrd",
                        {"outputVolume": "home:labels/"}, {"medianRadius": 1})
    assert batch["summary"]["total"] == VOLUMES
    record = wait_for(lambda: (r := alice.status(batch))["status"] not in ("queued", "running") and r, 240,
                      "the batch to finish")
    assert record["status"] == "done" and record["summary"]["done"] == VOLUMES, record["summary"]
    assert sorted(os.listdir(os.path.join(alice.home, "labels"))) == [f"vol{i:03d}.nrrd" for i in range(VOLUMES)]
    # the quota (room for 2 pods of 2 CPUs) held: Kubernetes queued the rest
    quota = kube.api.get("v1/resourcequotas", NS, user_namespace.QUOTA)["spec"]["hard"]
    assert quota["pods"] == "2" and 1 <= kube.jobs.running_max[NS] <= 2
    children = {f"oggmhub-task-{r['id']}" for r in record["runs"]}
    assert not children & set(kube.api.names("v1/configmaps", NS))


def test_a_cancelled_batch_stops_every_child_and_leaves_nothing(hub, alice, kube):
    batch = alice.batch("slicer/Sleep", "inputFile", "dataset:scans/ct", "vol*.nrrd", {"outputFile": "home:slow/"},
                        {"seconds": 60})
    wait_for(lambda: alice.status(batch)["summary"]["running"] >= 1 and sleeping(), 60, "a child to run")
    record = alice.cancel(batch)
    assert record["status"] == "cancelled" and record["summary"]["cancelled"] == VOLUMES, record["summary"]
    children = {f"oggmhub-task-{r['id']}" for r in record["runs"]}
    assert not children & set(kube.api.names("batch/v1/jobs", NS))
    assert not children & set(kube.api.names("v1/configmaps", NS))
    wait_for(lambda: not sleeping() and not [p for p in kube.api.objects("v1/pods", NS)
                                               if p["metadata"]["labels"]["job-name"] in children],
             15, "the children's pods and processes to go")
    assert not os.path.exists(os.path.join(alice.home, "slow"))


def test_input_str_texts_reach_the_task_as_files(hub, alice, kube):
    run = alice.start("slicer/Sleep", {"seconds": 0}, input_map={"inputFile": "input-str:notes.txt"},
                      output_map={"outputFile": "home:texts/notes.txt"}, input_str={"notes.txt": "glacier\n"})
    assert alice.wait(run, timeout=120)["status"] == "done"
    assert open(os.path.join(alice.home, "texts", "notes.txt")).read() == "glacier\n"


def test_a_refused_job_fails_the_run_saying_why_and_leaves_nothing_half_created(hub, alice, kube):
    body = ({}, {"inputVolume": "dataset:scans/ct/vol002.nrrd"}, {"outputVolume": "home:refused/out.nrrd"})
    kube.api.inject("create", "jobs", status=404, namespace=NS, message=f'namespaces "{NS}" not found')
    run = alice.wait(alice.start("slicer/GaussianBlur", *body), timeout=30, check=False)
    assert run["status"] == "failed" and f"your namespace {NS} does not exist yet: start a server once" in run["error"]
    assert kube.api.get("batch/v1/jobs", NS, job_name(run)) is None
    # the plan refused after its Job was created: the Job goes too
    kube.api.inject("create", "configmaps", status=500, namespace=NS)
    run = alice.wait(alice.start("slicer/GaussianBlur", *body), timeout=30, check=False)
    assert run["status"] == "failed" and "Kubernetes refused the run's Job" in run["error"]
    assert kube.api.get("batch/v1/jobs", NS, job_name(run)) is None
    assert kube.api.get("v1/configmaps", NS, job_name(run)) is None
    assert not os.path.exists(os.path.join(alice.home, "refused"))


BAD = [
    ({"task": "slicer/Nope"}, "task: unknown task 'slicer/Nope'"),
    ({"parameters": {"radius": 1}}, "radius: task slicer/GaussianBlur has no parameter 'radius'"),
    ({"parameters": {"sigma": 80}}, "sigma: 80 is out of range; allowed: a number >= 0.1 and <= 50"),
    ({"output-map": {"outputVolume": "dataset:scans/ct/x.nrrd"}}, "is in a dataset, and datasets are read-only"),
    ({"input-str": {"a.txt": "x" * 1001}}, "input-str: the texts are 1001 bytes; at most 1000 bytes are allowed"),
    ({"input-str": {"../a.txt": "x"}}, "input-str: '../a.txt' is not a plain file name"),
    ({"input-map": {"inputVolume": "input-str:missing.txt"}}, "names no file of input-str"),
]


@pytest.mark.parametrize("change, problem", BAD)
def test_bad_input_is_refused_and_creates_nothing_in_kubernetes(hub, alice, kube, change, problem):
    body = {"task": "slicer/GaussianBlur", "parameters": {},
            "input-map": {"inputVolume": "dataset:scans/ct/vol001.nrrd"},
            "output-map": {"outputVolume": "home:refused/out.nrrd"}, **change}
    since = len(kube.api.requests)
    r = api(alice, "POST", "runs", json=body)
    assert r.status_code == 400, r.text
    assert problem in r.json()["message"]
    time.sleep(0.3)
    assert kube.writes(since) == []  # no object created (nor anything else written)


def test_every_manifest_the_service_sent_is_valid(kube):
    sent = [r.body for r in kube.api.requests if r.method == "POST"]
    assert {b["kind"] for b in sent} == {"Job", "ConfigMap"}
    for manifest in sent:
        kubernetes_validate.validate(manifest, "1.32", strict=True)


# --- the spawner's side -----------------------------------------------------------------------


async def setup_api(api, request):
    declare(api, "v1/limitranges", "LimitRange")


async def test_the_session_knows_the_tasks_service_and_its_namespace_lets_the_service_run_jobs(api, kubelet):
    fast = dict(k8s_api_request_timeout=2, k8s_api_request_retry_timeout=4, start_timeout=10)
    spawner = oggmhub_spawner("Alice.Smith", enable_user_namespaces=True, tasks_url="http://proxy-public/services/tasks/",
                              **fast)
    await hub_start(spawner, {"profile": "slicer"})
    ns = spawner.namespace
    assert ns == user_namespace.user_namespace_name("Alice.Smith", "default")  # the tasks service finds it
    [pod] = api.objects("pods", ns)
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["OGGMHUB_TASKS_URL"] == "http://proxy-public/services/tasks/"
    claim = next(v for v in pod["spec"]["volumes"] if v["name"] == "home")["persistentVolumeClaim"]["claimName"]
    assert claim == user_namespace.home_pvc_name("Alice.Smith")
    role = api.get("rbac.authorization.k8s.io/v1/roles", ns, "oggmhub-tasks")
    binding = api.get("rbac.authorization.k8s.io/v1/rolebindings", ns, "oggmhub-tasks")
    for manifest in (role, binding):
        kubernetes_validate.validate(manifest, "1.32", strict=True)
    rules = {(r["apiGroups"][0], res): set(r["verbs"]) for r in role["rules"] for res in r["resources"]}
    assert rules[("batch", "jobs")] >= {"create", "watch", "delete"} and rules[("", "pods/log")] >= {"get"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "hub", "namespace": "default"}]
    hard = api.get("v1/resourcequotas", ns, user_namespace.QUOTA)["spec"]["hard"]
    assert int(hard["pods"]) > 1  # room for task runs beside the server
    await spawner.stop()
    # without a tasks URL: no variable, no Role
    other = oggmhub_spawner("bob", enable_user_namespaces=True, **fast)
    await hub_start(other, {"profile": "slicer"})
    [pod] = api.objects("pods", other.namespace)
    assert "OGGMHUB_TASKS_URL" not in {e["name"] for e in pod["spec"]["containers"][0]["env"]}
    assert api.get("rbac.authorization.k8s.io/v1/roles", other.namespace, "oggmhub-tasks") is None
    assert api.get("v1/resourcequotas", other.namespace, user_namespace.QUOTA)["spec"]["hard"]["pods"] == "1"
    await other.stop()
    # the tasks service's account, in the hub's namespace or named with its own
    for account, subject in (("tasks-sa", "default/tasks-sa"), ("ops/tasks-sa", "ops/tasks-sa")):
        named = oggmhub_spawner("carol", tasks_url="http://t/", tasks_service_account=account, **fast)
        assert named._tasks_account() == subject
        binding = user_namespace.tasks_role_binding("ns", named._tasks_account())
        assert binding["subjects"][0]["namespace"] + "/" + binding["subjects"][0]["name"] == subject
