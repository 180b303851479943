"""``c.DatasetMounts.*`` (docs/datasets.md) takes effect where datasets are mounted: in
the local spawner's mount processes, in ``oggmhub datasets mount`` (the Kubernetes
sidecar's command) through ``$OGGMHUB_MOUNT_OPTIONS``, and on the Kubernetes sidecar.

Real FUSE mounts of a local folder; the options are read back from each mount process's
own command line (``/proc/<pid>/cmdline``) and, where the kernel shows them, from
``/proc/mounts``. What each option then does inside a mount is tested in test_mounts.py.
"""

import dataclasses
import json
import os
import subprocess
import sys

import psutil
import pytest
from traitlets.config import Config

from oggmhub.catalog import Dataset
from oggmhub.choice import resolve_choice
from oggmhub.mounts import options as mount_options
from oggmhub.mounts import process as mounts
from oggmhub.session import datasets as session_datasets
from oggmhub.session import env as session_vars
from support.kube_harness import hub_start
from support.kube_harness.oggmhub import oggmhub_spawner
from support.paths import REPO

# every documented option, each away from its default
CONFIGURED = {
    "block_size": 3 * 2**20, "readahead": 5, "small_file_size": 2**20, "prefetch_files": 3,
    "listings_ttl": 7.5, "kernel_ttl": 2.5, "timeout": 9.0, "read_timeout": 30.0, "threads": True, "allow_other": False,
    "kernel_readahead_kb": 512,
}
FUSE = pytest.mark.skipif(not mounts.fuse_available()[0], reason=f"FUSE unavailable: {mounts.fuse_available()[1]}")


def config():
    c = Config()
    for name, value in CONFIGURED.items():
        c.DatasetMounts[name] = value
    return c


def test_every_documented_option_is_a_trait_with_help_and_configured_differently_here():
    documented = (REPO / "docs" / "datasets.md").read_text()
    traits = mount_options.DatasetMounts.class_traits(config=True)
    assert set(traits) == set(CONFIGURED)
    for name, trait in traits.items():
        assert f"| `{name}` |" in documented, f"docs/datasets.md documents c.DatasetMounts.{name}"
        assert trait.help, name
        assert trait.default_value != CONFIGURED[name], name  # so the tests below can tell


@pytest.fixture
def folder(tmp_path):
    data = tmp_path / "source"
    (data / "rgi").mkdir(parents=True)
    (data / "rgi" / "outlines.csv").write_text("id,area\nRGI60-11.00897,8.0\n")
    return Dataset(name="glaciers", title="Glaciers", source=str(data), mount_path="/data/glaciers")


def serve_options(pid):
    """The options a mount process was started with, from its own command line."""
    argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
    assert argv[1:4] == [b"-m", b"oggmhub.mounts.process", b"serve"], argv
    return json.loads(argv[4])["options"]


def mount_flags(mountpoint):
    for line in open("/proc/mounts"):
        fields = line.split()
        if fields[1] == mountpoint:
            return fields[3].split(",")
    raise AssertionError(f"{mountpoint} is not mounted")


@FUSE
def test_the_local_spawner_mounts_with_the_configured_options(catalog, folder, local_spawner):
    spawner = local_spawner(config=config())
    assert spawner.mount_options.as_dict() == CONFIGURED
    choice = resolve_choice(catalog, {"profile": "oggm"})
    spawner.choice = dataclasses.replace(choice, default_datasets=(folder,), extra_datasets=())
    spawner._mount_datasets()
    try:
        [mount] = spawner._mounts
        assert mount.mountpoint == os.path.join(spawner.mount_root, "data", "glaciers")
        assert open(os.path.join(mount.mountpoint, "rgi", "outlines.csv")).read().startswith("id,area")
        assert serve_options(mount.pid) == CONFIGURED
        # allow_other False, as root where the default is True: the kernel's mount says so
        assert "allow_other" not in mount_flags(mount.mountpoint)
        # the kernel reads ahead as configured on this mount (its backing device's setting)
        device = os.stat(mount.mountpoint).st_dev
        with open(f"/sys/class/bdi/{os.major(device)}:{os.minor(device)}/read_ahead_kb") as f:
            assert int(f.read()) == CONFIGURED["kernel_readahead_kb"]
    finally:
        spawner._unmount_datasets()
    assert not [p for p in mounts.mounted() if p.startswith(spawner.mount_root)]


