"""Where a tool run lives on this machine: a cgroup of its own, the user's account, a clean
interpreter, and nothing of it left once the run ends.

Each run of the local backend gets the cgroup ``oggmhub/<hub>-<user folder>--task-<run id>``
(:class:`RunCgroup`: the memory, cpu and cpuacct hierarchies of
:class:`oggmhub.backends.local.cgroups.SessionCgroup`, plus ``pids``), made by root with
the user's budget for one run: one Dask worker's share of the size (``memory_per_worker``
bytes, one core) and ``pids_max`` processes. The tool joins it while still root and only
then becomes the user's account (:func:`preexec`), so it cannot leave it; everything it
starts (double forks and ``setsid`` included) is in it too. When the run ends (done,
failed, timed out or cancelled) :meth:`RunCgroup.kill_all` kills every process the kernel
lists in the cgroup — processes are found by cgroup membership, never by a pid a user
could have written — and the cgroup is removed.

Where cgroups cannot be used (a hub that is not root) the tool runs in a session of its
own and a cancel ends its process group; a process that leaves the group survives then
(the hub says at start-up that sizes are not enforced).
"""

from __future__ import annotations

import os

from oggmhub.backends.local import cgroups
from oggmhub.backends.local.cgroups import SessionCgroup


class RunCgroup(SessionCgroup):
    """The cgroup of one tool run: a server's kind of cgroup (memory, cpu, cpuacct and, where
    the machine has it, pids: :class:`~oggmhub.backends.local.cgroups.SessionCgroup`), ended
    with its run."""

    def kill_all(self, timeout=10):
        """SIGKILL every process in the cgroup until none is left (True) or ``timeout``."""
        return not self.kill(timeout)

    def end(self):
        """Kill what is left and remove the cgroup (the run is over)."""
        self.kill()
        self.remove()


def run_cgroup(data_dir, user_folder, run_id, cpu_limit, mem_limit, pids_max, root=None):
    """A created :class:`RunCgroup` for one run, or None where cgroups cannot be used."""
    root = root or cgroups.default_root()
    kind, _ = cgroups.detect(root)
    if kind is None:
        return None
    name = cgroups.session_name(data_dir, user_folder) + f"--task-{run_id}"
    return RunCgroup(kind, name, root).create(cpu_limit, mem_limit, pids_limit=pids_max)


def end_leftovers(data_dir, root=None):
    """Kill and remove the run cgroups a previous service process of this hub left (it
    stopped without ending its runs); the names of those ended."""
    root = root or cgroups.default_root()
    kind, _ = cgroups.detect(root)
    if kind is None:
        return []
    prefix = cgroups.session_name(data_dir, "")
    parent = RunCgroup(kind, "x", root).dirs
    names = set()
    for path in parent.values():
        try:
            names.update(n for n in os.listdir(os.path.dirname(path)) if n.startswith(prefix) and "--task-" in n)
        except OSError:
            continue
    for name in sorted(names):
        RunCgroup(kind, name, root).end()
    return sorted(names)


def preexec(cgroup, run_as):
    """A ``preexec_fn``: join ``cgroup`` while root, then become ``run_as`` (groups, gid,
    uid, in that order); either may be None. Only system calls: it runs between fork and exec."""
    procs = [os.path.join(d, "cgroup.procs") for d in cgroup.dirs.values()] if cgroup is not None else []

    def child():
        pid = str(os.getpid()).encode()
        for path in procs:
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, pid)
            finally:
                os.close(fd)
        if run_as is not None:
            os.setgroups(list(run_as["groups"]))
            os.setgid(run_as["gid"])
            os.setuid(run_as["uid"])
            if os.getuid() != run_as["uid"] or os.geteuid() != run_as["uid"]:
                raise OSError(f"could not become {run_as['name']}")

    return child


# --- a clean interpreter for the tools (no work folder, no user site, no PYTHON* variables) ---


def oggmhub_root():
    """The folder holding the ``oggmhub`` package the service runs."""
    import oggmhub

    return os.path.dirname(os.path.dirname(os.path.abspath(oggmhub.__file__)))


def module_command(python, module):
    """``python -I`` running ``module``'s ``main()`` (arguments follow): isolated, so neither the
    tool's working folder nor the account's ``~/.local`` nor ``PYTHONPATH`` reaches its
    imports; oggmhub comes from the service's own package folder (first where it is a
    source checkout, after the environment's packages where it is an installed one)."""
    root = oggmhub_root()
    installed = os.path.basename(root) in ("site-packages", "dist-packages")
    where = f"sys.path.append({root!r})" if installed else f"sys.path.insert(0, {root!r})"
    code = f"import sys; {where}; from {module} import main; sys.exit(main())"
    return [python, "-I", "-c", code]


def script_command(python, script):
    """``python -I SCRIPT``: the script's own folder, the working folder and the user's site
    are not on its import path."""
    return [python, "-I", script]
