"""oggmhub as the zero-to-jupyterhub chart runs it (tests/support/deployment): the chart's
own jupyterhub_config.py and z2jh.py with the chart's values under helm-values/oggmhub.yaml,
the proxy as its own process, the emulated Kubernetes API, and a kubelet whose pods run
(the OGGM environment built from images/oggm/, the home claim, the mount sidecar with
OGGM's mirror read-only).

One deployment for the module; a user starts OGGM, runs code in it through the proxy, stops.
"""

import asyncio
import copy
import json
import os
import secrets
import time

import psutil
import pytest
import requests
import yaml

from support.deployment import Deployment, admin_service
from support.kernels import execute
from support.paths import CATALOG

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="pods need mount namespaces and system accounts: run as root")

TOKEN = secrets.token_hex(16)
TITLE = "OGGM (from hub.extraFiles)"
NAMESPACE = "oggmhub"  # the hub's; each user's pods run in their own, oggmhub-<name>
STALE_TAG = "r2d-000000000000"
# a mirror as `oggmhub datasets mirror` fills it (OGGM's download-cache layout: <host>/<path>)
GCS_BUCKETS = {"oggm-mirror-k8s": {"mirror/cluster.klima.uni-bremen.de/~oggm/MIRROR.txt": b"oggm mirror"}}


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, gcs):
    root = tmp_path_factory.mktemp("deployment")
    data = yaml.safe_load(CATALOG.read_text())
    data["environments"]["oggm"]["display_name"] = TITLE  # the hub reads the mounted file, not the repository's
    # an environment whose image tag no build of images/oggm/ has (a tag never pushed)
    stale = copy.deepcopy(data["environments"]["oggm"])
    stale.update(display_name="OGGM (stale tag)", datasets=[], default=False)
    stale["image"]["tag"] = STALE_TAG
    data["environments"]["oggm-stale"] = stale
    # OGGM's mirror in a bucket (OGGM's server cannot be reached from here): the GCS emulator
    data["datasets"]["oggm-mirror"].update(source="gs://oggm-mirror-k8s/mirror", endpoint=gcs.url)
    # an environment needing a dataset whose bucket does not exist (required: the session
    # cannot start without it)
    missing = copy.deepcopy(data["environments"]["oggm"])
    missing.update(display_name="OGGM (missing data)", datasets=["missing-data"], default=False)
    data["environments"]["oggm-missing"] = missing
    data["datasets"]["missing-data"] = {"title": "Missing data", "source": "gs://oggm-no-such-bucket/data",
                                        "endpoint": gcs.url, "mount_path": "/data/missing", "required": True}
    catalog = root / "catalog.yaml"
    catalog.write_text(yaml.safe_dump(data, sort_keys=False))
    # Dask on Kubernetes (the operator installed, user namespaces, oggmhub's pod policy)
    dask = {"hub": {"config": {"KubeSpawner": {"enable_user_namespaces": True},
                               "OGGMHubSpawner": {"dask_kubernetes": True}}}}
    with Deployment(root, admin_service(TOKEN), dask, catalog=catalog, dask_operator=True) as d:
        yield d


def api(d, method, path, **kwargs):
    return requests.request(method, f"{d.url}/hub/api{path}", headers={"Authorization": f"token {TOKEN}"},
                            timeout=60, **kwargs)


def pod_processes(d):
    """Process ids of every process the kubelet runs for pods now, with their children."""
    pids = set()
    for running in d.cluster.kubelet.runner.pods.values():
        for proc in [running.pause, *running.processes.values()]:
            top = psutil.Process(proc.pid)
            pids |= {top.pid, *(child.pid for child in top.children(recursive=True))}
    return pids


def wait_ready(d, name, timeout=400):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        server = api(d, "GET", f"/users/{name}").json()["servers"].get("")
        if server and server["ready"]:
            return server
        if not server or not server["pending"]:
            raise AssertionError(f"{name}'s server did not start:\n{d.hub_log()[-4000:]}")
        time.sleep(1)
    raise AssertionError(f"{name}'s server not ready within {timeout} s:\n{d.hub_log()[-4000:]}")