@FUSE
def test_a_configured_timeout_fails_the_local_spawners_mount_in_that_time(catalog, local_spawner):
    import socket

    c = Config()
    c.DatasetMounts.timeout = 1.5
    spawner = local_spawner(config=c)
    silent = socket.socket()  # takes connections (the kernel's backlog) and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    closed = Dataset(name="era5", title="ERA5", source="gs://era5", mount_path="/data/era5",
                     endpoint=f"http://127.0.0.1:{silent.getsockname()[1]}")
    choice = resolve_choice(catalog, {"profile": "oggm"})
    spawner.choice = dataclasses.replace(choice, default_datasets=(closed,), extra_datasets=())
    try:
        with pytest.raises(mounts.MountError, match=r"dataset 'era5': .* did not answer within 1.5 s"):
            spawner._mount_datasets()
    finally:
        silent.close()
    assert not [p for p in mounts.mounted() if p.startswith(spawner.mount_root)]


def cli_mount(folder, root, options_json, *extra):
    env = {**os.environ, **session_datasets.session_env([folder]), session_vars.MOUNT_OPTIONS: options_json}
    return subprocess.Popen([sys.executable, "-m", "oggmhub", "datasets", "mount", "--from-env", "--root", root,
                             "--wait", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=REPO)


def stop(proc):
    proc.terminate()
    try:
        return proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@FUSE
@pytest.mark.parametrize("timeout_flag, timeout", [((), CONFIGURED["timeout"]), (("--timeout", "4"), 4.0)])
def test_the_cli_mounts_with_the_options_in_its_environment(folder, tmp_path, timeout_flag, timeout):
    root = str(tmp_path / "sidecar")
    proc = cli_mount(folder, root, json.dumps(CONFIGURED), *timeout_flag)
    try:
        line = proc.stdout.readline()
        assert line.startswith(f"mounted glaciers at {root}/data/glaciers"), line + proc.stderr.read()
        [child] = [p for p in psutil.Process(proc.pid).children() if "serve" in p.cmdline()]
        assert serve_options(child.pid) == {**CONFIGURED, "timeout": timeout}  # --timeout wins
        assert "allow_other" not in mount_flags(f"{root}/data/glaciers")
        assert stop(proc) == 0
    finally:
        if proc.poll() is None:
            stop(proc)
        mounts.cleanup_stale_mounts(root)
    assert not [p for p in mounts.mounted() if p.startswith(root)]


@pytest.mark.parametrize("value, message", [
    ('{"block_sise": 1}', "$OGGMHUB_MOUNT_OPTIONS: unknown option 'block_sise'; allowed: allow_other, block_size"),
    ("block_size=1", "$OGGMHUB_MOUNT_OPTIONS is not JSON: 'block_size=1'"),
])
def test_the_cli_refuses_bad_options_naming_them_and_mounts_nothing(folder, tmp_path, value, message):
    root = str(tmp_path / "sidecar")
    proc = cli_mount(folder, root, value)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, out + err
    assert message in err
    assert not [p for p in mounts.mounted() if p.startswith(root)]


async def test_the_kubernetes_sidecar_gets_the_configured_options(api, kubelet):
    spawner = oggmhub_spawner("alice", config=config(), k8s_api_request_timeout=2, k8s_api_request_retry_timeout=4, start_timeout=10)
    await hub_start(spawner, {"profile": "oggm"})  # OGGM mounts the oggm-mirror dataset
    try:
        [pod] = api.objects("pods", "default")
        [sidecar] = [c for c in pod["spec"]["initContainers"] if c["name"] == "oggmhub-datasets"]
        env = {e["name"]: e.get("value") for e in sidecar["env"]}
        assert json.loads(env[session_vars.MOUNT_OPTIONS]) == CONFIGURED
        # what `oggmhub datasets mount` in the sidecar makes of it
        assert mount_options.from_env(env).as_dict() == CONFIGURED
        notebook = next(c for c in pod["spec"]["containers"] if c["name"] == "notebook")
        assert session_vars.MOUNT_OPTIONS not in {e["name"] for e in notebook["env"]}  # the sidecar's only
    finally:
        await spawner.stop()
