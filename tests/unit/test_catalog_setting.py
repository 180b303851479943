"""``c.Catalog.path``: one setting, and every part of the hub reads the catalog it names
(the spawners' picker, the cohort pages and API, the welcome page, launch links)."""

from types import SimpleNamespace

import yaml
from traitlets.config import Config

from oggmhub.catalog_setting import catalog_path
from oggmhub.cohorts.handler_base import CohortHandlerMixin
from oggmhub.launch.config import launch_settings
from oggmhub.launch.planning import LaunchContext
from oggmhub.welcome import Welcome
from support.paths import CATALOG

TITLE = "OGGM (read from c.Catalog.path)"


def test_the_one_setting_takes_effect_in_every_part(tmp_path, local_spawner):
    data = yaml.safe_load(CATALOG.read_text())
    data["environments"]["oggm"]["display_name"] = TITLE
    path = tmp_path / "elsewhere.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    c = Config()
    c.Catalog.path = str(path)

    spawner = local_spawner(config=c)
    assert spawner.catalog_path == str(path)
    assert TITLE in [p["display_name"] for p in spawner.picker_profile_list()]  # the picker's choices
    cohort_pages = SimpleNamespace(settings={"config": c})  # a cohort handler's view of the hub
    assert CohortHandlerMixin.catalog.fget(cohort_pages).environments["oggm"].display_name == TITLE
    assert TITLE in [e["title"] for e in Welcome(config=c).content()["environments"]]
    visitor = LaunchContext.for_visitor(launch_settings(c).catalog_path)  # a launch link, logged out
    assert visitor.catalog.environments["oggm"].display_name == TITLE


def test_the_default_is_the_environment_variable_else_the_repositorys_catalog(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a service started elsewhere (the tasks service, a benchmark)
    (tmp_path / "hub_config").mkdir()
    (tmp_path / "hub_config" / "catalog.yaml").write_text("not: this one\n")
    monkeypatch.delenv("OGGMHUB_CATALOG", raising=False)
    assert catalog_path(Config()) == str(CATALOG)
    monkeypatch.setenv("OGGMHUB_CATALOG", "/etc/oggmhub/catalog.yaml")
    assert catalog_path(Config()) == "/etc/oggmhub/catalog.yaml"
    c = Config()
    c.Catalog.path = "/srv/catalog.yaml"
    assert catalog_path(c) == "/srv/catalog.yaml"  # the setting wins over both


def test_the_parts_have_no_catalog_setting_of_their_own():
    from oggmhub.cohorts.settings import Cohorts
    from oggmhub.launch.config import Launch
    from oggmhub.spawner import OGGMHubSpawner
    from oggmhub.tasks.settings import TasksSettings

    for part in (OGGMHubSpawner, Cohorts, Welcome, Launch, TasksSettings):
        assert "catalog_path" not in part.class_trait_names(config=True), part.__name__


def test_the_tasks_service_reads_the_one_setting_from_its_file_or_from_the_hub(tmp_path, monkeypatch):
    from oggmhub.tasks import service as tasks_service
    from oggmhub.tasks.settings import TasksSettings

    monkeypatch.delenv("OGGMHUB_CATALOG", raising=False)
    config_file = tmp_path / "tasks_config.py"
    config_file.write_text('c.Catalog.path = "/srv/tasks-catalog.yaml"\n')
    monkeypatch.setenv("OGGMHUB_TASKS_CONFIG", str(config_file))
    settings = TasksSettings()
    settings.initialize([])
    assert settings.catalog_path == "/srv/tasks-catalog.yaml"
    c = Config()
    c.Catalog.path = "/srv/hub-catalog.yaml"
    tasks_service.configure(c)  # the local hub: the service is started with the hub's setting
    assert c.JupyterHub.services[-1]["environment"]["OGGMHUB_CATALOG"] == "/srv/hub-catalog.yaml"


def test_the_local_hubs_config_sets_it_once(tmp_path, monkeypatch):
    import os

    from traitlets.config.loader import PyFileConfigLoader

    from support.paths import REPO

    catalog = str(tmp_path / "catalog.yaml")
    for key, value in {"OGGMHUB_CATALOG": catalog, "OGGMHUB_DATA_DIR": str(tmp_path / "data"),
                       "OGGMHUB_CONFIG_EXTRA": ""}.items():
        monkeypatch.setenv(key, value)
    config = PyFileConfigLoader("jupyterhub_config.py", os.path.join(REPO, "hub_config")).load_config()
    assert catalog_path(config) == catalog
    assert [section for section, values in config.items() if "catalog_path" in values] == []
