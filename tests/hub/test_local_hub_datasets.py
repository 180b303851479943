"""Datasets in the local hub: a GCS bucket (emulator) filled from OGGM's real sample data
(../shared/data) with `oggmhub datasets mirror`, mounted read-only into a user's OGGM
server; the OGGM tutorial runs Hintereisferner from it offline; unreachable datasets are
refused in seconds naming the dataset, or, when the catalog says required: false, the
server starts without them and the session says so."""

import json
import os
import re
import subprocess
import sys

import psutil
import pytest
import yaml

from oggmhub.backends.local.environments import default_root
from support.gcs_emulator import GCSEmulator
from support.local_hub import LocalHub, sample_zip
from support.paths import CATALOG, REPO


@pytest.fixture(scope="module")
def gcs():
    zip_path = sample_zip()  # OGGM's real sample data (../shared/data), or a skip saying it is absent
    with GCSEmulator() as gcs:
        gcs.create_bucket("oggm-mirror")
        # filled the way an operator fills a hub's mirror
        out = subprocess.run([sys.executable, "-m", "oggmhub", "datasets", "mirror", "gs://oggm-mirror",
                              "--endpoint", gcs.url, "--token", "anon", "--tree", zip_path],
                             capture_output=True, text=True, cwd=REPO, timeout=300)
        assert out.returncode == 0, out.stderr
        yield gcs


@pytest.fixture(scope="module")
def hub(tmp_path_factory, gcs):
    folder = tmp_path_factory.mktemp("datasets-hub")
    # the README's offline instructions, exactly: a local folder filled with `oggmhub
    # datasets mirror DEST --tree oggm-sample-data-<commit>.zip`, and `oggm-mirror`'s
    # source pointed at it; nothing else of the shipped catalog changes
    mirror = folder / "oggm-mirror"
    out = subprocess.run([sys.executable, "-m", "oggmhub", "datasets", "mirror", str(mirror), "--tree", sample_zip()],
                         capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr
    os.chmod(folder, 0o755)  # the hub's mount process reads it (as root), users never do directly
    catalog = yaml.safe_load(CATALOG.read_text())
    shipped = dict(catalog["datasets"]["oggm-mirror"])
    catalog["datasets"]["oggm-mirror"]["source"] = str(mirror)
    assert {k for k, v in catalog["datasets"]["oggm-mirror"].items() if shipped.get(k) != v} == {"source"}
    catalog["datasets"]["unreachable"] = {"title": "A bucket that does not exist",
                                         "source": "gs://no-such-bucket", "endpoint": gcs.url}
    catalog["datasets"]["optional"] = {"title": "A server with a typo", "required": False,
                                      "source": "https://cluster.klima.uni-bremen.invalid/~oggm/"}
    path = folder / "catalog.yaml"
    path.write_text(yaml.safe_dump(catalog, sort_keys=False))
    checked = subprocess.run([sys.executable, "-m", "oggmhub", "catalog", "check", str(path)],
                             capture_output=True, text=True, cwd=REPO, timeout=60)
    assert checked.returncode == 0 and "warning" not in checked.stderr, checked.stderr
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

    # what the README promises offline: OGGM's sample data through get_demo_file, from the
    # mount, in the session's own Python and variables (no internet here)
    code = ("from oggm import cfg, utils; cfg.initialize_minimal(logging_level='WARNING'); "
            "cfg.PARAMS['has_internet'] = False; import rasterio; p = utils.get_demo_file('hef_srtm.tif'); "
            "print(p); print(rasterio.open(p).shape)")
    python = os.path.join(env["VIRTUAL_ENV"], "bin", "python")
    out = subprocess.run([python, "-c", code], env=env, cwd=env["HOME"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    demo, shape = out.stdout.strip().splitlines()[-2:]
    assert demo.endswith("hef_srtm.tif") and os.path.getsize(demo) > 100_000, demo
    assert shape.startswith("(") and int(shape.strip("()").split(",")[0]) > 100  # a real DEM, rows x columns

    # the OGGM tutorial the hub put in the home runs, in the session's own environment and
    # variables: a real Hintereisferner run from the mounted mirror, no internet, no stand-in
    tutorial = os.path.join(env["HOME"], "tutorials", "oggm", "oggm-getting-started.ipynb")
    assert os.path.isfile(tutorial)
    executed = os.path.join(hub.data_dir, "executed.ipynb")
    jupyter = os.path.join(env["VIRTUAL_ENV"], "bin", "jupyter")
    out = subprocess.run([jupyter, "execute", f"--output={executed}", tutorial], env=env,
                         cwd=os.path.dirname(tutorial), capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    with open(executed) as f:
        text = "".join("".join(o.get("text", "")) for c in json.load(f)["cells"] for o in c.get("outputs", []))
    match = re.search(r"Hintereisferner: area ([0-9.]+) km2; modelled volume ([0-9.]+) km3 -> ([0-9.]+) km3 after 100 years", text)
    assert match, text[-3000:]
    area, v0, v100 = map(float, match.groups())
    assert area == pytest.approx(8.036, abs=0.001)  # the RGI outline's area
    assert v0 == pytest.approx(0.856, abs=0.02) and 0.3 < v100 < v0  # inverted, then shrinking
    assert f"download cache: {cache} (read-only)" in text
    assert "github.com/OGGM/oggm-sample-data/archive/" in text  # what the mirror holds, listed

    hub.api(session, "DELETE", "/users/glacio/server")
    hub.stop_servers()
    assert not os.path.ismount(cache)
    assert not [p for p in psutil.process_iter(["cmdline"])
                if "oggmhub.mounts.process" in " ".join(p.info["cmdline"] or []) and cache in " ".join(p.info["cmdline"] or [])]


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
    assert "dataset 'unreachable': gs://no-such-bucket" in message
    model = hub.api(session, "GET", "/users/unlucky").json()
    assert model["servers"] == {}
    mounts = os.path.join(hub.data_dir, "mounts", "unlucky")
    assert not any(os.path.ismount(os.path.join(root, d)) for root, dirs, _ in os.walk(mounts) for d in dirs)


def test_an_optional_unreachable_dataset_starts_the_server_without_it_and_says_so(hub):
    session = hub.new_user("hopeful")
    hub.salem_stand_in("hopeful")
    r = hub.api(session, "POST", "/users/hopeful/server", json={"profile": "oggm", "datasets": ["optional"]})
    assert r.status_code in (201, 202), r.text
    hub.wait_for_server(session, "hopeful")
    env = server_process("hopeful").environ()
    code = "import json, oggmhub.session.datasets as d; print(json.dumps(d.unavailable()))"
    python = os.path.join(env["VIRTUAL_ENV"], "bin", "python")
    out = subprocess.run([python, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    reasons = json.loads(out.stdout.strip().splitlines()[-1])
    assert list(reasons) == ["optional"]
    assert "https://cluster.klima.uni-bremen.invalid/~oggm/" in reasons["optional"]
    assert "does not resolve" in reasons["optional"]
    assert "dataset 'optional'" in hub.log() and "starting without it" in hub.log()
    mounts = os.path.join(hub.data_dir, "mounts", "hopeful")
    assert os.path.ismount(os.path.join(mounts, "data", "oggm-mirror"))  # the environment's own, as ever
    assert not os.path.exists(os.path.join(mounts, "data", "optional"))  # nothing left of the other
    hub.api(session, "DELETE", "/users/hopeful/server")
