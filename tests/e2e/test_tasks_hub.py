"""Tool tasks on a real local hub: the ``tasks`` service (JupyterHub OAuth and scopes), its
REST API, runs on real Dask clusters over data in the GCS emulator, batches, cancels,
refusals, the notebook helper, and the form in Chromium.

Stand-ins, honestly: the Slicer environment cannot be built here (its apt.txt packages and
Slicer's download), so its CLIs run in the test's Python, which has SimpleITK and ctk-cli
(``c.TasksSettings.environment_python``); the Fiji script runs through Debian's ImageJ 1
(oggmhub.session.fiji's fallback), as in the Fiji tests.
"""

import json
import os
import sys
import time

import psutil
import pytest
import requests
import yaml

from oggmhub.backends.local.environments import default_root
from oggmhub.session import tasks as session_tasks
from support import paths as _paths
from support.gcs_emulator import GCSEmulator
from support.local_hub import LocalHub
from support.paths import CATALOG
from support.imaging_data import IMAGE, SERIES, imaging_objects, session_variables, tutorial_script
from support.tasks import images_with_a_slow_task, tasks_client, volume_bytes

REPO = str(_paths.REPO)
VOLUMES = 10


@pytest.fixture(scope="module")
def gcs():
    with GCSEmulator() as gcs:
        gcs.create_bucket("scans")
        gcs.create_bucket("results")
        fs = gcs.filesystem()
        for i in range(VOLUMES):
            fs.pipe(f"scans/ct/vol{i:03d}.nrrd", volume_bytes(i))
        fs.pipe("scans/ct/README.txt", b"ten small volumes")
        gcs.create_bucket("imaging")  # real small images, laid out as IDC and IDR lay out theirs
        fs.pipe({f"imaging/{key}": value for key, value in imaging_objects().items()})
        yield gcs


@pytest.fixture(scope="module")
def hub(tmp_path_factory, gcs):
    folder = tmp_path_factory.mktemp("tasks-hub")
    catalog = yaml.safe_load(CATALOG.read_text())
    (folder / "mirror").mkdir()
    catalog["datasets"]["oggm-mirror"]["source"] = str(folder / "mirror")
    catalog["datasets"]["scans"] = {"title": "CT scans", "source": "gs://scans", "endpoint": gcs.url}
    (folder / "catalog.yaml").write_text(yaml.safe_dump(catalog, sort_keys=False))
    images = images_with_a_slow_task(folder)
    config = folder / "tasks_config.py"
    config.write_text(
        f"c.TasksSettings.environment_python = {{'slicer': {sys.executable!r}, 'fiji': {sys.executable!r}}}\n"
        f"c.TasksSettings.storage_options = {{'gs': {{'endpoint_url': {gcs.url!r}, 'token': 'anon'}}}}\n"
        "c.TasksSettings.user_prefix = 'gs://results/users/{username}/'\n"
        "c.TasksSettings.max_batch = 10\n"
        "c.TasksSettings.max_workers = 2\n")
    hub = LocalHub(folder / "data", catalog=str(folder / "catalog.yaml"), images_dir=str(images),
                   env={"OGGMHUB_TASKS_CONFIG": str(config), "OGGMHUB_ENV_CACHE": str(default_root())}).start()
    hub.tasks_url = f"{hub.url}/services/tasks/"
    yield hub
    hub.stop()


def service_process(hub):
    for proc in psutil.Process(hub.proc.pid).children(recursive=True):
        if "oggmhub.tasks.service" in " ".join(proc.cmdline()):
            return proc
    raise LookupError(f"no tasks service running:\n{hub.log()[-3000:]}")


def workers_of(service):
    """The service's child processes but multiprocessing's resource tracker (it outlives workers)."""
    return [" ".join(p.cmdline()) for p in service.children(recursive=True)
            if "resource_tracker" not in " ".join(p.cmdline())]