def new_kernel(d, name):
    """A kernel in ``name``'s server, through the proxy: its channels' URL and a token."""
    token = api(d, "POST", f"/users/{name}/tokens", json={"note": "test"}).json()["token"]
    r = requests.post(f"{d.url}/user/{name}/api/kernels", headers={"Authorization": f"token {token}"},
                      json={"name": "python3"}, timeout=60)
    assert r.status_code == 201, r.text
    return f"ws://{d.proxy_address}:8000/user/{name}/api/kernels/{r.json()['id']}/channels", token


def test_the_hub_runs_the_charts_config_and_mounts(deployment):
    log = deployment.hub_log()
    assert "Loading pass-through config section hub.config.Catalog" in log  # z2jh's hub.config, from the secret
    assert "Loading extra config: oggmhub-cohorts" in log  # hub.extraConfig: configure_hub
    # the welcome (login) page, through the proxy, lists the catalog mounted from hub.extraFiles
    page = requests.get(f"{deployment.url}/hub/login", timeout=30).text
    assert TITLE in page and "3D Slicer" in page and "Fiji" in page
    # the values' authenticator (oggmhub.accounts.LocalHubAuthenticator): sign-up with approval
    assert 'href="/hub/signup"' in page, page[-2000:]
    assert "oggmhub.accounts.LocalHubAuthenticator" in log or "LocalHubAuthenticator" in log, log[-3000:]
    # the tasks service the chart registers (hub.services) answers through the proxy: it sends
    # visitors to log in with the hub, so it started with the hub's catalog and settings
    deadline = time.monotonic() + 60  # its route is added once it answers
    while True:
        r = requests.get(f"{deployment.url}/services/tasks/", allow_redirects=False, timeout=30)
        if "/hub/api/oauth2/authorize" in r.headers.get("Location", "") or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert r.status_code == 302 and "/hub/api/oauth2/authorize" in r.headers["Location"], deployment.hub_log()[-3000:]


