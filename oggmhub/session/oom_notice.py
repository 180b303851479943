"""Tell the user why their kernel restarted, when the size's memory limit killed it.

An IPython extension, loaded into every kernel of a local server whose size's limits hold
(the local hub puts :data:`KERNEL_CONFIG` into the environment's
``etc/ipython/ipython_kernel_config.py``).
Before the first cell a kernel runs, it reads its memory cgroup's count of out-of-memory
kills (cgroup v1 ``memory.oom_control``, v2 ``memory.events``: world-readable). If the
count rose since the last kernel of the server looked (kept in ``$OGGMHUB_SCRATCH``), the
kernel that was killed was one of this server's, and the cell's output starts with why:

    oggmhub: the previous kernel was stopped for using more than this size's memory limit
    (600 MiB); this kernel is a fresh one: ...

Imports nothing of the hub; no cgroup (or none readable): says nothing.
"""

from __future__ import annotations

import json
import os

from oggmhub.session import budget_notice
from oggmhub.session import env as session_vars

STATE = "oom-kills.json"


def memory_cgroup(proc_cgroup="/proc/self/cgroup", root="/sys/fs/cgroup"):
    """``(kind, folder)`` of this process's memory cgroup, or None."""
    try:
        with open(proc_cgroup) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return "v1", os.path.join(root, "memory", path.lstrip("/"))
    for line in lines:
        if line.startswith("0::"):
            return "v2", os.path.join(root, line[3:].lstrip("/"))
    return None


def oom_kills(cgroup):
    """How many processes the OOM killer ended in ``cgroup`` (from :func:`memory_cgroup`), or None."""
    kind, folder = cgroup
    name = "memory.oom_control" if kind == "v1" else "memory.events"
    try:
        with open(os.path.join(folder, name)) as f:
            fields = dict(line.split() for line in f.read().splitlines() if line.strip())
    except (OSError, ValueError):
        return None
    return int(fields["oom_kill"]) if "oom_kill" in fields else None


def _size(n):
    for unit, factor in (("GiB", 2**30), ("MiB", 2**20)):
        if n >= factor:
            return f"{n / factor:.3g} {unit}"
    return f"{n} bytes"


def notice(environ=None, cgroup=None):
    """The notice to show (and the count recorded), or None if no kernel was killed since."""
    environ = os.environ if environ is None else environ
    scratch = environ.get(session_vars.SCRATCH)
    cgroup = cgroup or memory_cgroup()
    if not scratch or cgroup is None:
        return None
    count = oom_kills(cgroup)
    if count is None:
        return None
    state = os.path.join(scratch, STATE)
    try:
        with open(state) as f:
            seen = json.load(f)
    except (OSError, ValueError):
        seen = {}
    before = seen.get("count", 0) if seen.get("cgroup") == cgroup[1] else 0  # a new server: a new cgroup
    try:
        with open(state + ".tmp", "w") as f:
            json.dump({"cgroup": cgroup[1], "count": count}, f)
        os.replace(state + ".tmp", state)
    except OSError:
        pass
    if count <= before:
        return None
    limit = environ.get(session_vars.MEM_LIMIT, "")
    limit = f" ({_size(int(limit))})" if limit.isdigit() and int(limit) else ""
    return (f"oggmhub: the previous kernel was stopped for using more than this size's memory limit{limit}; "
            "this kernel is a fresh one, and what the old one held is gone. Use less memory at once "
            "(smaller pieces, del what you no longer need), or start the server with a larger size.")


def load_ipython_extension(ipython):
    """Show :func:`notice` before the first cell this kernel runs, and a used-up budget's
    notice (:mod:`.budget_notice`) before any cell."""
    def before_first_cell(*_):
        ipython.events.unregister("pre_run_cell", before_first_cell)
        try:
            text = notice()
        except Exception:  # noqa: BLE001 - a notice must never break a kernel
            text = None
        if text:
            print(text, flush=True)

    ipython.events.register("pre_run_cell", before_first_cell)
    budget_notice.register(ipython)  # the other notice a kernel shows before a cell: a budget used up


# a guarded line rather than an extension: an environment whose oggmhub predates this module
# (helpers of another checkout of the hub) starts its kernels as before, with no error
KERNEL_CONFIG = """# oggmhub: say why a kernel restarted when the size's memory limit stopped it (oggmhub/session/oom_notice.py)
c.InteractiveShellApp.exec_lines.append(
    "try:\\n    from oggmhub.session.oom_notice import load_ipython_extension as _oggmhub_oom\\n"
    "    _oggmhub_oom(get_ipython())\\n    del _oggmhub_oom\\nexcept ImportError:\\n    pass")
"""