@pytest.fixture(scope="module")
def alice(hub):
    return tasks_client(hub, "alice")


def api(client, method, path, **kwargs):
    return requests.request(method, client.url + "api/" + path, headers={"Authorization": f"token {client.token}"},
                            **kwargs)


def test_the_service_lists_tasks_and_their_specs_to_users_with_the_scope(hub, alice):
    ids = [t["id"] for t in alice.list()]
    assert {"slicer/GaussianBlur", "slicer/OtsuThreshold", "fiji/InvertAndMeasure"} <= set(ids)
    spec = alice.spec("slicer/GaussianBlur")
    sigma = next(p for p in spec["parameters"] if p["name"] == "sigma")
    assert (sigma["minimum"], sigma["maximum"], sigma["default"]) == (0.1, 50.0, 1.0)
    xml = api(alice, "GET", "tasks/slicer/GaussianBlur/xml")
    assert xml.headers["Content-Type"].startswith("application/xml") and "<executable>" in xml.text
    assert "#@ Integer" in api(alice, "GET", "tasks/fiji/InvertAndMeasure/xml").text
    # no token: no access; a token without the scope: no access either
    assert requests.get(alice.url + "api/tasks", allow_redirects=False).status_code in (302, 403)
    r = hub.api(alice.session, "POST", "/users/alice/tokens", json={"scopes": ["read:users:name!user=alice"]})
    other = requests.get(alice.url + "api/tasks", headers={"Authorization": f"token {r.json()['token']}"},
                         allow_redirects=False)
    assert other.status_code == 403


def test_a_run_reads_a_dataset_and_writes_the_home_then_reruns_into_the_users_bucket(hub, alice, gcs):
    import SimpleITK as sitk

    run = alice.start("slicer/GaussianBlur", {"sigma": 2}, input_map={"inputVolume": "dataset:scans/ct/vol000.nrrd"},
                      output_map={"outputVolume": "home:blurred/vol000.nrrd"})
    assert run["status"] == "queued" and run["values"] == {"sigma": 2.0}
    done = alice.wait(run, timeout=180)
    assert done["status"] == "done", done
    path = os.path.join(alice.home, "blurred", "vol000.nrrd")
    assert sitk.ReadImage(path).GetSize() == (12, 12, 6)
    assert os.listdir(os.path.dirname(path)) == ["vol000.nrrd"]
    assert "blurred" in alice.log(run) and "--sigma 2.0" in alice.log(run)
    outputs = api(alice, "GET", f"runs/{run['id']}/outputs").json()["outputs"]
    assert outputs["outputVolume"]["location"] == "home:blurred/vol000.nrrd"
    assert alice.fetch(run, "outputVolume") == open(path, "rb").read()

    again = alice.rerun(run, {"sigma": 4}, **{"output-map": {"outputVolume": "gs://results/users/alice/vol000-s4.nrrd"}})
    assert again["values"] == {"sigma": 4.0} and again["inputs"] == run["inputs"]
    assert alice.wait(again, timeout=180)["status"] == "done"
    blurred_more = gcs.filesystem().cat("results/users/alice/vol000-s4.nrrd")
    assert blurred_more == alice.fetch(again, "outputVolume") and blurred_more != open(path, "rb").read()
    assert alice.status(again)["rerun_of"] == run["id"]


