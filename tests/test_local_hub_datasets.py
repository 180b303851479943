"""Datasets in the local hub: a GCS bucket (emulator) mounted read-only into a user's OGGM
server, OGGM reading its downloads from it offline, and refusals that name the dataset."""

import json
import os
import subprocess

import psutil
import pytest
import yaml

from conftest import CATALOG
from local_hub import LocalHub
from oggmhub.backends.local.environments import default_root

URL = "https://cluster.klima.uni-bremen.de/~oggm/test_files/oggmhub/outlines.csv"
CONTENT = b"rgi_id,area\nRGI60-11.00897,7.96\n"


# conftest's gcs fixture fills them
GCS_BUCKETS = {"oggm-mirror": {"cluster.klima.uni-bremen.de/~oggm/test_files/oggmhub/outlines.csv": CONTENT}}


@pytest.fixture(scope="module")
def hub(tmp_path_factory, gcs):
    folder = tmp_path_factory.mktemp("datasets-hub")
    catalog = yaml.safe_load(CATALOG.read_text())
    catalog["datasets"]["oggm-mirror"].update(source="gs://oggm-mirror", endpoint=gcs.url)
    catalog["datasets"]["unreachable"] = {"title": "A bucket that does not exist",
                                         "source": "gs://no-such-bucket", "endpoint": gcs.url}
    path = folder / "catalog.yaml"
    path.write_text(yaml.safe_dump(catalog, sort_keys=False))
    # the catalog's image contexts stay those of the repository
    hub = LocalHub(folder / "data", catalog=str(path), env={"OGGMHUB_ENV_CACHE": str(default_root())},
                   images_dir=str(CATALOG.parent.parent / "images")).start()
    yield hub
    hub.stop(servers=True)


def server_process(username):
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any("jupyterhub-singleuser" in part for part in proc.info["cmdline"] or []) \
                    and proc.environ().get("JUPYTERHUB_USER") == username:
                return proc
        except psutil.Error:
            continue
    raise LookupError(f"no server process for {username}")


def test_oggm_server_reads_the_mirror_from_a_read_only_mount(hub, gcs):
    session = hub.new_user("glacio")
    hub.salem_stand_in("glacio")
    r = hub.api(session, "POST", "/users/glacio/server", json={"profile": "oggm"})
    assert r.status_code in (201, 202), r.text
    hub.wait_for_server(session, "glacio")

    server = server_process("glacio")
    env = server.environ()
    cache = env["OGGM_DOWNLOAD_CACHE"]
    assert cache == os.path.join(hub.data_dir, "mounts", "glacio", "data", "oggm-mirror")
    assert os.path.ismount(cache)
    assert env["OGGM_DOWNLOAD_CACHE_RO"] == "1"
    assert [d["name"] for d in json.loads(env["OGGMHUB_DATASETS_JSON"])] == ["oggm-mirror"]
    with pytest.raises(OSError, match="Read-only file system"):
        open(os.path.join(cache, "new.txt"), "w")

    # OGGM, in the session's own environment and variables, finds its download in the mount
    code = ("import oggm.cfg as cfg, oggm.utils as utils\n"
            "cfg.initialize_minimal(logging_level='WARNING')\n"
            "cfg.PARAMS['has_internet'] = False\n"
            f"print(utils.file_downloader({URL!r}))\n")
    python = os.path.join(env["VIRTUAL_ENV"], "bin", "python")
    out = subprocess.run([python, "-c", code], env=env, cwd=env["HOME"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    found = out.stdout.strip().splitlines()[-1]
    assert found.startswith(cache) and open(found, "rb").read() == CONTENT

    hub.api(session, "DELETE", "/users/glacio/server")
    hub.stop_servers()
    assert not os.path.ismount(cache)
    assert not [p for p in psutil.process_iter(["cmdline"])
                if "oggmhub.backends.local.mounts" in " ".join(p.info["cmdline"] or []) and cache in " ".join(p.info["cmdline"] or [])]


def test_an_unknown_dataset_is_refused_and_nothing_is_mounted(hub):
    session = hub.new_user("curious")
    r = hub.api(session, "POST", "/users/curious/server", json={"profile": "oggm", "datasets": ["era6"]})
    assert r.status_code == 400
    assert "unknown dataset 'era6'" in r.json()["message"]
    assert not os.path.exists(os.path.join(hub.data_dir, "mounts", "curious"))


def test_an_unreachable_bucket_fails_the_spawn_naming_the_dataset(hub):
    session = hub.new_user("unlucky")
    r = hub.api(session, "POST", "/users/unlucky/server", json={"profile": "oggm", "datasets": ["unreachable"]})
    if r.status_code in (201, 202):  # failed after the hub's slow-spawn timeout: ask the model
        with pytest.raises(RuntimeError):
            hub.wait_for_server(session, "unlucky", timeout=300)
        message = hub.log()
    else:
        message = r.json()["message"]
    assert "dataset 'unreachable'" in message
    model = hub.api(session, "GET", "/users/unlucky").json()
    assert model["servers"] == {}
    mounts = os.path.join(hub.data_dir, "mounts", "unlucky")
    assert not any(os.path.ismount(os.path.join(root, d)) for root, dirs, _ in os.walk(mounts) for d in dirs)
