"""Tell the user inside JupyterLab that a usage budget is used up and when their server stops.

The hub warns a running server over one of its user's budgets on the hub's home page,
then stops it after ``c.Usage.grace_seconds`` (:mod:`oggmhub.usage.accounting`). On the
local hub it also leaves that warning, one sentence, in the session's scratch
(``$OGGMHUB_SCRATCH/budget-notice.<server>.json``, written by root, readable by the user,
removed when the server stops or starts). Every kernel of the server checks for it before
each cell it runs (registered by :func:`oggmhub.session.oom_notice.load_ipython_extension`)
and prints it once, above the cell's output:

    oggmhub: your usage budget 'workshop' (...) is used up (...), so this server will be
    stopped at 2026-12-08 14:05 UTC: save your work now.

Imports nothing of the hub; no file (or an unreadable one): says nothing.
"""

from __future__ import annotations

import json
import os

from oggmhub.session import env as session_vars

SERVER_NAME = "JUPYTERHUB_SERVER_NAME"  # set by JupyterHub in every server; empty: the default one


def file_name(server_name):
    """The notice's name in the scratch for the server ``server_name`` ("" is the default one)."""
    return f"budget-notice.{server_name or 'default'}.json"


def read(environ=None):
    """``{"text": ..., "stops_at": ...}`` left by the hub for this server, or None."""
    environ = os.environ if environ is None else environ
    scratch = environ.get(session_vars.SCRATCH)
    if not scratch:
        return None
    try:
        with open(os.path.join(scratch, file_name(environ.get(SERVER_NAME, "")))) as f:
            notice = json.load(f)
    except (OSError, ValueError):
        return None
    return notice if isinstance(notice, dict) and isinstance(notice.get("text"), str) else None


def register(ipython, environ=None):
    """Print the notice before the next cell, once per notice and kernel."""
    shown = set()

    def before_cell(*_):
        try:
            notice = read(environ)
        except Exception:  # noqa: BLE001 - a notice must never break a kernel
            notice = None
        if notice and notice["text"] not in shown:
            shown.add(notice["text"])
            print(notice["text"], flush=True)

    ipython.events.register("pre_run_cell", before_cell)
    return before_cell