BAD = [
    ({"task": "slicer/Nope"}, "task: unknown task 'slicer/Nope'; this hub's tasks: "),
    ({"parameters": {"radius": 1}}, "radius: task slicer/GaussianBlur has no parameter 'radius'"),
    ({"input-map": {}}, "inputVolume: required (Input Volume)"),
    ({"parameters": {"sigma": "wide"}}, "sigma: 'wide' is not a number >= 0.1 and <= 50"),
    ({"parameters": {"sigma": 80}}, "sigma: 80 is out of range; allowed: a number >= 0.1 and <= 50"),
    ({"task": "slicer/OtsuThreshold", "parameters": {"foreground": "left"}}, "foreground: 'left' is not one of 'above', 'below'"),
    ({"input-map": {"inputVolume": "{data}/homes/bob/secret.nrrd"}}, "inputVolume: '{data}/homes/bob/secret.nrrd' is in another user's home"),
    ({"input-map": {"inputVolume": "{data}/jupyterhub.sqlite"}}, "is in the hub's data directory"),
    ({"input-map": {"inputVolume": "../bob/secret.nrrd"}}, "inputVolume: '../bob/secret.nrrd' leaves its folder with '..'"),
    ({"output-map": {"outputVolume": "dataset:scans/ct/vol000.nrrd"}}, "outputVolume: 'dataset:scans/ct/vol000.nrrd' is in a dataset, and datasets are read-only"),
    ({"output-map": {"outputVolume": "gs://results/users/bob/x.nrrd"}}, "outputVolume: 'gs://results/users/bob/x.nrrd' is outside your space; allowed: home:PATH (a relative path in your home) or a URL under gs://results/users/alice/"),
    ({"output-map": {"outputVolume": "gs://scans/ct/x.nrrd"}}, "is outside your space"),
    ({"parameters": {"sigma": "9" * 10**6}}, "sigma: the value is 1000000 characters long; at most 10000 are allowed"),
    ({"batch": {"parameter": "inputVolume", "folder": "dataset:scans/ct", "glob": "*",
                "outputs": {"outputVolume": "home:many/"}}}, "batch: 11 objects match, more than your budget of 10 runs a batch"),
    ({"batch": {"parameter": "inputVolume", "folder": "dataset:scans/ct", "glob": "*.nrrd",
                "outputs": {"outputVolume": "dataset:scans/out/"}}}, "outputVolume: 'dataset:scans/out/' is in a dataset, and datasets are read-only"),
]


@pytest.mark.parametrize("change, problem", BAD)
def test_bad_requests_are_refused_with_400_naming_what_is_allowed_and_nothing_starts(hub, alice, gcs, change, problem):
    body = {"task": "slicer/GaussianBlur", "parameters": {},
            "input-map": {"inputVolume": "dataset:scans/ct/vol001.nrrd"},
            "output-map": {"outputVolume": "home:refused/out.nrrd"}}
    body.update({k: v for k, v in change.items() if k != "batch"})
    if "batch" in change:
        body = {"task": "slicer/GaussianBlur", "batch": change["batch"]}
    body = json.loads(json.dumps(body).replace("{data}", hub.data_dir))
    before = len(api(alice, "GET", "runs").json()["runs"])
    objects = sorted(gcs.filesystem().find("results"))
    r = api(alice, "POST", "runs", json=body)
    assert r.status_code == 400, r.text
    assert problem.replace("{data}", hub.data_dir) in r.json()["message"]
    assert len(api(alice, "GET", "runs").json()["runs"]) == before
    assert not os.path.exists(os.path.join(alice.home, "refused"))
    assert sorted(gcs.filesystem().find("results")) == objects


def test_no_user_reaches_another_users_runs(hub, alice):
    run = alice.start("slicer/GaussianBlur", {}, input_map={"inputVolume": "dataset:scans/ct/vol004.nrrd"},
                      output_map={"outputVolume": "home:private/vol004.nrrd"})
    bob = hub.new_user("bob")
    token = hub.api(bob, "POST", "/users/bob/tokens", json={"scopes": ["access:services!service=tasks"]}).json()["token"]
    bob_client = session_tasks.Client(hub.tasks_url, token)
    for call in (bob_client.status, bob_client.log, bob_client.cancel, lambda r: bob_client.fetch(r, "outputVolume")):
        with pytest.raises(session_tasks.TaskError, match="you have no run"):
            call(run)
    assert run["id"] not in [r["id"] for r in bob_client.request("GET", "runs")["runs"]]
    assert alice.wait(run, timeout=180)["status"] == "done"


