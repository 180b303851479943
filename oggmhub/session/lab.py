"""A Jupyter server extension: tells oggmhub's JupyterLab extension where the session's
tutorials are, and sets up jupyter-resource-usage for the session (:mod:`.lab_usage`).

Enabled in every environment by ``etc/jupyter/jupyter_server_config.d/oggmhub.json``
(installed with oggmhub's wheel). It adds ``oggmhubTutorials`` (the folder
``tutorials/<env>`` under the server's root, from ``$OGGMHUB_ENVIRONMENT``) to
JupyterLab's page config, where the launcher extension
(``share/jupyter/labextensions/@oggmhub/tutorials``) reads it and shows one card per
tutorial. Nothing is added when the session has no tutorials folder.
"""

from __future__ import annotations

import os

from oggmhub.session import lab_usage
from oggmhub.session.tutorials import FOLDER, environment_name

PAGE_CONFIG_KEY = "oggmhubTutorials"


def tutorials_folder(root_dir, environ=None):
    """``tutorials/<env>`` (relative to ``root_dir``) if the session has one, else None."""
    env = environment_name(environ)
    if env is None:
        return None
    relative = f"{FOLDER}/{env}"
    return relative if os.path.isdir(os.path.join(root_dir, relative)) else None


def _jupyter_server_extension_points():
    return [{"module": "oggmhub.session.lab"}]


def _link_jupyter_server_extension(serverapp):
    # linking precedes every extension's loading: jupyter-resource-usage reads this when it loads
    applied = lab_usage.configure(serverapp)
    serverapp.log.info("oggmhub: the status bar shows usage against %s", ", ".join(
        f"{name}={applied[name]}" for name in ("mem_limit", "cpu_limit", "disk_path") if name in applied) or "no limits")


def _load_jupyter_server_extension(serverapp):
    folder = tutorials_folder(os.path.expanduser(serverapp.root_dir))
    if folder:
        serverapp.web_app.settings.setdefault("page_config_data", {})[PAGE_CONFIG_KEY] = folder
        serverapp.log.info("oggmhub: the launcher shows the tutorials in %s", folder)
