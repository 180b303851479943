"""helm-values/ against the zero-to-jupyterhub chart's own schema and defaults."""

import copy

import jsonschema
import pytest
import yaml

from oggmhub.catalog import load_catalog
from support.deployment.chart import helm_merge
from support.paths import CATALOG, REPO, SHARED

Z2JH = SHARED / "z2jh"
VALUES_FILES = sorted((REPO / "helm-values").glob("*.yaml"))


def installed_values(values_file):
    """The chart's values after `helm install --values FILE --set-file <catalog>`."""
    defaults = yaml.safe_load((Z2JH / "values.yaml").read_text())
    values = helm_merge(defaults, yaml.safe_load(values_file.read_text()))
    values["hub"]["extraFiles"]["oggmhub-catalog"]["stringData"] = CATALOG.read_text()
    return values


def chart_services(values):
    """The hub's services as the chart's jupyterhub_config.py leaves them: hub.services
    registered, then hub.config loaded, then hub.extraConfig run (in that order)."""
    from traitlets.config import Config

    c = Config()
    c.JupyterHub.services = [{"name": key, **copy.deepcopy(service)} for key, service in values["hub"]["services"].items()]
    for section, cfg in values["hub"]["config"].items():
        c[section].update(copy.deepcopy(cfg))
    for _, code in sorted(values["hub"]["extraConfig"].items()):
        exec(code, {"c": c})
    return {service["name"]: service for service in c.JupyterHub.services}


def test_the_catalog_path_is_declared_once():
    """One Catalog.path (hub.config) beside the mountPath the chart puts the file at; every
    other part (spawner, cohorts, welcome, launch links, the tasks service) reads it."""
    values = installed_values(VALUES_FILES[0])
    path = values["hub"]["config"]["Catalog"]["path"]
    assert path == values["hub"]["extraFiles"]["oggmhub-catalog"]["mountPath"]
    assert VALUES_FILES[0].read_text().count(path) == 2  # Catalog.path and the file's mountPath
    assert chart_services(values)["tasks"]["environment"]["OGGMHUB_CATALOG"] == path


@pytest.fixture(scope="module")
def z2jh_schema():
    if not (Z2JH / "values.schema.yaml").exists():
        pytest.fail(f"the chart's schema is missing: expected {Z2JH}/values.schema.yaml (shared/ beside the repo)")
    return yaml.safe_load((Z2JH / "values.schema.yaml").read_text())


def test_there_are_values_files():
    assert [f.name for f in VALUES_FILES] == ["oggmhub.yaml"]


@pytest.mark.parametrize("values_file", VALUES_FILES, ids=lambda p: p.name)
def test_values_validate_against_the_chart_schema(values_file, z2jh_schema):
    jsonschema.Draft7Validator(z2jh_schema).validate(installed_values(values_file))


def test_schema_catches_a_misspelt_value(z2jh_schema):
    """The check above can fail: a typo in our values is caught by the chart's schema."""
    values = installed_values(VALUES_FILES[0])
    values["singleuser"]["storage"]["dynamic"]["pvcNameTemplat"] = "x"
    with pytest.raises(jsonschema.ValidationError, match="pvcNameTemplat"):
        jsonschema.Draft7Validator(z2jh_schema).validate(values)


def test_values_select_the_spawner_and_the_catalog(tmp_path):
    values = installed_values(VALUES_FILES[0])
    config = values["hub"]["config"]
    assert config["JupyterHub"]["spawner_class"] == "oggmhub.spawner.OGGMHubSpawner"
    mounted = values["hub"]["extraFiles"]["oggmhub-catalog"]
    assert config["Catalog"]["path"] == mounted["mountPath"]  # c.Catalog.path: every part of the hub reads it
    assert "catalog_path" not in config["OGGMHubSpawner"]
    assert "catalog_path" not in values["hub"]["extraConfig"]["oggmhub-cohorts"]  # set once, in hub.config
    # what --set-file puts there is a catalog the hub can load
    copy_on_hub = tmp_path / "catalog.yaml"
    copy_on_hub.write_text(mounted["stringData"])
    assert list(load_catalog(str(copy_on_hub)).environments) == ["oggm", "slicer", "fiji"]
    single = values["singleuser"]
    assert single["uid"] == 1000 and single["allowPrivilegeEscalation"] is False
    assert single["profileList"] == []  # the picker comes from the catalog
    assert single["storage"]["type"] == "dynamic"
    assert single["storage"]["dynamic"]["pvcNameTemplate"] == "home-{username}"
    assert values["cull"]["enabled"] is True


def test_hub_image_installs_oggmhub():
    dockerfile = (REPO / "images" / "hub" / "Dockerfile").read_text()
    assert "FROM quay.io/jupyterhub/k8s-hub:" in dockerfile
    assert "/tmp/oggmhub && rm -rf /tmp/oggmhub" in dockerfile  # pip install of the copied package
    values = yaml.safe_load(VALUES_FILES[0].read_text())
    assert values["hub"]["image"]["name"].endswith("/hub")


def test_the_hub_and_the_environments_run_one_jupyterhub():
    """The hub image's JupyterHub (the chart's k8s-hub, upgraded) is the version every
    environment's jupyterhub-singleuser pins, and the one these tests run the hub with."""
    import re

    import jupyterhub

    dockerfile = (REPO / "images" / "hub" / "Dockerfile").read_text()
    [hub_version] = re.findall(r"^ARG JUPYTERHUB_VERSION=(\S+)$", dockerfile, re.M)
    assert 'pip install --no-cache-dir "jupyterhub==${JUPYTERHUB_VERSION}"' in dockerfile
    pins = {}
    for requirements in sorted((REPO / "images").glob("*/requirements*")):
        found = re.findall(r"^jupyterhub==(\S+)", requirements.read_text(), re.M)
        assert len(found) == 1, f"{requirements} pins jupyterhub {len(found)} times"
        pins[str(requirements.relative_to(REPO))] = found[0]
    assert len(pins) >= 6  # oggm, slicer, fiji: .in and .txt
    assert set(pins.values()) == {hub_version}, f"images/hub/Dockerfile has JupyterHub {hub_version}; {pins}"
    assert jupyterhub.__version__ == hub_version  # the version the hub tests (and the chart's config) run on


