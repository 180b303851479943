"""``c.Usage``: where usage records are kept, and how budgets and abuse signals act."""

from __future__ import annotations

import os

from traitlets import Bool, Float, Unicode, default
from traitlets.config import Configurable

from oggmhub.usage.store import store_at


class Usage(Configurable):
    """Usage accounting (:mod:`oggmhub.usage`)."""

    enabled = Bool(True, config=True, help="""Record usage (servers, task runs) and enforce budgets.

        False: nothing is recorded and no budget is checked (the benchmark's 'accounting off').""")

    db_path = Unicode(config=True, help="""The SQLite file holding usage records.

        Defaults to $OGGMHUB_USAGE_DB, else <$OGGMHUB_DATA_DIR>/usage.sqlite (the hub's data
        directory), else ./usage.sqlite in the hub's working directory. Readable by its owner
        only. The tasks service reads the default from its environment: set a different
        path through $OGGMHUB_USAGE_DB for both.""")

    @default("db_path")
    def _default_db_path(self):
        return os.environ.get("OGGMHUB_USAGE_DB") or os.path.join(
            os.environ.get("OGGMHUB_DATA_DIR") or os.getcwd(), "usage.sqlite")

    grace_seconds = Float(600, config=True, help="""Seconds a running server may go on once a budget
        of its user is used up: it is warned at once (home and usage pages, the hub's log), and
        stopped when the grace is over. 0: stopped at the first check.""")

    abuse_hours = Float(2, config=True, help="""The abuse signal: a session counts as 'busy with no
        user' when its CPU use has stayed at or above abuse_cpu_share of its limit for this many
        hours while its user did nothing on the hub or the server.""")

    abuse_cpu_share = Float(0.9, config=True, help="""The share of its CPU limit (0-1) a session
        must use, without a break, to count towards the abuse signal (see abuse_hours).""")

    @property
    def store(self):
        return store_at(self.db_path)

    def store_in(self, data_dir):
        """The store of a process that knows its hub's data directory (the local spawner, the
        tasks service): ``<data_dir>/usage.sqlite`` unless db_path or $OGGMHUB_USAGE_DB says otherwise."""
        configured = "db_path" in self.config.get("Usage", {}) or os.environ.get("OGGMHUB_USAGE_DB")
        return self.store if configured or not data_dir else store_at(os.path.join(data_dir, "usage.sqlite"))


def usage_settings(config):
    """:class:`Usage` from a hub's (or spawner's) config."""
    return Usage(config=config)
