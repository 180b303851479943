"""A dataset's ``required:`` on Kubernetes: a required one that cannot be reached fails the
start in seconds, naming it, with nothing created; a ``required: false`` one is left out by
the mount sidecar, which names it where the session finds it.

The sidecar part runs the sidecar's real command (``oggmhub datasets mount --from-env
--root / --wait``) with real FUSE on this machine, and its probe's real shell command;
the start part runs OGGMHubSpawner against kmock.
"""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from oggmhub.backends.kubernetes.spawner import SpawnFailed
from oggmhub.catalog import Dataset
from oggmhub.mounts import placeholders as placeholder_mounts
from oggmhub.mounts import process as mounts
from oggmhub.session import datasets as session_datasets
from oggmhub.session import mount_sidecar
from support.kube_harness import hub_start
from support.kube_harness.oggmhub import oggmhub_spawner
from support.paths import REPO

FUSE = pytest.mark.skipif(not mounts.fuse_available()[0], reason=f"FUSE unavailable: {mounts.fuse_available()[1]}")
NOWHERE = "https://no-such-host.invalid/glaciers/"


def catalog_with(tmp_path, required):
    """The shipped catalog, OGGM's environment also mounting a dataset on a host that does not exist."""
    data = yaml.safe_load((REPO / "hub_config" / "catalog.yaml").read_text())
    data["datasets"]["glaciers"] = {"title": "Glaciers", "source": NOWHERE, "mount_path": "/data/glaciers",
                                    "required": required}
    data["environments"]["oggm"]["datasets"] = ["glaciers"]
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


async def test_a_required_dataset_on_a_host_that_does_not_resolve_fails_the_start_in_seconds(api, kubelet, tmp_path):
    spawner = oggmhub_spawner("alice", catalog_path=catalog_with(tmp_path, True), start_timeout=30)
    started = time.monotonic()
    with pytest.raises(SpawnFailed) as info:
        await hub_start(spawner, {"profile": "oggm"})
    assert time.monotonic() - started < 10
    assert str(info.value) == (f"dataset 'glaciers': {NOWHERE} cannot be reached: the host no-such-host.invalid "
                               "does not resolve. Nothing was started.")
    writes = [r for r in api.requests if r.method in ("POST", "PUT", "PATCH", "DELETE")]
    assert writes == []  # no pod, no home volume


@pytest.fixture
def source(tmp_path):
    folder = tmp_path / "source"
    (folder / "rgi").mkdir(parents=True)
    (folder / "rgi" / "outlines.csv").write_text("id,area\nRGI60-11.00897,8.0\n")
    return folder


