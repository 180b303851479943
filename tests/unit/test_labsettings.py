"""JupyterLab defaults merged into an environment's overrides.json (oggmhub.session.labsettings)."""

import json
import subprocess
import sys

from oggmhub.session.labsettings import DEFAULTS, overrides_path

NOTIFICATION = "@jupyterlab/apputils-extension:notification"


def run(prefix):
    return subprocess.run([sys.executable, "-m", "oggmhub.session.labsettings", str(prefix)],
                          capture_output=True, text=True)


def test_a_fresh_environment_gets_no_news_and_no_update_checks(tmp_path):
    result = run(tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(overrides_path(tmp_path).read_text()) == DEFAULTS
    assert DEFAULTS[NOTIFICATION] == {"checkForUpdates": False, "fetchNews": "false"}


def test_what_an_admin_set_is_kept_and_merged(tmp_path):
    path = overrides_path(tmp_path)
    path.parent.mkdir(parents=True)
    admin = {NOTIFICATION: {"fetchNews": "true"}, "@jupyterlab/apputils-extension:themes": {"theme": "JupyterLab Dark"}}
    path.write_text(json.dumps(admin))
    assert run(tmp_path).returncode == 0
    merged = json.loads(path.read_text())
    assert merged[NOTIFICATION] == {"fetchNews": "true", "checkForUpdates": False}
    assert merged["@jupyterlab/apputils-extension:themes"] == {"theme": "JupyterLab Dark"}
    assert run(tmp_path).returncode == 0 and json.loads(path.read_text()) == merged  # idempotent


def test_a_broken_overrides_file_is_named_and_left_untouched(tmp_path):
    path = overrides_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    result = run(tmp_path)
    assert result.returncode == 1
    assert f"{path}: not valid JSON" in result.stderr and "fix or remove it" in result.stderr
    assert path.read_text() == "{not json"
    path.write_text("[1, 2]")
    result = run(tmp_path)
    assert result.returncode == 1 and "must hold a JSON object of plugin settings, not list" in result.stderr