def test_a_failing_tool_fails_the_run_with_its_stderr_and_writes_no_output(hub, alice):
    with open(os.path.join(alice.home, "not-a-volume.nrrd"), "w") as f:
        f.write("hello")
    run = alice.start("slicer/GaussianBlur", {}, input_map={"inputVolume": "home:not-a-volume.nrrd"},
                      output_map={"outputVolume": "home:failed/out.nrrd"})
    done = alice.wait(run, timeout=180, check=False)
    assert done["status"] == "failed" and done["returncode"] != 0
    assert "ITK" in done["error"] or "Exception" in done["error"]
    assert not os.path.exists(os.path.join(alice.home, "failed", "out.nrrd"))
    with pytest.raises(session_tasks.TaskError, match="has no output"):
        alice.fetch(run, "outputVolume")


def test_a_batch_runs_one_child_per_matching_object_with_a_summary(hub, alice):
    batch = alice.batch("slicer/OtsuThreshold", "inputVolume", "dataset:scans/ct", "vol*.nrrd",
                        {"outputVolume": "home:labels/"}, {"medianRadius": 1})
    assert batch["kind"] == "batch" and batch["summary"]["total"] == VOLUMES
    deadline = time.monotonic() + 300
    while (record := alice.status(batch))["status"] in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(1)
    assert record["status"] == "done" and record["summary"]["done"] == VOLUMES, record["summary"]
    assert sorted(os.listdir(os.path.join(alice.home, "labels"))) == [f"vol{i:03d}.nrrd" for i in range(VOLUMES)]
    child = alice.status(record["runs"][3]["id"])
    assert child["parent"] == batch["id"] and child["inputs"] == {"inputVolume": "dataset:scans/ct/vol003.nrrd"}


def test_cancelling_a_batch_stops_its_children_and_leaves_no_worker(hub, alice):
    service = service_process(hub)
    batch = alice.batch("slicer/Sleep", "inputFile", "dataset:scans/ct", "vol*.nrrd",
                        {"outputFile": "home:slow/"}, {"seconds": 60})
    deadline = time.monotonic() + 120
    while alice.status(batch)["summary"]["running"] < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert alice.status(batch)["summary"]["running"] == 2  # the budget: 2 workers
    sleeping = [p for p in psutil.process_iter(["cmdline"]) if "Sleep.py" in " ".join(p.info["cmdline"] or [])]
    assert len(sleeping) == 2
    record = alice.cancel(batch)
    assert record["status"] == "cancelled" and record["summary"]["cancelled"] == VOLUMES, record["summary"]
    psutil.wait_procs(sleeping, timeout=15)
    assert not [p for p in psutil.process_iter(["cmdline"]) if "Sleep.py" in " ".join(p.info["cmdline"] or [])]
    deadline = time.monotonic() + 30
    while workers_of(service) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert workers_of(service) == []  # no Dask worker left behind
    assert not os.path.exists(os.path.join(alice.home, "slow"))
    # a cancelled single run
    run = alice.start("slicer/Sleep", {"seconds": 60}, input_map={"inputFile": "dataset:scans/ct/README.txt"},
                      output_map={"outputFile": "home:slow/readme.txt"})
    while alice.status(run)["status"] == "queued" and time.monotonic() < deadline + 60:
        time.sleep(0.5)
    assert alice.cancel(run)["status"] == "cancelled"
    assert alice.wait(run, timeout=30)["status"] == "cancelled"
    assert not os.path.exists(os.path.join(alice.home, "slow", "readme.txt"))


