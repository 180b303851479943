"""jupyter-resource-usage configured for the session (oggmhub.session.lab_usage): limits from
the spawner's variables, storage's first warning for the home, the user's own config kept,
and the tool pinned in every environment at a version that reports disk use. The status
bar itself, in Chromium on a real hub with a quota home, is in tests/hub/test_storage_hub.py."""

import re
from types import SimpleNamespace

import pytest
from traitlets.config import Config

from oggmhub.session import lab, lab_usage
from oggmhub.storage import usage as storage_usage
from support import paths

SESSION = {"OGGMHUB_MEM_LIMIT": str(4 * 2**30), "OGGMHUB_CPU_LIMIT": "2", "HOME": "/home/ada"}


def test_the_sessions_limits_and_home_are_what_the_status_bar_measures_against():
    config = lab_usage.resource_usage_config(SESSION)
    assert config["mem_limit"] == 4 * 2**30 and config["cpu_limit"] == 2.0
    assert config["disk_path"] == "/home/ada" and config["track_disk_usage"] and config["track_cpu_percent"]
    # the tool warns when what is left is under the threshold: from 80% used, as the hub home page
    assert config["disk_warning_threshold"] == pytest.approx(1 - storage_usage.WARN)
    assert config["mem_warning_threshold"] == pytest.approx(0.2) and config["cpu_warning_threshold"] == 0


@pytest.mark.parametrize("bad", [{}, {"OGGMHUB_MEM_LIMIT": "lots", "OGGMHUB_CPU_LIMIT": "many"},
                                 {"OGGMHUB_MEM_LIMIT": "0", "OGGMHUB_CPU_LIMIT": "-1"}])
def test_no_or_unreadable_limits_leave_the_tools_own_defaults(bad):
    config = lab_usage.resource_usage_config(bad)
    assert not {"mem_limit", "cpu_limit", "disk_path"} & set(config)  # MEM_LIMIT, CPU_LIMIT, $HOME then
    assert config["track_disk_usage"] is True


def test_the_extension_lays_the_settings_under_the_users_own_when_it_links(monkeypatch):
    user = Config()
    user.ResourceUseDisplay.disk_warning_threshold = 0.5  # e.g. from ~/.jupyter/jupyter_server_config.py
    logged = []
    server = SimpleNamespace(config=user, log=SimpleNamespace(info=lambda *a: logged.append(a[0] % a[1:])))
    for name, value in SESSION.items():
        monkeypatch.setenv(name, value)
    lab._link_jupyter_server_extension(server)
    section = server.config.ResourceUseDisplay
    assert section.disk_warning_threshold == 0.5  # the user's
    assert section.mem_limit == 4 * 2**30 and section.disk_path == "/home/ada" and section.track_disk_usage is True
    assert logged == ["oggmhub: the status bar shows usage against mem_limit=4294967296, cpu_limit=2.0, "
                      "disk_path=/home/ada"]


@pytest.mark.parametrize("env", ["oggm", "slicer", "fiji"])
def test_every_environment_pins_a_resource_usage_that_reports_disk(env):
    pins = (paths.REPO / "images" / env / "requirements.txt").read_text()
    version = re.search(r"^jupyter-resource-usage==(\d+)\.(\d+)\.\d+$", pins, re.M)
    assert version, f"images/{env}/requirements.txt pins no jupyter-resource-usage"
    assert (int(version[1]), int(version[2])) >= (1, 1)  # track_disk_usage came with 1.1
    assert re.search(r"^jupyter-resource-usage>=1\.1$", (paths.REPO / "images" / env / "requirements.in").read_text(), re.M)