def test_start_oggm_run_code_through_the_proxy_and_stop(deployment):
    d = deployment
    assert api(d, "POST", "/users/ada").status_code == 201
    r = api(d, "POST", "/users/ada/server", json={"profile": "oggm"})
    assert r.status_code in (201, 202), r.text
    wait_ready(d, "ada")
    [pod] = [p for p in d.api.objects("pods") if p["metadata"]["name"] == "jupyter-ada"]
    ns = pod["metadata"]["namespace"]
    assert ns == f"{NAMESPACE}-ada", ns  # the user's own namespace (KubeSpawner.enable_user_namespaces)
    assert pod["metadata"]["labels"]["helm.sh/chart"].startswith("jupyterhub-")  # the chart's common labels
    assert pod["metadata"]["labels"]["oggmhub.org/environment"] == "oggm"
    assert pod["spec"]["securityContext"]["fsGroup"] == 100  # singleuser.fsGid
    [notebook] = [c for c in pod["spec"]["containers"] if c["name"] == "notebook"]
    assert notebook["securityContext"]["runAsUser"] == 1000  # singleuser.uid
    homes = [v["persistentVolumeClaim"]["claimName"] for v in pod["spec"]["volumes"] if "persistentVolumeClaim" in v]
    assert homes == ["home-ada"]
    address = pod["status"]["podIP"]
    assert address.startswith(d.network.prefix + ".")

    ws, token = new_kernel(d, "ada")
    out = asyncio.run(execute(ws, token, (
        "import os, pathlib\n"
        "from importlib.metadata import version\n"
        "pathlib.Path('kept.txt').write_text('from the notebook')\n"
        "print(os.getuid(), os.getcwd(), version('oggm'), os.environ['OGGMHUB_ENVIRONMENT'])\n"
        "print(sorted(os.listdir(os.path.expanduser('~/tutorials'))))\n"
        "from oggmhub.session.datasets import unavailable\n"
        "mirror = pathlib.Path(os.environ['OGGM_DOWNLOAD_CACHE'], 'cluster.klima.uni-bremen.de/~oggm')\n"
        "print(unavailable(), (mirror / 'MIRROR.txt').read_text())\n"
        "try:\n"
        "    (mirror / 'mine.txt').write_text('x')\n"
        "except OSError as e:\n"
        "    print('refused:', e.strerror)\n"), timeout=180))
    lines = out.splitlines()
    assert lines[0].split() == ["1000", "/home/jovyan", "1.6.3", "oggm"], out
    assert lines[1] == "['oggm']", out  # the image's start script merged the tutorials into the home
    # the mount sidecar ran its real command in the pod; the notebook container sees its mount,
    # read-only
    assert lines[2] == "{} oggm mirror", out
    assert lines[3] == "refused: Read-only file system", out

    # Dask: cluster(workers=2) from the notebook; the operator makes the scheduler and two
    # worker pods, which run real `dask scheduler`/`dask worker` processes of the image
    out = asyncio.run(execute(ws, token, (
        "import os, socket\n"
        "from oggmhub.session.dask import cluster\n"
        "c, client = cluster(workers=2, timeout=240)\n"
        "client.wait_for_workers(2, timeout=240)\n"
        "futures = client.map(lambda x: (x * x, socket.gethostname(), os.getpid()), range(40))\n"
        "results = client.gather(futures)\n"
        "print('sum', sum(r[0] for r in results), len({r[2] for r in results}), len(client.scheduler_info()['workers']))\n"
        "print('kernel', os.getpid())\n"), timeout=400))
    lines = [" ".join(line.split()[1:]) for line in out.splitlines() if line.split()[:1] in (["sum"], ["kernel"])]
    assert lines[0].split()[0] == str(sum(x * x for x in range(40))), out
    assert lines[0].split()[2] == "2", out  # two workers joined the scheduler
    [dask_cluster] = d.api.objects("daskclusters", ns)
    dask_pods = [p for p in d.api.objects("pods", ns) if "dask.org/cluster-name" in p["metadata"]["labels"]]
    components = sorted(p["metadata"]["labels"]["dask.org/component"] for p in dask_pods)
    assert components == ["scheduler", "worker", "worker"], components
    assert all(p["status"]["phase"] == "Running" for p in dask_pods)
    commands = sorted(p["spec"]["containers"][0]["args"][:2] for p in dask_pods)
    assert commands == [["dask", "scheduler"], ["dask", "worker"], ["dask", "worker"]], commands
    assert int(lines[0].split()[1]) >= 1  # the work ran in worker processes, not the kernel
    kernel_pid = int(lines[1])
    worker_pids = set()
    for p in dask_pods:
        running = d.cluster.kubelet.runner.pods[p["metadata"]["uid"]]
        worker_pids |= {proc.pid for proc in running.processes.values()}
    assert kernel_pid not in worker_pids

    pids = pod_processes(d)
    assert len(pids) >= 4 + 3  # the pod's sandbox, sidecar, server, kernel; the Dask pods (at least)
    assert api(d, "DELETE", "/users/ada/server").status_code in (202, 204)
    deadline = time.monotonic() + 60
    while (d.api.objects("pods", ns) or d.cluster.kubelet.runner.pods) and time.monotonic() < deadline:
        time.sleep(0.5)
    # stopping the server removed its DaskCluster, and with it the Dask pods and processes
    assert d.api.objects("daskclusters", ns) == [] and d.api.objects("daskworkergroups", ns) == []
    assert d.api.objects("pods", ns) == [] and d.cluster.kubelet.runner.pods == {}
    assert [s["metadata"]["name"] for s in d.api.objects("services", ns)] == []
    left = [p.info["cmdline"] for p in psutil.process_iter(["pid", "cmdline"]) if p.info["pid"] in pids]
    assert left == [], left  # nothing of the pod runs on (sidecar, server, kernels, sandbox)
    home = os.path.join(d.root, "node", "volumes", ns, "home-ada")
    assert open(os.path.join(home, "kept.txt")).read() == "from the notebook"  # the claim outlives the pod