def test_a_fiji_script_runs_with_its_declared_parameters(hub, alice):
    import numpy as np
    import SimpleITK as sitk

    sitk.WriteImage(sitk.GetImageFromArray((np.arange(32 * 32).reshape(32, 32) % 200).astype("uint8")),
                    os.path.join(alice.home, "cells.tif"))
    run = alice.start("fiji/InvertAndMeasure", {"radius": 0, "format": "Tiff"},
                      input_map={"input": "home:cells.tif"}, output_map={"output": "home:fiji/inverted.tif"})
    done = alice.wait(run, timeout=240)
    assert done["status"] == "done", alice.log(run)
    assert "mean after invert" in alice.log(run) and "ij1" in alice.log(run)  # Debian's ImageJ stood in
    inverted = sitk.GetArrayFromImage(sitk.ReadImage(os.path.join(alice.home, "fiji", "inverted.tif")))
    assert int(inverted[0, 0]) == 255 and int(inverted[0, 1]) == 254


@pytest.mark.browser
def test_the_form_runs_a_task_in_chromium_and_lists_it_in_the_history(hub, alice):
    from support.browser import chromium, login, screenshot

    with open(os.path.join(alice.home, "picked.nrrd"), "wb") as f:
        f.write(volume_bytes(7))
    with chromium() as browser:
        page = browser.new_page()
        login(page, hub, "alice", "correct-horse-42")
        styles = []
        page.on("response", lambda r: styles.append(r.status) if r.url.endswith("/hub/static/css/style.min.css") else None)
        page.goto(hub.tasks_url + "form/slicer/GaussianBlur")
        page.wait_for_selector("#task-form")
        # it looks like the hub's pages: the hub's stylesheet, its bar with the way home and the user
        assert styles == [200]
        assert page.evaluate("getComputedStyle(document.querySelector('#run')).backgroundColor") != \
            page.evaluate("getComputedStyle(document.createElement('button')).backgroundColor")
        assert page.get_attribute("nav a.navbar-brand", "href") == "/hub/home"
        assert page.inner_text("nav .navbar-text") == "alice"
        assert page.get_attribute("#p-sigma", "max") == "50" and page.get_attribute("#p-sigma", "min") == "0.1"
        assert page.input_value("#p-sigma") == "1.0"
        page.wait_for_function("document.querySelectorAll('#files-home-and-datasets option').length > 5")
        options = page.eval_on_selector_all("#files-home-and-datasets option", "els => els.map(e => e.value)")
        assert "dataset:scans/ct/vol002.nrrd" in options and "home:picked.nrrd" in options
        page.fill("#p-sigma", "1.5")
        page.fill("#p-inputVolume", "dataset:scans/ct/vol002.nrrd")
        page.fill("#p-outputVolume", "home:form/vol002.nrrd")
        page.click("#run")
        page.wait_for_selector("#result[data-status]", timeout=180_000)
        screenshot(page, "tasks-form-run")
        assert page.get_attribute("#result", "data-status") == "done", page.inner_text("#result")
        assert page.locator("#result a.output").count() == 1
        assert os.path.isfile(os.path.join(alice.home, "form", "vol002.nrrd"))
        # a refusal shows the service's message
        page.fill("#p-outputVolume", "dataset:scans/x.nrrd")
        page.click("#run")
        page.wait_for_selector("#result.error")
        assert "datasets are read-only" in page.inner_text("#result")
        page.reload()
        assert page.locator("#history tr[data-run] .status.done").count() >= 1
        page.goto(hub.tasks_url)
        assert page.locator("#tasks a", has_text="Otsu Threshold").count() == 1
        page.set_viewport_size({"width": 390, "height": 844})  # a phone: nothing wider than the screen
        page.goto(hub.tasks_url + "form/slicer/GaussianBlur")
        screenshot(page, "tasks-form-phone")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390


