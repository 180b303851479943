"""What the local hub says as it stops: which users' servers keep running, and how to stop them.

The local hub leaves servers running when it stops (``cleanup_servers`` off: a restart finds
them again); an admin pressing Ctrl-C should know that. :func:`register` (called from
``hub_config/jupyterhub_config.py``) prints one line at the hub's exit, read from the hub's
own database once JupyterHub has closed it.
"""

from __future__ import annotations

import atexit
import sqlite3
import sys


def running_servers(db_path):
    """Names of users (``user/server`` for named servers) whose server the hub's database records as running."""
    try:
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=2) as db:
            rows = db.execute(
                "SELECT users.name, spawners.name FROM spawners JOIN users ON spawners.user_id = users.id "
                "WHERE spawners.server_id IS NOT NULL ORDER BY users.name").fetchall()
    except sqlite3.Error:
        return []
    return [f"{user}/{server}" if server else user for user, server in rows]


def notice(db_path, stopping_servers):
    """The line to print as the hub exits (None when no server is left running)."""
    names = running_servers(db_path)
    if not names:
        return None
    count = f"{len(names)} server{'s' if len(names) != 1 else ''}"
    if stopping_servers:
        return f"oggmhub: {count} could not be stopped and may still run ({', '.join(names)})"
    verb, them = ("keeps", "it") if len(names) == 1 else ("keep", "them")
    return (f"oggmhub: {count} {verb} running ({', '.join(names)}) and the next start finds {them} again; "
            f"stop {them} at /hub/admin, or start the hub with --stop-servers-on-exit to stop {them} with it")


def _print_notice(db_path, stopping_servers):
    line = notice(db_path, stopping_servers)
    if line:
        print(line, file=sys.stderr, flush=True)


def register(db_path, stopping_servers):
    """Print :func:`notice` when this (the hub's) process exits."""
    atexit.register(_print_notice, db_path, stopping_servers)
