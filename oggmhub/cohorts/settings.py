"""``c.Cohorts.*``: the settings of the hub's cohort pages and API.

The catalog cohorts are checked against is the hub's one ``c.Catalog.path``
(:mod:`oggmhub.catalog_setting`).
"""

from __future__ import annotations

import os

from traitlets import Integer, Unicode, default
from traitlets.config import LoggingConfigurable


class Cohorts(LoggingConfigurable):
    """Settings of the hub's cohort pages and API (``c.Cohorts.*``)."""

    homes_dir = Unicode(
        "",
        config=True,
        help="""Where members' homes are, one folder per user (the local backend's
        <data_dir>/homes). Empty (on Kubernetes): the hub exports and deletes no homes.""",
    )

    exports_dir = Unicode(
        config=True,
        help="""Where archives of members' homes are written; defaults to 'exports' beside homes_dir.""",
    )

    @default("exports_dir")
    def _default_exports_dir(self):
        return os.path.join(os.path.dirname(self.homes_dir.rstrip("/")), "exports") if self.homes_dir else ""

    prewarm_concurrency = Integer(
        10,
        config=True,
        help="""How many members' servers a pre-warm starts at once (JupyterHub's own
        concurrent_spawn_limit still applies).""",
    )

    prewarm_timeout = Integer(
        900, config=True, help="Seconds one member's server may take to become ready during a pre-warm."
    )

    stop_timeout = Integer(
        120, config=True, help="Seconds to wait for members' servers to stop when a cohort closes."
    )

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.prewarms = {}  # cohort name -> progress dict (oggmhub.cohorts.rules), for the hub's life
