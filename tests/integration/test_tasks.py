"""Tool tasks without a hub: specs from Slicer XML and script headers, discovery, the
parameter and location checks, a run on a real Dask cluster, and the Kubernetes manifests
of a run (validated with kubernetes-validate, created in kmock).

The Slicer-style CLIs run in the test's own Python (SimpleITK and ctk-cli from PyPI): the
Slicer environment itself cannot be built here (its apt.txt packages and Slicer's download).
"""

import json
import os
import stat
import subprocess
import sys

import kubernetes_validate
import pytest
from traitlets.config import Config

from oggmhub.catalog import load_catalog
from oggmhub.tasks import execution
from oggmhub.tasks.discovery import discover, discover_dir
from oggmhub.tasks.parameters import TaskInputError, validate
from oggmhub.tasks.paths import PathPolicy
from oggmhub.tasks.spec import SpecError, parse_script
from support import paths as _paths
from support.paths import CATALOG
from support.tasks import make_runner

REPO = str(_paths.REPO)
IMAGES = os.path.join(REPO, "images")


@pytest.fixture(autouse=True)
def service_as_one_account(monkeypatch):
    """These tests run the service as the hub's one account (a --shared-account hub);
    runs as users' own system accounts: tests/test_tasks_accounts.py."""
    monkeypatch.setenv("OGGMHUB_SHARED_ACCOUNT", "1")


@pytest.fixture(scope="module")
def tasks():
    problems = []
    found = discover(load_catalog(str(CATALOG)), IMAGES, problems)
    assert problems == []
    return found


def write_volume(path, value=100):
    import numpy as np
    import SimpleITK as sitk

    a = np.full((6, 12, 12), 10, dtype="int16")
    a[1:5, 3:9, 3:9] = value
    sitk.WriteImage(sitk.GetImageFromArray(a), str(path))


def test_slicer_clis_are_discovered_from_their_xml(tasks):
    blur = tasks["slicer/GaussianBlur"].spec
    assert blur.kind == "slicer-cli" and blur.title == "Gaussian Blur"
    sigma = blur.parameter("sigma")
    assert (sigma.type, sigma.default, sigma.minimum, sigma.maximum, sigma.longflag) == ("double", 1.0, 0.1, 50.0, "--sigma")
    assert [(p.name, p.channel, p.index) for p in blur.inputs + blur.outputs] == [
        ("inputVolume", "input", 0), ("outputVolume", "output", 1)]
    otsu = tasks["slicer/OtsuThreshold"].spec
    assert otsu.parameter("foreground").choices == ["above", "below"]
    assert "<executable>" in blur.source  # the original XML is kept for GET .../xml


