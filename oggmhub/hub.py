"""oggmhub inside the hub process: one call in ``jupyterhub_config.py`` adds its pages,
REST handlers, templates and hub-managed services, on both backends::

    from oggmhub.hub import configure_hub
    configure_hub(c)
"""

from __future__ import annotations

import os

from oggmhub import welcome
from oggmhub.cohorts import routes as cohort_routes
from oggmhub.launch import handlers as launch_handlers
from oggmhub.running_session import describe_server
from oggmhub.storage import handlers as storage_handlers
from oggmhub.tasks import service as tasks_service
from oggmhub.usage import handlers as usage_handlers

TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")


def configure_hub(c, window_check_interval=60, tasks=True):
    """Add oggmhub's templates (JupyterHub's pages with oggmhub's links), the cohorts'
    API, pages and ``cohort-window`` service (checked every ``window_check_interval``
    seconds; 0: not at all), the launch links' pages and API, and the ``tasks`` service
    (tool tasks as forms and REST jobs, :mod:`oggmhub.tasks.service`; ``tasks=False``:
    none; a dict: :func:`oggmhub.tasks.service.configure`'s arguments, e.g. ``url`` and
    ``bind`` in a z2jh hub pod) to a hub's config ``c``. A ``tasks`` service registered
    by the chart (``hub.services``; ``tasks=False`` here) is given ``c.Catalog.path``."""
    c.JupyterHub.template_paths = [TEMPLATES, *c.JupyterHub.get("template_paths", [])]
    c.JupyterHub.template_vars = {**c.JupyterHub.get("template_vars", {}), "oggmhub_running": describe_server}
    welcome.configure(c)  # the welcome page at / and on the login page (c.Welcome)
    cohort_routes.configure(c, window_check_interval=window_check_interval)
    launch_handlers.configure(c)  # /hub/launch, /hub/datasets, /hub/api/datasets/resolve
    storage_handlers.configure(c)  # /hub/storage, /hub/api/storage/usage, the home page's use
    usage_handlers.configure(c)  # /hub/usage, /hub/usage/admin, /hub/api/usage[/admin] (c.Usage)
    if tasks:
        tasks_service.configure(c, **(tasks if isinstance(tasks, dict) else {}))
    else:  # registered by the chart's hub.services: it still reads the hub's catalog
        tasks_service.pass_catalog(c)