def test_an_image_that_cannot_be_had_ends_the_start_in_one_sentence(deployment):
    """The kubelet reports ErrImagePull: the start ends at once (not after start_timeout),
    the user reads one sentence naming the image, and no pod is left."""
    d = deployment
    api(d, "POST", "/users/bob")
    began = time.monotonic()
    assert api(d, "POST", "/users/bob/server", json={"profile": "oggm-stale"}).status_code in (201, 202)
    while api(d, "GET", "/users/bob").json()["servers"].get("", {}).get("pending") and time.monotonic() - began < 300:
        time.sleep(0.5)
    assert time.monotonic() - began < 120  # singleuser.startTimeout is 600 s
    assert api(d, "GET", "/users/bob").json()["servers"] == {}
    progress = requests.get(f"{d.url}/hub/api/users/bob/server/progress", headers={"Authorization": f"token {TOKEN}"},
                            timeout=30).text
    events = [json.loads(line[5:]) for line in progress.splitlines() if line.startswith("data:")]
    [failed] = [e for e in events if e.get("failed")]
    message = failed["message"]
    assert f"oggm:{STALE_TAG}" in message and "ErrImagePull" in message and "Nothing was left running" in message, message
    assert d.api.objects("pods", f"{NAMESPACE}-bob") == [] and d.cluster.kubelet.runner.pods == {}


def test_without_the_dask_operator_the_notebook_reads_one_sentence(deployment):
    """The operator not installed (no DaskCluster resource in the API): cluster() ends at
    once with one sentence, and nothing is created."""
    d = deployment
    api(d, "POST", "/users/cleo")
    assert api(d, "POST", "/users/cleo/server", json={"profile": "oggm"}).status_code in (201, 202)
    wait_ready(d, "cleo")
    # the API answers for DaskClusters and DaskWorkerGroups as one without their CRDs: 404
    for resource in ("daskclusters", "daskworkergroups"):
        d.api.inject(None, f"kubernetes.dask.org/v1/{resource}", status=404, times=None,
                     namespace=f"{NAMESPACE}-cleo", reason="NotFound", message="the server could not find the requested resource")
    try:
        ws, token = new_kernel(d, "cleo")
        out = asyncio.run(execute(ws, token, (
            "import time\n"
            "from oggmhub.session.dask import cluster, DaskStartError\n"
            "began = time.monotonic()\n"
            "try:\n"
            "    cluster(workers=2, timeout=120)\n"
            "except DaskStartError as e:\n"
            "    print('error', round(time.monotonic() - began), '|', e)\n"), timeout=180))
    finally:
        d.api.clear_faults()
    [line] = [line for line in out.splitlines() if line.startswith("error ")] or [out]
    seconds, message = line[len("error "):].split(" | ", 1)
    assert int(seconds) < 30, line  # not after the 120 s timeout
    assert message.count(". ") == 0 and message.endswith(".") and "no Dask operator" in message, message
    ns = f"{NAMESPACE}-cleo"
    assert d.api.objects("daskclusters", ns) == [] and d.api.objects("daskworkergroups", ns) == []
    assert api(d, "DELETE", "/users/cleo/server").status_code in (202, 204)


def failure_message(d, name):
    """The failed start's message on the spawn page (its progress events)."""
    progress = requests.get(f"{d.url}/hub/api/users/{name}/server/progress",
                            headers={"Authorization": f"token {TOKEN}"}, timeout=30).text
    events = [json.loads(line[5:]) for line in progress.splitlines() if line.startswith("data:")]
    [failed] = [e for e in events if e.get("failed")]
    return failed["message"]


def test_a_required_dataset_that_is_missing_ends_the_start_in_one_sentence(deployment):
    """The mount sidecar cannot mount a required dataset (its bucket does not exist): the
    pod fails, the user reads why, naming the dataset, and nothing is left."""
    d = deployment
    api(d, "POST", "/users/dora")
    began = time.monotonic()
    assert api(d, "POST", "/users/dora/server", json={"profile": "oggm-missing"}).status_code in (201, 202)
    while api(d, "GET", "/users/dora").json()["servers"].get("", {}).get("pending") and time.monotonic() - began < 300:
        time.sleep(0.5)
    assert time.monotonic() - began < 120  # singleuser.startTimeout is 600 s
    assert api(d, "GET", "/users/dora").json()["servers"] == {}
    message = failure_message(d, "dora")
    assert "missing-data" in message and "oggm-no-such-bucket" in message, message
    assert "does not exist" in message and message.endswith("Nothing was started."), message  # the sidecar's words
    assert d.api.objects("pods", f"{NAMESPACE}-dora") == [] and d.cluster.kubelet.runner.pods == {}
    assert not [line for line in open("/proc/mounts") if "/data/missing" in line]