def test_a_cli_that_answers_xml_is_discovered_like_slicers_own_modules(tmp_path):
    with open(os.path.join(IMAGES, "slicer", "tasks", "GaussianBlur.xml")) as f:
        xml = f.read()
    exe = tmp_path / "BlurModule"
    exe.write_text(f"#!/bin/sh\n[ \"$1\" = --xml ] && cat <<'EOF'\n{xml}\nEOF\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    found = discover_dir("slicer", str(tmp_path), probe_executables=True)
    assert found["BlurModule"].spec.parameter("sigma").maximum == 50.0


def test_the_image_lists_its_tasks_like_list_cli():
    out = subprocess.run([sys.executable, "-m", "oggmhub.tasks.discovery", os.path.join(IMAGES, "slicer", "tasks")],
                         capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": REPO})
    names = [t["id"] for t in json.loads(out.stdout)["tasks"]]
    assert names == ["slicer/GaussianBlur", "slicer/OtsuThreshold"]


def test_fiji_script_parameters_are_read_from_the_header(tasks):
    spec = tasks["fiji/InvertAndMeasure"].spec
    assert spec.kind == "scijava-script"
    got = {p.name: (p.type, p.channel, p.default, p.minimum, p.maximum, p.choices, p.required) for p in spec.parameters}
    assert got == {
        "input": ("file", "input", None, None, None, None, True),
        "output": ("file", "output", None, None, None, None, True),
        "radius": ("integer", "", 1, 0.0, 10.0, None, False),
        "format": ("string-enumeration", "", "Tiff", None, None, ["Tiff", "PNG"], False),
    }


def test_a_bad_script_header_is_named():
    with pytest.raises(SpecError, match=r"x.ijm:2: cannot read the script parameter"):
        parse_script("// hello\n#@ Integer (min=0 radius\n", "x.ijm")
    with pytest.raises(SpecError, match="type 'Window'"):
        parse_script("#@ Window w\n", "y")


@pytest.fixture
def policy(tmp_path):
    homes = tmp_path / "data" / "homes"
    (homes / "alice").mkdir(parents=True)
    (homes / "bob").mkdir()
    (homes / "alice" / "in.nrrd").write_text("x")
    os.symlink(homes / "bob", homes / "alice" / "to-bob")
    return PathPolicy("alice", str(homes), load_catalog(str(CATALOG)).datasets, "gs://results/users/{username}/",
                      str(tmp_path / "data"))


GOOD = {"inputVolume": "in.nrrd", "outputVolume": "out/blurred.nrrd"}


@pytest.mark.parametrize("values, problem", [
    ({"sigma": 51}, "sigma: 51 is out of range; allowed: a number >= 0.1 and <= 50"),
    ({"sigma": "wide"}, "sigma: 'wide' is not a number >= 0.1 and <= 50"),
    ({"sigma": True}, "sigma: True is not a number"),
    ({"radius": 2}, "radius: task slicer/GaussianBlur has no parameter 'radius'; its parameters: sigma, inputVolume, outputVolume"),
    ({"inputVolume": None}, "inputVolume: required (Input Volume): give a location"),
    ({"inputVolume": "../bob/secret.nrrd"}, "inputVolume: '../bob/secret.nrrd' leaves its folder with '..'"),
    ({"inputVolume": "to-bob/secret.nrrd"}, "inputVolume: 'to-bob/secret.nrrd' leads outside your home (through a link)"),
    ({"inputVolume": "{home}/../bob/x.nrrd"}, "in another user's home"),
    ({"inputVolume": "{data}/jupyterhub.sqlite"}, "in the hub's data directory"),
    ({"inputVolume": "/etc/passwd"}, "'/etc/passwd' is an absolute path, which tasks may not read; allowed: home:PATH"),
    ({"inputVolume": "file:///etc/passwd"}, "that kind of URL cannot be read"),
    ({"inputVolume": "dataset:nope/x"}, "inputVolume: unknown dataset 'nope'; the catalog's datasets: "),
    ({"inputVolume": "dataset:oggm-mirror/../../x"}, "leaves the dataset"),
    ({"outputVolume": "dataset:oggm-mirror/x.nrrd"}, "outputVolume: 'dataset:oggm-mirror/x.nrrd' is in a dataset, and datasets are read-only; allowed: home:PATH (a relative path in your home) or a URL under gs://results/users/alice/"),
    ({"outputVolume": "gs://results/users/bob/x.nrrd"}, "outputVolume: 'gs://results/users/bob/x.nrrd' is outside your space"),
    ({"outputVolume": "https://example.org/x"}, "is outside your space"),
    ({"outputVolume": "/tmp/x.nrrd"}, "is an absolute path, outside your space"),
    ({"outputVolume": "gs://results/users/alice/../bob/x"}, "is not a plain object URL"),
    ({"inputVolume": "a" * 10**6}, "inputVolume: the value is 1000000 characters long; at most 10000 are allowed"),
])
def test_bad_values_are_refused_naming_the_parameter_and_what_is_allowed(tasks, policy, values, problem, tmp_path):
    values = {k: v.format(home=policy.home, data=tmp_path / "data") if isinstance(v, str) and "{" in v[:2] else v
              for k, v in {**GOOD, **values}.items()}
    with pytest.raises(TaskInputError) as e:
        validate(tasks["slicer/GaussianBlur"], values, policy)
    assert problem in str(e.value)
    assert e.value.parameter == next(iter(values.keys() - GOOD.keys()), None) or e.value.parameter in values


def test_enumerations_and_defaults(tasks, policy):
    otsu = tasks["slicer/OtsuThreshold"]
    with pytest.raises(TaskInputError, match=r"foreground: 'left' is not one of 'above', 'below'"):
        validate(otsu, {**GOOD, "foreground": "left"}, policy)
    values, locations = validate(otsu, {"foreground": "below"}, policy, input_map={"inputVolume": "gs://scans/a.nrrd"},
                                 output_map={"outputVolume": "gs://results/users/alice/a.nrrd"})
    assert values == {"numberOfHistogramBins": 128, "medianRadius": 0, "foreground": "below"}
    assert locations["outputVolume"].kind == "url"
    with pytest.raises(TaskInputError, match="input-map names input files only"):
        validate(otsu, GOOD, policy, input_map={"outputVolume": "x"})


def run_plan(tasks, tmp_path, task, values, inputs, outputs):
    t = tasks[task]
    params = [{"name": p.name, "type": p.type, "index": p.index, "flag": p.flag, "longflag": p.longflag}
              for p in t.spec.parameters]
    return {"run_id": "abc123", "run_dir": str(tmp_path / "run"), "kind": t.spec.kind,
            "command": [sys.executable, t.path], "parameters": params, "values": values,
            "inputs": inputs, "outputs": outputs, "timeout": 120}


def test_a_run_on_a_real_dask_cluster_publishes_its_output_atomically(tasks, tmp_path):
    from distributed import Client, LocalCluster

    write_volume(tmp_path / "in.nrrd")
    target = tmp_path / "home" / "out" / "blurred.nrrd"
    plan = run_plan(tasks, tmp_path, "slicer/GaussianBlur", {"sigma": 2.0},
                    {"inputVolume": {"kind": "local", "path": str(tmp_path / "in.nrrd")}},
                    {"outputVolume": {"kind": "local", "path": str(target)}})
    with LocalCluster(n_workers=1, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as cluster, \
            Client(cluster) as client:
        result = client.submit(execution.execute, plan, pure=False).result()
    assert result["status"] == "done", result
    assert os.listdir(target.parent) == ["blurred.nrrd"]  # no temporary name left beside it
    import SimpleITK as sitk

    assert sitk.ReadImage(str(target)).GetSize() == (12, 12, 6)
    assert "--sigma 2.0" in open(tmp_path / "run" / "log.txt").read()


def test_a_failing_run_says_failed_with_stderr_and_writes_nothing(tasks, tmp_path):
    (tmp_path / "not-an-image.nrrd").write_text("hello")
    target = tmp_path / "home" / "out.nrrd"
    plan = run_plan(tasks, tmp_path, "slicer/GaussianBlur", {},
                    {"inputVolume": {"kind": "local", "path": str(tmp_path / "not-an-image.nrrd")}},
                    {"outputVolume": {"kind": "local", "path": str(target)}})
    result = execution.execute(plan)
    assert result["status"] == "failed" and result["returncode"] != 0
    assert "RuntimeError" in result["error"] or "ITK" in result["error"]
    assert not target.parent.exists() or os.listdir(target.parent) == []


# --- Kubernetes ------------------------------------------------------------------------------


def k8s_manifests(tasks, tmp_path):
    catalog = load_catalog(str(CATALOG))
    plan = run_plan(tasks, tmp_path, "slicer/GaussianBlur", {"sigma": 2.0},
                    {"inputVolume": {"kind": "url", "url": "gs://scans/a.nrrd", "options": {}}},
                    {"outputVolume": {"kind": "local", "path": "/srv/homes/alice/out/a.nrrd"}})
    plan["command"] = ["/srv/envs/slicer/bin/python", "/srv/envs/slicer/share/oggmhub/tasks/GaussianBlur.py"]
    from oggmhub.tasks import kubernetes as k8s

    env = catalog.environments["oggm"]  # an environment with a dataset to mount
    return k8s.manifests(plan, "oggmhub-alice", env, "alice", "/srv/homes/alice",
                         datasets=[catalog.datasets[n] for n in env.datasets], deadline=3600, task_id="slicer/GaussianBlur")


def test_a_run_on_kubernetes_is_a_valid_job_in_the_users_namespace(tasks, tmp_path):
    config_map, job = k8s_manifests(tasks, tmp_path)
    for manifest in (config_map, job):
        kubernetes_validate.validate(manifest, "1.32", strict=True)
    plan = json.loads(config_map["data"]["plan.json"])
    assert plan["outputs"]["outputVolume"]["path"] == "/home/jovyan/out/a.nrrd"
    assert plan["command"] == ["python", "-I", "/srv/conda/envs/notebook/share/oggmhub/tasks/GaussianBlur.py"]
    pod = job["spec"]["template"]["spec"]
    (task,) = pod["containers"]
    assert job["metadata"]["namespace"] == "oggmhub-alice" and task["image"].startswith("ghcr.io/oggmhub/oggm:")
    assert task["securityContext"]["runAsNonRoot"] and task["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert {"name": "home", "persistentVolumeClaim": {"claimName": "home-alice"}} in pod["volumes"]
    from oggmhub.catalog import load_catalog

    mirror = load_catalog(CATALOG).datasets["oggm-mirror"].mount_path
    parent = mirror.rsplit("/", 1)[0]  # the sidecar mounts under the mount path's parent
    assert any(m["mountPath"] == parent and m["readOnly"] for m in task["volumeMounts"])  # the dataset mounts
    assert pod["automountServiceAccountToken"] is False and job["spec"]["backoffLimit"] == 0


async def test_the_job_and_its_plan_are_accepted_by_the_api_server(api, tasks, tmp_path):
    import kmock

    api.emulator.resources["batch/v1/jobs"] = kmock.ResourceInfo(
        kind="Job", singular="job", namespaced=True,
        verbs={"create", "delete", "get", "list", "patch", "update", "watch"}, subresources=set())
    config_map, job = k8s_manifests(tasks, tmp_path)
    await api.create("v1/configmaps", config_map, namespace="oggmhub-alice")
    await api.create("batch/v1/jobs", job, namespace="oggmhub-alice")
    stored = api.get("batch/v1/jobs", "oggmhub-alice", job["metadata"]["name"])
    assert stored["spec"]["template"]["spec"]["containers"][0]["command"][-1] == "/plan/plan.json"
    assert api.names("v1/configmaps", "oggmhub-alice") == [config_map["metadata"]["name"]]


# --- the service's settings and wiring --------------------------------------------------------


def test_configure_hub_registers_the_tasks_service_and_gives_users_its_scope():
    from traitlets.config import Config

    from oggmhub.hub import configure_hub

    c = Config()
    c.JupyterHub.load_roles = [{"name": "user", "scopes": ["self", "read:groups"]}]
    configure_hub(c, window_check_interval=0)
    (service,) = [s for s in c.JupyterHub.services if s["name"] == "tasks"]
    assert service["url"].startswith("http://127.0.0.1:") and service["command"][-1] == "oggmhub.tasks.service"
    assert service["oauth_client_allowed_scopes"] == ["access:services!service=tasks"]
    (user,) = [r for r in c.JupyterHub.load_roles if r["name"] == "user"]
    assert user["scopes"] == ["self", "read:groups", "access:services!service=tasks"]  # added, never replaced
    (server,) = [r for r in c.JupyterHub.load_roles if r["name"] == "server"]
    assert server["scopes"] == ["users:activity!user", "access:servers!server", "access:services!service=tasks"]
    (reader,) = [r for r in c.JupyterHub.load_roles if r.get("services") == ["tasks"]]
    assert sorted(reader["scopes"]) == ["read:groups", "read:users:groups"]  # to refuse runs of closed cohorts
    c2 = Config()
    configure_hub(c2, window_check_interval=0, tasks=False)
    assert not [s for s in c2.JupyterHub.get("services", []) if s["name"] == "tasks"]


def settings_from_a_config_file(tmp_path, monkeypatch):
    """TasksSettings initialised from a $OGGMHUB_TASKS_CONFIG file with four settings."""
    from oggmhub.tasks.settings import TasksSettings

    config = tmp_path / "tasks_config.py"
    config.write_text("c.TasksSettings.max_value_chars = 50\nc.TasksSettings.run_timeout = 1\n"
                      "c.TasksSettings.user_prefix = 'gs://r/{username}/'\nc.TasksSettings.max_batch = 3\n")
    monkeypatch.setenv("OGGMHUB_TASKS_CONFIG", str(config))
    monkeypatch.setenv("OGGMHUB_DATA_DIR", str(tmp_path / "data"))
    settings = TasksSettings()
    settings.initialize([])
    return settings


def test_settings_come_from_the_tasks_config_file(tmp_path, monkeypatch):
    settings = settings_from_a_config_file(tmp_path, monkeypatch)
    assert (settings.max_value_chars, settings.run_timeout, settings.max_batch) == (50, 1, 3)
    assert settings.homes_dir == str(tmp_path / "data" / "homes")
    assert settings.runs_dir == str(tmp_path / "data" / "tasks" / "runs")



def test_max_value_chars_and_run_timeout_take_effect(tasks, tmp_path, monkeypatch):
    settings = settings_from_a_config_file(tmp_path, monkeypatch)
    runner = make_runner(tasks, settings, tmp_path)
    policy = PathPolicy("alice", settings.homes_dir, runner.catalog.datasets, settings.user_prefix)
    with pytest.raises(TaskInputError, match="sigma: the value is 51 characters long; at most 50"):
        runner.check("alice", {"task": "slicer/GaussianBlur", "parameters": {**GOOD, "sigma": "1" * 51}}, policy)
    task, values, locations = runner.check("alice", {"task": "slicer/GaussianBlur", "parameters": GOOD}, policy)
    record = runner.record("alice", task, {"parameters": GOOD}, values, locations)
    plan = runner.plan(record, task, locations, sys.executable)
    assert plan["timeout"] == 1
    plan["command"] = [sys.executable, "-c", "import time; time.sleep(30)"]
    (tmp_path / "data" / "homes" / "alice").mkdir(parents=True)
    (tmp_path / "data" / "homes" / "alice" / "in.nrrd").write_text("x")
    result = execution.execute(plan)
    assert result["status"] == "failed" and "stopped after 1 s (the task's time limit)" in result["error"]
    # the bucket prefix is the user's own
    assert policy.output("o", "gs://r/alice/x.nrrd").kind == "url"


async def test_an_environment_that_cannot_be_built_fails_the_run_saying_what_is_missing(tasks, tmp_path):
    from oggmhub.tasks.settings import TasksSettings

    settings = TasksSettings(data_dir=str(tmp_path / "data"), env_cache=str(tmp_path / "envs"))  # no stand-in Python
    runner = make_runner(tasks, settings, tmp_path)
    (tmp_path / "data" / "homes" / "alice").mkdir(parents=True)
    (tmp_path / "data" / "homes" / "alice" / "in.nrrd").write_text("x")
    policy = PathPolicy("alice", settings.homes_dir, runner.catalog.datasets)
    record = await runner.start("alice", {"task": "slicer/GaussianBlur", "parameters": GOOD}, policy)
    failed = runner.store.get("alice", record["id"])
    assert failed["status"] == "failed" and failed["error"].startswith("environment 'slicer': ")
    assert "apt-get install" in failed["error"] or "needs" in failed["error"]


async def test_a_users_runs_at_once_follow_the_dask_limits(tmp_path):
    import asyncio

    from oggmhub.tasks.cluster import UserSlots, budget_for

    catalog = load_catalog(str(CATALOG))
    budget = budget_for(catalog.environments["slicer"])  # medium: 2 CPUs, 8 GiB; Dask 4 workers, 8 cores
    assert budget.workers == 2 and "this session's CPU allotment" in budget.limits.sources["cores"]
    assert budget_for(catalog.environments["slicer"], max_workers=1).workers == 1
    assert budget_for(catalog.environments["fiji"], cohort_workers=1).workers == 1
    slots, most, release = UserSlots(), [], asyncio.Event()

    async def run(user):
        async with slots.slot(user, budget):
            most.append((slots.running("alice"), slots.running("bruno")))
            await release.wait()

    runs = [asyncio.ensure_future(run(u)) for u in ("alice",) * 3 + ("bruno",)]
    await asyncio.sleep(0.1)
    assert slots.running("alice") == 2 and slots.running("bruno") == 1  # the third of alice's waits its turn
    release.set()
    await asyncio.gather(*runs)
    assert max(a for a, _ in most) == 2 and slots.running("alice") == 0


# --- input-str: small texts as files -----------------------------------------------------------


def test_input_str_texts_are_files_in_the_tools_folder(tasks, tmp_path):
    import SimpleITK as sitk  # noqa: F401 (the stand-in's Python runs the CLI)

    target = tmp_path / "home" / "copied.txt"
    sleep = tmp_path / "Copy.py"
    sleep.write_text("import shutil, sys\nshutil.copyfile(sys.argv[-2], sys.argv[-1])\n"
                     "assert open('notes.txt').read() == 'hello'\n")  # also in its working folder
    plan = run_plan(tasks, tmp_path, "slicer/GaussianBlur", {},
                    {"inputVolume": {"kind": "text", "name": "notes.txt"}},
                    {"outputVolume": {"kind": "local", "path": str(target)}})
    plan["command"] = [sys.executable, str(sleep)]
    plan["texts"] = {"notes.txt": "hello"}
    result = execution.execute(plan)
    assert result["status"] == "done", open(tmp_path / "run" / "log.txt").read()
    assert target.read_text() == "hello"


@pytest.mark.parametrize("texts, problem", [
    ({"a/b.txt": "x"}, "input-str: 'a/b.txt' is not a plain file name (no '/', no '..', not hidden)"),
    ({"..": "x"}, "'..' is not a plain file name"),
    ({".bashrc": "x"}, "'.bashrc' is not a plain file name"),
    ({"a.txt": 3}, "input-str.a.txt: give the file's content as text"),
    ({"a.txt": "é" * 40}, "input-str: the texts are 80 bytes; at most 64 bytes are allowed (TasksSettings.max_input_str_bytes)"),
    ("text", "input-str: must be an object of file name -> text"),
])
def test_input_str_is_size_capped_and_its_names_checked(tasks, tmp_path, texts, problem):
    from oggmhub.tasks.settings import TasksSettings

    settings = TasksSettings(data_dir=str(tmp_path / "data"), max_input_str_bytes=64)
    runner = make_runner(tasks, settings, tmp_path)
    policy = PathPolicy("alice", settings.homes_dir, runner.catalog.datasets)
    with pytest.raises(TaskInputError) as e:
        runner.check("alice", {"task": "slicer/GaussianBlur", "parameters": GOOD, "input-str": texts}, policy)
    assert problem in str(e.value)


def test_an_input_str_location_must_name_a_given_text_and_is_never_an_output(tasks, tmp_path):
    from oggmhub.tasks.settings import TasksSettings

    settings = TasksSettings(data_dir=str(tmp_path / "data"))
    runner = make_runner(tasks, settings, tmp_path)
    policy = PathPolicy("alice", settings.homes_dir, runner.catalog.datasets)
    body = {"task": "slicer/GaussianBlur", "parameters": {**GOOD, "inputVolume": "input-str:v.nrrd"}}
    with pytest.raises(TaskInputError, match="inputVolume: 'input-str:v.nrrd' names no file of input-str"):
        runner.check("alice", body, policy)
    task, values, locations = runner.check("alice", {**body, "input-str": {"v.nrrd": "x"}}, policy)
    assert locations["inputVolume"].kind == "text"
    with pytest.raises(TaskInputError, match="input-str files are inputs only"):
        runner.check("alice", {**body, "input-str": {"v.nrrd": "x"},
                               "parameters": {**GOOD, "outputVolume": "input-str:o.nrrd"}}, policy)


def test_a_run_cancelled_while_its_inputs_come_never_starts_its_tool(tasks, tmp_path, monkeypatch):
    """The cancel handshake: kill() before the tool's pid exists still stops the run."""
    (tmp_path / "in.nrrd").write_text("x")
    marker = tmp_path / "tool-ran"
    plan = run_plan(tasks, tmp_path, "slicer/GaussianBlur", {},
                    {"inputVolume": {"kind": "url", "url": "gs://b/in.nrrd", "options": {}}},
                    {"outputVolume": {"kind": "local", "path": str(tmp_path / "out.nrrd")}})
    plan["command"] = [sys.executable, "-c", f"open({str(marker)!r}, 'w')"]

    def slow_fetch(location, dest_dir):
        assert execution.kill(plan["run_dir"]) is False  # no tool yet: nothing to kill
        return str(tmp_path / "in.nrrd")

    monkeypatch.setattr(execution, "fetch", slow_fetch)
    assert execution.execute(plan)["status"] == "cancelled"
    assert not marker.exists()


# --- the Kubernetes backend's settings ---------------------------------------------------------


def test_the_backend_setting_is_validated_and_picks_the_runner(tmp_path, monkeypatch):
    import logging

    from traitlets import TraitError

    from oggmhub.tasks.kubernetes_runner import KubernetesRunner
    from oggmhub.tasks.local_runner import LocalRunner
    from oggmhub.tasks.service import TasksApp
    from oggmhub.tasks.settings import TasksSettings

    with pytest.raises(TraitError, match="backend.*'local', 'kubernetes'|expected any of"):
        TasksSettings(backend="slurm")
    monkeypatch.setenv("OGGMHUB_IMAGES", IMAGES)
    log = logging.getLogger("t")
    local = TasksApp(TasksSettings(data_dir=str(tmp_path / "a"), config=Config({"Catalog": {"path": str(CATALOG)}})), log)
    assert type(local.runner) is LocalRunner and local.runner.backend == "local"
    app = TasksApp(TasksSettings(data_dir=str(tmp_path / "b"), config=Config({"Catalog": {"path": str(CATALOG)}}), backend="kubernetes"), log)
    assert type(app.runner) is KubernetesRunner and app.runner.budget(app.runner.tasks["slicer/GaussianBlur"]) is None
    assert app.runner.run_as_for("alice") is None  # the seam for per-user accounts


def test_the_kubernetes_settings_shape_the_runs_job(tasks, tmp_path):
    import logging

    from oggmhub.tasks.kubernetes_runner import KubernetesRunner
    from oggmhub.tasks.runs import RunStore
    from oggmhub.tasks.settings import TasksSettings

    settings = TasksSettings(data_dir=str(tmp_path / "data"), backend="kubernetes", hub_namespace="hubs",
                             user_namespace_template="tasks-{username}", pvc_name_template="claim-{username}",
                             mounter_image="example.org/mounter:9", job_ttl=60, run_timeout=77)
    catalog = load_catalog(str(CATALOG))
    runner = KubernetesRunner(settings, tasks, catalog, RunStore(settings.runs_dir), logging.getLogger("t"))
    policy = PathPolicy("alice", settings.homes_dir, catalog.datasets)
    (tmp_path / "data" / "homes" / "alice").mkdir(parents=True)
    body = {"task": "slicer/GaussianBlur", "parameters": GOOD}
    task, values, locations = runner.check("alice", body, policy)
    record = runner.record("alice", task, body, values, locations)
    namespace, config_map, job = runner.manifests("alice", task, record, locations)
    assert namespace == "tasks-alice" == job["metadata"]["namespace"] == config_map["metadata"]["namespace"]
    assert job["spec"]["ttlSecondsAfterFinished"] == 60
    pod = job["spec"]["template"]["spec"]
    assert {"name": "home", "persistentVolumeClaim": {"claimName": "claim-alice"}} in pod["volumes"]
    plan = json.loads(config_map["data"]["plan.json"])
    assert plan["timeout"] == 77 and plan["inputs"]["inputVolume"]["path"] == "/home/jovyan/in.nrrd"
    for manifest in (config_map, job):
        kubernetes_validate.validate(manifest, "1.32", strict=True)
    # a task of an environment with datasets mounts them through the configured sidecar image
    import dataclasses

    _, _, oggm_job = runner.manifests("alice", dataclasses.replace(task, environment="oggm"), record, locations)
    images = [c["image"] for c in oggm_job["spec"]["template"]["spec"].get("initContainers", [])]
    assert images == ["example.org/mounter:9"]


def test_configure_for_a_hub_pod_binds_where_the_proxy_reaches_it():
    from traitlets.config import Config

    from oggmhub.tasks.service import configure

    c = Config()
    configure(c, url="http://hub:10101", bind="0.0.0.0")
    (service,) = c.JupyterHub.services
    assert service["url"] == "http://hub:10101" and service["environment"]["OGGMHUB_TASKS_BIND"] == "0.0.0.0"
    assert "OGGMHUB_TASKS_URL" not in c.Spawner.get("environment", {})  # c.OGGMHubSpawner.tasks_url says it there