def test_hub_image_copies_what_exists_and_every_package():
    """Each COPY source is in the repository, and every package setup.cfg installs is copied
    (a folder removed from the layout must not linger in the Dockerfile, nor a new one be missed)."""
    import setuptools

    lines = (REPO / "images" / "hub" / "Dockerfile").read_text().splitlines()
    sources = [part for line in lines if line.startswith("COPY ") for part in line.split()[1:-1]]
    missing = [s for s in sources if not (REPO / s).exists()]
    assert not missing, f"images/hub/Dockerfile copies what the repository lacks: {missing}"
    assert {"setup.cfg", "pyproject.toml", "README.md", "oggmhub"} <= set(sources)
    packages = setuptools.find_packages(str(REPO), include=["oggmhub", "oggmhub.*"])
    assert "oggmhub.session" in packages and "oggmhub.backends.kubernetes" in packages
    assert all(p.split(".")[0] in sources for p in packages)


def test_values_register_the_tasks_service_on_kubernetes(tmp_path, monkeypatch):
    """The tasks service runs in the hub pod with the Kubernetes backend; the proxy, users and
    their sessions reach it; the image has the task specs where its settings look."""
    from oggmhub.tasks.service import SCOPE
    from oggmhub.tasks.settings import TasksSettings

    values = installed_values(VALUES_FILES[0])
    hub = values["hub"]
    tasks = hub["services"]["tasks"]
    assert tasks["command"][-1] == "oggmhub.tasks.service" and tasks["oauth_client_allowed_scopes"] == [SCOPE]
    port = int(tasks["url"].rsplit(":", 1)[1])
    assert tasks["url"].startswith("http://hub:") and tasks["environment"]["OGGMHUB_TASKS_BIND"] == "0.0.0.0"
    assert {"name": "tasks", "port": port, "targetPort": port} in hub["service"]["extraPorts"]
    assert any({"port": port} in rule["ports"] for rule in hub["networkPolicy"]["ingress"])
    for role in ("user", "server"):
        assert SCOPE in hub["loadRoles"][role]["scopes"]
    from oggmhub.tasks.cohort_gate import (
        SCOPES as GATE_SCOPES,  # cohort windows apply to runs
    )

    assert any("tasks" in role.get("services", []) and set(GATE_SCOPES) <= set(role["scopes"])
               for role in hub["loadRoles"].values())
    assert "configure_hub(c, tasks=False)" in hub["extraConfig"]["oggmhub-cohorts"]  # registered once
    spawner = hub["config"]["OGGMHubSpawner"]
    assert spawner["tasks_url"].endswith("/services/tasks/") and spawner["tasks_service_account"] == "hub"
    config = hub["extraFiles"]["oggmhub-tasks-config"]
    assert tasks["environment"]["OGGMHUB_TASKS_CONFIG"] == config["mountPath"]
    (tmp_path / "tasks_config.py").write_text(config["stringData"])
    assert "Catalog" not in config["stringData"]  # the catalog is declared once, in hub.config
    monkeypatch.setenv("OGGMHUB_TASKS_CONFIG", str(tmp_path / "tasks_config.py"))
    monkeypatch.delenv("OGGMHUB_CATALOG", raising=False)
    # JupyterHub starts the service with the environment the chart's hub config gives it
    service = chart_services(values)["tasks"]
    for key, value in service["environment"].items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("OGGMHUB_TASKS_CONFIG", str(tmp_path / "tasks_config.py"))  # its mountPath, here
    settings = TasksSettings()
    settings.initialize([])
    assert settings.backend == "kubernetes" and settings.catalog_path == hub["config"]["Catalog"]["path"]
    assert settings.pvc_name_template == values["singleuser"]["storage"]["dynamic"]["pvcNameTemplate"]
    dockerfile = (REPO / "images" / "hub" / "Dockerfile").read_text()
    for env in ("slicer", "fiji"):
        assert f"COPY images/{env}/tasks {settings.images_dir}/{env}/tasks" in dockerfile


def test_values_set_the_hubs_accounts_and_the_old_path_still_works():
    """Sign-up with approval on Kubernetes too: the authenticator lives in oggmhub.accounts
    (no backend's), and configurations naming its old path keep working."""
    from jupyterhub.auth import Authenticator

    from oggmhub.accounts import LocalHubAuthenticator
    from oggmhub.backends.local import accounts as old_path

    config = installed_values(VALUES_FILES[0])["hub"]["config"]
    assert config["JupyterHub"]["authenticator_class"] == "oggmhub.accounts.LocalHubAuthenticator"
    assert config["Authenticator"]["allow_all"] is True  # approval is the gate
    assert config["NativeAuthenticator"]["open_signup"] is False
    assert old_path.LocalHubAuthenticator is LocalHubAuthenticator and issubclass(LocalHubAuthenticator, Authenticator)
    local = (REPO / "hub_config" / "jupyterhub_config.py").read_text()
    assert 'authenticator_class = "oggmhub.accounts.LocalHubAuthenticator"' in local  # one class, both hubs
