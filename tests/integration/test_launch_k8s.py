"""Launch links on Kubernetes (kmock's emulator + the test kubelet): a launch's plan,
made with the user's own OGGMHubSpawner, creates the pod with the dataset mounted by the
sidecar; refused launches write nothing to the API server; an allowed on-demand source
is mounted like a catalog dataset."""

import json
import os
import subprocess

import kubernetes_validate
import pytest
from traitlets.config import Config

from oggmhub.launch.config import launch_settings
from oggmhub.launch.planning import LaunchContext, plan_launch
from oggmhub.launch.request import LaunchRequest
from oggmhub.launch.resolution import LaunchError
from support.kube_harness import hub_start
from support.kube_harness.oggmhub import oggmhub_spawner
from support.paths import CATALOG

NS = "default"
FAST = dict(k8s_api_request_timeout=1, k8s_api_request_retry_timeout=2, start_timeout=10)
SOURCES = [r"gs://public-glaciers/.+"]


def hub_spawner(name, config=None):
    return oggmhub_spawner(name, config=config, **FAST)


def launch(**params):
    return LaunchRequest.from_arguments({k: [v.encode()] for k, v in params.items()})


def notebook(pod):
    return next(c for c in pod["spec"]["containers"] if c["name"] == "notebook")


def check_link_hook(command, tmp_path):
    """Run the pod's postStart command (a real sh) with the home and /data moved under tmp_path."""
    from oggmhub.catalog import load_catalog

    home, data = tmp_path / "home", tmp_path / "data"
    mounted = f"{data}/" + load_catalog(CATALOG).datasets["oggm-mirror"].mount_path[len("/data/"):]
    os.makedirs(mounted)
    (home / "datasets" / "mine").mkdir(parents=True)  # the user's own folder
    os.symlink("/data/gone", home / "datasets" / "gone")  # a link from an earlier session
    script = command[2].replace("/home/jovyan", str(home)).replace("/data/", f"{data}/")
    subprocess.run([*command[:2], script], check=True)
    assert os.readlink(home / "datasets" / "oggm-mirror") == mounted
    assert sorted(os.listdir(home / "datasets")) == ["mine", "oggm-mirror"]
    assert os.listdir(home / "datasets" / "oggm-mirror") == []  # reaches the mount


async def test_a_doi_launch_creates_the_pod_with_the_dataset_mounted(api, kubelet, tmp_path):
    spawner = hub_spawner("lena")
    plan = plan_launch(LaunchContext.for_spawner(spawner), launch(dataset="https://doi.org/10.5194/GMD-12-909-2019"))
    assert plan.options == {"profile": "oggm"}  # the environment that mounts it
    await hub_start(spawner, plan.options)
    [pod] = api.objects("pods", NS)
    container = notebook(pod)
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["OGGMHUB_DATASETS"] == "oggm-mirror" and env["OGGMHUB_ENVIRONMENT"] == "oggm"
    # the sidecar mounts under the parent of the catalog's mount path
    from oggmhub.catalog import load_catalog

    parent = os.path.dirname(load_catalog(CATALOG).datasets["oggm-mirror"].mount_path)
    data = next(m for m in container["volumeMounts"] if m["mountPath"] == parent)
    assert data["readOnly"] is True
    assert pod["spec"]["initContainers"][0]["securityContext"]["privileged"] is True
    kubernetes_validate.validate(pod, "1.32", strict=True)
    # JupyterLab (root: the home) shows it at datasets/oggm-mirror, where the launch opens
    hook = container["lifecycle"]["postStart"]["exec"]["command"]
    await spawner.stop()
    check_link_hook(hook, tmp_path)

    # the same dataset added to another environment, when the launch names one that may mount it
    spawner2 = hub_spawner("ines")
    with pytest.raises(LaunchError, match="environment 'fiji' cannot mount dataset 'oggm-mirror'; choose one of: oggm"):
        plan_launch(LaunchContext.for_spawner(spawner2), launch(dataset="oggm-mirror", env="fiji"))


@pytest.mark.parametrize("params, message", [
    ({"dataset": "10.5281/zenodo.1"}, "no dataset available here is identified by doi '10.5281/zenodo.1'"),
    ({"dataset": "oggm-mirror", "size": "huge"}, "size 'huge' is not offered for OGGM"),
    ({"dataset": "gs://public-glaciers/rgi"}, "available datasets: oggm-mirror"),
])
async def test_refused_launches_create_nothing(api, kubelet, params, message):
    spawner = hub_spawner("mallory")
    with pytest.raises(LaunchError, match=message):
        plan_launch(LaunchContext.for_spawner(spawner), launch(**params))
    assert [r for r in api.requests if r.method in ("POST", "PUT", "PATCH", "DELETE")] == []


async def test_an_allowed_source_is_mounted_on_demand_by_the_sidecar(api, kubelet):
    config = Config()
    config.Launch.allowed_sources = SOURCES
    spawner = hub_spawner("olga", config)
    ctx = LaunchContext.for_spawner(spawner, SOURCES)
    plan = plan_launch(ctx, launch(dataset="gs://public-glaciers/rgi/"))
    name = plan.resolution.dataset.name
    assert plan.resolution.on_demand and plan.options == {"profile": "oggm", "datasets": ["gs://public-glaciers/rgi"]}
    await hub_start(spawner, plan.options)
    [pod] = api.objects("pods", NS)
    env = {e["name"]: e.get("value") for e in notebook(pod)["env"]}
    mounted = {d["name"]: d for d in json.loads(env["OGGMHUB_DATASETS_JSON"])}
    assert mounted[name]["source"] == "gs://public-glaciers/rgi" and mounted[name]["mount_path"] == f"/data/{name}"
    assert spawner.user_options["datasets"] == ["gs://public-glaciers/rgi"]  # the next start asks the same
    await spawner.stop()
    # without the admin's pattern the spawner itself refuses the same options
    from tornado import web
    plain = hub_spawner("olga2")
    with pytest.raises(web.HTTPError, match="unknown dataset 'gs://public-glaciers/rgi'"):
        await hub_start(plain, plan.options)


def test_the_chart_values_enable_the_launch_pages_on_kubernetes():
    import yaml

    from oggmhub.launch.handlers import TEMPLATES, handlers
    from support.paths import REPO

    values = yaml.safe_load((REPO / "helm-values" / "oggmhub.yaml").read_text())
    c = Config()
    exec(values["hub"]["extraConfig"]["oggmhub-cohorts"], {"c": c})  # as the chart's hub does
    registered = [h for _, h in c.JupyterHub.extra_handlers]
    assert all(h in registered for _, h in handlers()) and TEMPLATES in c.JupyterHub.template_paths
    for section, cfg in values["hub"]["config"].items():
        c[section].update(cfg)  # as the chart's hub loads hub.config
    mounted = values["hub"]["extraFiles"]["oggmhub-catalog"]["mountPath"]
    assert launch_settings(c).catalog_path == mounted  # visitors' launch links read the one c.Catalog.path
