"""JupyterLab's status bar shows the session's memory, CPU and home disk against its limits.

jupyter-resource-usage (in every environment's requirements) draws them; this module
configures it for the session, from what the spawner put in the server's environment:

* memory against the size's limit (``$OGGMHUB_MEM_LIMIT``, bytes; JupyterHub's own
  ``$MEM_LIMIT`` carries the same figure), warning in the last 20%;
* CPU use against the size's limit (``$OGGMHUB_CPU_LIMIT``, cores), never flashing: a
  computation using the cores it was given is no fault;
* the disk of the home (``$HOME``) against its size: on the local hub as root the home is
  a loop-mounted filesystem of the user's quota, on Kubernetes the home's claim, so the
  filesystem's size is the quota; warning from 80% used, storage's first warning
  (:data:`HOME_WARN`; the tool has a single threshold, so 95% looks the same).

Called by :mod:`oggmhub.session.lab` when the server links its extensions, before any is
loaded (jupyter-resource-usage reads ``ResourceUseDisplay`` when it loads). What the
user's own Jupyter config sets for ``ResourceUseDisplay`` wins. Imports nothing hub-side.
"""

from __future__ import annotations

import os

from oggmhub.session import env as session_vars

SECTION = "ResourceUseDisplay"
HOME_WARN = 0.80  # = oggmhub.storage.usage.WARN (a test holds them equal)
MEM_WARN = 0.80


def resource_usage_config(environ=None):
    """The ``ResourceUseDisplay`` settings for this session (a dict of trait values)."""
    environ = os.environ if environ is None else environ
    config = {
        "track_cpu_percent": True,
        "cpu_warning_threshold": 0.0,
        "mem_warning_threshold": round(1 - MEM_WARN, 6),
        "track_disk_usage": True,
        "disk_warning_threshold": round(1 - HOME_WARN, 6),
    }
    mem = environ.get(session_vars.MEM_LIMIT, "")
    if mem.isdigit() and int(mem):
        config["mem_limit"] = int(mem)
    try:
        cpu = float(environ.get(session_vars.CPU_LIMIT, ""))
    except ValueError:
        cpu = 0.0
    if cpu > 0:
        config["cpu_limit"] = cpu
    if environ.get("HOME"):
        config["disk_path"] = environ["HOME"]
    return config


def configure(serverapp, environ=None):
    """Lay :func:`resource_usage_config` under the server's config; the settings applied."""
    section = serverapp.config[SECTION]  # traitlets creates the section when it is missing
    applied = {name: value for name, value in resource_usage_config(environ).items() if name not in section}
    for name, value in applied.items():
        section[name] = value
    return applied
