"""A local server's processes: everything a start launched carries its session marker
(``$OGGMHUB_SESSION``), so a stop ends them all, double-forked desktop daemons included,
where the server has no cgroup (see :mod:`.lifecycle`: only with the server's uid)."""

from __future__ import annotations

import os

import psutil

from oggmhub.session import env as session_vars


def session_processes(session, exclude=(), uid=None):
    """The processes whose environment has session_vars.SESSION=``session`` (and, when
    ``uid`` is given, that run as ``uid``: a marker alone is no proof of whose it is)."""
    found = []
    for proc in psutil.process_iter():
        if proc.pid in exclude or proc.pid == os.getpid():
            continue
        try:
            if uid is not None and proc.uids().real != uid:
                continue
            if proc.environ().get(session_vars.SESSION) == session:
                found.append(proc)
        except psutil.Error:  # gone, or another user's
            continue
    return found


def end_processes(procs, grace=3):
    """SIGTERM ``procs`` (psutil processes) still running, then SIGKILL what outlives ``grace`` s."""
    alive = [p for p in procs if p.is_running()]  # is_running: the same process, not a reused pid
    for proc in alive:
        try:
            proc.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(alive, timeout=grace)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=grace)
