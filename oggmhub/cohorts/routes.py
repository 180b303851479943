"""Cohorts inside the hub: a REST API (``/hub/api/cohorts``) and the organisers' pages
(``/hub/cohorts``), their templates, and the ``cohort-window`` service.

They run in the hub process, as JupyterHub handlers, because a cohort's organiser role
is created at run time and JupyterHub's REST API has no way to create roles; everything
is stored in the hub's own database (:mod:`oggmhub.cohorts.store`). Enable them with::

    from oggmhub.hub import configure_hub
    configure_hub(c)                       # in jupyterhub_config.py
    c.Cohorts.homes_dir = "/srv/data/homes"  # local backend: exports of members' homes

Settings: :mod:`oggmhub.cohorts.settings`; who may do what:
:mod:`oggmhub.cohorts.rules`; the handlers: :mod:`~oggmhub.cohorts.api`,
:mod:`~oggmhub.cohorts.pages` and :mod:`~oggmhub.cohorts.invitations`.
"""

from __future__ import annotations

import os
import sys

from oggmhub.cohorts import api, invitations, pages
from oggmhub.cohorts.model import ROLE_PREFIX
from oggmhub.cohorts.window import SCOPES

TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")
NAME = r"([a-z0-9][a-z0-9-]*)"


def configure(c, window_check_interval=60):
    """Add the cohort API and pages, their templates and the 'Cohorts' link to a hub's
    config, and the ``cohort-window`` service that stops members' servers when their
    window ends (checked every ``window_check_interval`` seconds; 0: not at all).
    Called by :func:`oggmhub.hub.configure_hub`."""
    c.JupyterHub.extra_handlers = [*c.JupyterHub.get("extra_handlers", []), *handlers()]
    c.JupyterHub.template_paths = [*c.JupyterHub.get("template_paths", []), TEMPLATES]
    c.JupyterHub.template_vars = {**c.JupyterHub.get("template_vars", {}), "oggmhub_cohorts_link": cohorts_link,
                                  "oggmhub_invitations": invitations.template_invitations}
    if window_check_interval:
        c.JupyterHub.services = [*c.JupyterHub.get("services", []), {
            "name": "cohort-window",
            "command": [sys.executable, "-m", "oggmhub.cohorts.window", f"--interval={window_check_interval}"],
        }]
        c.JupyterHub.load_roles = [*c.JupyterHub.get("load_roles", []), {
            "name": "cohort-window", "scopes": SCOPES, "services": ["cohort-window"],
        }]


def cohorts_link(user):
    """Template variable: show the 'Cohorts' link to admins and organisers."""
    if user is None or getattr(user, "kind", "user") != "user":
        return False
    return bool(user.admin or any(r.name.startswith(ROLE_PREFIX) for r in user.roles))


def handlers():
    """The (pattern, handler) pairs, relative to the hub's prefix."""
    return [
        (r"/api/cohorts", api.CohortListAPIHandler),
        (r"/api/cohorts/join", api.CohortJoinAPIHandler),
        (rf"/api/cohorts/{NAME}/invitation", api.CohortInvitationAPIHandler),
        (rf"/cohorts/{NAME}/invitation", invitations.InvitationPageHandler),
        (rf"/api/cohorts/{NAME}", api.CohortAPIHandler),
        (rf"/api/cohorts/{NAME}/members", api.CohortMembersAPIHandler),
        (rf"/api/cohorts/{NAME}/organisers", api.CohortOrganisersAPIHandler),
        (rf"/api/cohorts/{NAME}/join-code", api.CohortJoinCodeAPIHandler),
        (rf"/api/cohorts/{NAME}/close", api.CohortCloseAPIHandler),
        (rf"/api/cohorts/{NAME}/exports", api.CohortExportsAPIHandler),
        (rf"/api/cohorts/{NAME}/exports/([0-9TZ]+)", api.CohortExportDownloadAPIHandler),
        (rf"/api/cohorts/{NAME}/delete-homes", api.CohortDeleteHomesAPIHandler),
        (rf"/api/cohorts/{NAME}/prewarm", api.CohortPrewarmAPIHandler),
        (r"/cohorts", pages.CohortsPageHandler),
        (rf"/cohorts/{NAME}", pages.CohortPageHandler),
        (rf"/cohorts/{NAME}/prewarm.json", pages.CohortPrewarmStatusHandler),
        (rf"/cohorts/{NAME}/exports/([0-9TZ]+)\.tar\.gz", pages.CohortExportDownloadHandler),
    ]