def test_a_notebook_starts_waits_and_fetches_with_the_session_helper(hub, alice):
    """In alice's OGGM server: the helper, in the environment's Python, with the session's own token."""
    import subprocess

    r = hub.api(alice.session, "POST", "/users/alice/server", json={"profile": "oggm"})
    assert r.status_code in (201, 202), r.text
    hub.wait_for_server(alice.session, "alice")
    try:
        proc = next(p for p in psutil.process_iter(["cmdline"])
                    if any("jupyterhub-singleuser" in part for part in p.info["cmdline"] or [])
                    and p.environ().get("JUPYTERHUB_USER") == "alice")
        env = proc.environ()
        python = os.path.join(os.path.dirname(proc.info["cmdline"][0]), "python")
        code = ("from oggmhub.session import tasks\n"
                "run = tasks.start('slicer/GaussianBlur', {'sigma': 1}, input_map={'inputVolume': "
                "'dataset:scans/ct/vol005.nrrd'}, output_map={'outputVolume': 'home:nb/vol005.nrrd'})\n"
                "print(tasks.wait(run, timeout=180)['status'])\n"
                "print(tasks.fetch(run, 'outputVolume', 'fetched.nrrd'))\n"
                "import sys; print('jupyterhub' in sys.modules)\n")
        out = subprocess.run([python, "-c", code], env=env, cwd=alice.home, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        status, path, hub_imported = out.stdout.split()
        assert (status, path, hub_imported) == ("done", "fetched.nrrd", "False")
        assert open(os.path.join(alice.home, "fetched.nrrd"), "rb").read() == \
            open(os.path.join(alice.home, "nb", "vol005.nrrd"), "rb").read()
    finally:
        hub.stop_servers()


def test_the_imaging_tutorials_run_their_tasks_through_the_service(hub, alice, gcs, tmp_path):
    """The Slicer and Fiji tutorials' dataset and task cells, as alice would run them: the
    archives (real images, in the emulator) mounted read-only, the Otsu Threshold and
    InvertAndMeasure tasks run by the hub's tasks service through oggmhub.session.tasks.
    (Slicer's own display cell needs Slicer, which cannot be downloaded here.)"""
    import subprocess

    from oggmhub.catalog import Dataset, load_catalog
    from oggmhub.mounts import process as mounts

    if not mounts.fuse_available()[0]:
        pytest.skip(f"FUSE unavailable: {mounts.fuse_available()[1]}")
    shipped = load_catalog(str(CATALOG)).datasets
    archives = [Dataset(**{**shipped[name].__dict__, "source": f"gs://imaging/{prefix}", "endpoint": gcs.url})
                for name, prefix in (("idc-nlst-ct", SERIES), ("idr-nuclei-3d", IMAGE))]
    live = mounts.mount_datasets(archives, str(tmp_path / "mounts"), mounts.DatasetMounts(timeout=10))
    try:
        owner = os.stat(alice.home)
        for folder in ("idc", "idr"):  # the tutorials' work folders, alice's as her own would be
            os.makedirs(os.path.join(alice.home, folder), exist_ok=True)
            os.chown(os.path.join(alice.home, folder), owner.st_uid, owner.st_gid)
        env = {**os.environ, "HOME": alice.home, "MPLBACKEND": "Agg", "PYTHONPATH": REPO,
               "OGGMHUB_TASKS_URL": hub.tasks_url, "JUPYTERHUB_API_TOKEN": alice.token,
               **session_variables(archives, {m.dataset: m.mountpoint for m in live})}
        for name, expected in (("slicer", ("5 DICOM files -> (16, 16, 5)", "Otsu Threshold: done", "foreground: ")),
                               ("fiji", ("levels: [(660, 550), (330, 275), (165, 138)]", "InvertAndMeasure: done",
                                         "inverted mean:", "objects: "))):
            out = subprocess.run([sys.executable, "-c", tutorial_script(name)], env=env, cwd=alice.home,
                                 capture_output=True, text=True, timeout=600)
            assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
            for text in expected:
                assert text in out.stdout, (name, text, out.stdout[-3000:])
        assert os.path.getsize(os.path.join(alice.home, "idc", "ct-otsu.nrrd")) > 0  # the service's output, in her home
    finally:
        mounts.unmount_datasets(live)