@FUSE
def test_the_sidecar_starts_without_an_optional_dataset_and_the_session_is_told(tmp_path, source):
    shared = tmp_path / "pod-data"  # the pod's shared folder (an emptyDir at /data)
    good = Dataset(name="outlines", title="Outlines", source=str(source), mount_path=f"{shared}/outlines")
    gone = Dataset(name="era5", title="ERA5", source="https://no-such-host.invalid/era5",
                   mount_path=f"{shared}/era5", required=False)
    env = {**os.environ, **session_datasets.session_env([good, gone]), "PYTHONPATH": str(REPO)}
    sidecar = subprocess.Popen([sys.executable, "-m", "oggmhub", "datasets", "mount", "--from-env", "--root", "/",
                                "--wait"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = sidecar.stdout.readline()
        assert line.startswith(f"mounted outlines at {shared}/outlines"), (line, sidecar.stderr.read())
        assert (shared / "outlines" / "rgi" / "outlines.csv").read_text().startswith("id,area")
        notice = json.loads((shared / ".oggmhub-unavailable.json").read_text())
        assert notice == {"era5": "dataset 'era5': https://no-such-host.invalid/era5 cannot be reached: "
                                  "the host no-such-host.invalid does not resolve"}
        # the session (its environment as the pod has it) is told, and opening it says why
        assert session_datasets.unavailable(env) == notice
        with pytest.raises(session_datasets.DatasetError, match="era5.*not available in this session.*does not resolve"):
            session_datasets.open_dataset(gone, environ=env)
        # the pod's probes (exactly as rendered) pass: a read-only stand-in says why it is empty
        probe = mount_sidecar.sidecar_container([good, gone], "mounter")["startupProbe"]["exec"]["command"]
        assert subprocess.run(probe).returncode == 0
        assert os.listdir(shared / "era5") == ["DATASET-UNAVAILABLE.txt"]
        assert "does not resolve" in (shared / "era5" / "DATASET-UNAVAILABLE.txt").read_text()
        with pytest.raises(OSError, match="Read-only"):
            (shared / "era5" / "mine.txt").write_text("x")
    finally:
        sidecar.send_signal(signal.SIGTERM)
        sidecar.wait(timeout=30)
    assert not [p for p in mounts.mounted() if p.startswith(str(shared))]
    assert not placeholder_mounts.placeholders(str(shared))


@pytest.fixture
def http_404(tmp_path):
    """An HTTP server that answers 404 for the dataset's folder (a typo'd or removed path)."""
    empty = tmp_path / "www"
    empty.mkdir()
    server = subprocess.Popen([sys.executable, "-m", "http.server", "0", "--bind", "127.0.0.1", "-d", str(empty)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = server.stdout.readline()  # "Serving HTTP on 127.0.0.1 port N ..."
    port = int(line.split(" port ")[1].split()[0])
    yield f"http://127.0.0.1:{port}/glaciers/"
    server.terminate()
    server.wait(timeout=10)


def _run_sidecar_as_the_kubelet_would(pod, root, termination_log):
    """The pod's real mount sidecar command, its env as rendered, mounting under ``root``
    (the pod's filesystem); its exit and termination message as a kubelet reports them."""
    sidecar = next(c for c in pod["spec"]["initContainers"] if c["name"] == mount_sidecar.SIDECAR_NAME)
    command = [sys.executable, "-m", "oggmhub", *sidecar["command"][1:]]
    command[command.index("--root") + 1] = str(root)
    env = {**os.environ, **{e["name"]: e["value"] for e in sidecar["env"] if "value" in e},
           "PYTHONPATH": str(REPO), "OGGMHUB_TERMINATION_LOG": str(termination_log)}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, (result.stdout, result.stderr)
    ended = {"exitCode": result.returncode, "reason": "Error", "message": termination_log.read_text()}
    return {"phase": "Pending",
            "initContainerStatuses": [{"name": sidecar["name"], "image": sidecar["image"], "imageID": "",
                                       "ready": False, "restartCount": 1,
                                       "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                                       "lastState": {"terminated": ended}}],
            "containerStatuses": [{"name": "notebook", "image": pod["spec"]["containers"][0]["image"], "imageID": "",
                                   "ready": False, "restartCount": 0,
                                   "state": {"waiting": {"reason": "PodInitializing"}}}]}


async def test_a_required_dataset_answering_404_fails_the_start_in_seconds_with_the_sidecars_sentence(
        api, tmp_path, http_404):
    from support.kube_harness import TestKubelet

    data = yaml.safe_load((REPO / "hub_config" / "catalog.yaml").read_text())
    data["datasets"]["glaciers"] = {"title": "Glaciers", "source": http_404, "mount_path": "/data/glaciers"}
    data["environments"]["oggm"]["datasets"] = ["glaciers"]
    (tmp_path / "catalog.yaml").write_text(yaml.safe_dump(data))
    root = tmp_path / "pod"
    root.mkdir()
    hook = lambda pod: _run_sidecar_as_the_kubelet_would(pod, root, tmp_path / "termination-log")  # noqa: E731
    async with TestKubelet(api, on_start=lambda pod: asyncio.to_thread(hook, pod)):
        spawner = oggmhub_spawner("alice", catalog_path=tmp_path / "catalog.yaml", start_timeout=60)
        started = time.monotonic()
        with pytest.raises(SpawnFailed) as info:
            await hub_start(spawner, {"profile": "oggm"})
        took = time.monotonic() - started
    assert str(info.value) == (f"dataset 'glaciers': {http_404} does not exist (no such bucket, folder or page: "
                               "a typo in the catalog's source?). Nothing was started.")
    assert took < 10, took
    pods = [r for r in api.requests if r.method == "DELETE" and "/pods/" in r.path]
    assert pods, "the failed pod is deleted"
    assert not mounts.mounted() or not [p for p in mounts.mounted() if p.startswith(str(root))]
