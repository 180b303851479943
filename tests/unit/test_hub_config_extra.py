"""``oggmhub hub --config-extra FILE``: the option exists, a missing file is refused in one
line before anything starts, and a setting in the file takes effect in the hub's config
(the README's welcome-page and launch-link instructions rely on it)."""

import os
import subprocess
import sys

from support.paths import REPO

CONFIG = os.path.join(REPO, "hub_config", "jupyterhub_config.py")


def test_the_option_is_in_the_help_and_a_missing_file_is_refused_naming_it(tmp_path):
    env = {**os.environ, "PYTHONPATH": REPO}
    done = subprocess.run([sys.executable, "-m", "oggmhub", "hub", "--help"], capture_output=True, text=True, env=env,
                          timeout=60)
    assert done.returncode == 0 and "--config-extra FILE" in done.stdout
    missing = tmp_path / "nope.py"
    done = subprocess.run([sys.executable, "-m", "oggmhub.backends.local.hub_options", "--port", "0",
                           "--config-extra", str(missing), "--data-dir", str(tmp_path / "data")],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2 and f"--config-extra {missing}: no such file" in done.stderr
    assert not (tmp_path / "data").exists()


def test_the_extra_files_settings_take_effect_in_order(tmp_path, monkeypatch):
    import argparse

    from traitlets.config.loader import PyFileConfigLoader

    from oggmhub.backends.local.hub import hub_environment
    from oggmhub.backends.local.hub_options import add_hub_arguments

    first, second = tmp_path / "first.py", tmp_path / "second.py"
    first.write_text("c.Welcome.title = 'Glacier school'\nc.JupyterHub.public_url = 'https://hub.example.org/'\n")
    second.write_text("c.Welcome.title = 'Glacier school 2027'\n")
    args = add_hub_arguments(argparse.ArgumentParser()).parse_args(
        ["--data-dir", str(tmp_path / "data"), "--config-extra", str(first), "--config-extra", str(second)])
    env = hub_environment(args)
    assert env["OGGMHUB_CONFIG_EXTRA"] == f"{first}{os.pathsep}{second}"
    for key in ("OGGMHUB_DATA_DIR", "OGGMHUB_CONFIG_EXTRA", "OGGMHUB_IDLE_TIMEOUT", "OGGMHUB_CATALOG"):
        monkeypatch.setenv(key, env[key])
    config = PyFileConfigLoader(os.path.basename(CONFIG), os.path.dirname(CONFIG)).load_config()
    assert config.Welcome.title == "Glacier school 2027"  # the later file wins
    assert config.JupyterHub.public_url == "https://hub.example.org/"
    monkeypatch.setenv("OGGMHUB_CONFIG_EXTRA", "")
    config = PyFileConfigLoader(os.path.basename(CONFIG), os.path.dirname(CONFIG)).load_config()
    assert "title" not in config.Welcome
