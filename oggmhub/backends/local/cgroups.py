"""CPU and memory limits of the chosen size on the local backend, through cgroups.

Each server session gets a cgroup of its own, ``oggmhub/<hub>-<user>`` (cgroup v2: one
directory under the unified hierarchy with the ``memory`` and ``cpu`` controllers; cgroup
v1: one directory in each of the ``memory``, ``cpu`` and ``cpuacct`` hierarchies). The
server process joins it before it runs anything (:meth:`SessionCgroup.join`, from the
spawner's ``preexec_fn``), so kernels, terminals and Dask workers it starts are in it too:

- memory: the size's ``memory.limit`` (no swap beyond it): a kernel that allocates past
  it is killed by the kernel's OOM killer, inside the cgroup only;
- CPU: the size's ``cpu.limit`` as a CFS quota (``limit * period`` per period);
- processes: ``pids.max`` (the spawner's ``pids_limit``), where the machine has the ``pids``
  controller (v1: its own hierarchy; v2: enabled beside memory and cpu): a fork loop stops
  at it, with ``BlockingIOError``, instead of taking every pid of the machine.

:meth:`SessionCgroup.kill` ends everything in the cgroup, double-forked escapes included
(v2: ``cgroup.kill``; v1: SIGKILL to every member, again until none is left).

:func:`detect` says which kind this machine has, or why there is none (then sizes are
not enforced and the hub says so at start-up). Needs root (or a delegated subtree).
"""

from __future__ import annotations

import os
import signal
import time

ROOT = "/sys/fs/cgroup"  # $OGGMHUB_CGROUP_ROOT overrides it (another mount point; a test's "no cgroups")
PREFIX = "oggmhub"
PERIOD_US = 100_000
V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "pids")  # pids where mounted


class CgroupError(RuntimeError):
    pass


def _writable(path):
    return os.path.isdir(path) and os.access(path, os.W_OK)


def default_root():
    return os.environ.get("OGGMHUB_CGROUP_ROOT") or ROOT


def detect(root=None):
    """``("v2", None)``, ``("v1", None)`` or ``(None, why not)``."""
    root = root or default_root()
    controllers = os.path.join(root, "cgroup.controllers")
    if os.path.exists(controllers):
        with open(controllers) as f:
            have = f.read().split()
        missing = [c for c in ("memory", "cpu") if c not in have]
        if missing:
            return None, f"cgroup v2 without the {', '.join(missing)} controller"
        if not _writable(root):
            return None, f"{root} is not writable by this user (run the hub as root, or delegate a cgroup to it)"
        return "v2", None
    v1 = [os.path.join(root, c) for c in ("memory", "cpu", "cpuacct")]
    if all(os.path.isdir(p) for p in v1):
        if not all(_writable(p) for p in v1):
            return None, f"the cgroup v1 hierarchies under {root} are not writable by this user (run the hub as root)"
        return "v1", None
    return None, f"no cgroup v2 ({controllers}) and no cgroup v1 memory, cpu and cpuacct hierarchies under {root}"


def describe(root=None):
    """A start-up line: whether sizes' CPU and memory limits hold on this machine."""
    root = root or default_root()
    kind, why = detect(root)
    if kind:
        return f"sizes' CPU and memory limits are enforced through cgroup {kind} ({root})"
    return f"sizes' CPU and memory limits are NOT enforced on this machine: {why}"


def _write(path, value):
    with open(path, "w") as f:
        f.write(str(value))


def _read(path):
    with open(path) as f:
        return f.read()


class SessionCgroup:
    """The cgroup of one server session (see the module's docstring)."""

    def __init__(self, kind, name, root=None):
        root = root or default_root()
        self.kind, self.name, self.root = kind, name, root
        if kind == "v2":
            self.dirs = {"unified": os.path.join(root, PREFIX, name)}
        else:
            have = [c for c in V1_CONTROLLERS if c != "pids" or os.path.isdir(os.path.join(root, c))]
            self.dirs = {c: os.path.join(root, c, PREFIX, name) for c in have}

    def create(self, cpu_limit, mem_limit, pids_limit=None):
        """Make the cgroup with the limits (``cpu_limit`` CPUs, ``mem_limit`` bytes,
        ``pids_limit`` processes and threads; 0 or None: none). Raises
        :class:`CgroupError` naming what failed."""
        try:
            if self.kind == "v2":
                parent = os.path.join(self.root, PREFIX)
                os.makedirs(parent, exist_ok=True)
                has_pids = "pids" in _read(os.path.join(self.root, "cgroup.controllers")).split()
                wanted = "+memory +cpu" + (" +pids" if has_pids else "")
                _write(os.path.join(self.root, "cgroup.subtree_control"), wanted)
                _write(os.path.join(parent, "cgroup.subtree_control"), wanted)
                path = self.dirs["unified"]
                os.makedirs(path, exist_ok=True)
                if pids_limit and has_pids:
                    _write(os.path.join(path, "pids.max"), int(pids_limit))
                if mem_limit:
                    _write(os.path.join(path, "memory.max"), int(mem_limit))
                    if os.path.exists(os.path.join(path, "memory.swap.max")):
                        _write(os.path.join(path, "memory.swap.max"), 0)
                if cpu_limit:
                    _write(os.path.join(path, "cpu.max"), f"{int(cpu_limit * PERIOD_US)} {PERIOD_US}")
            else:
                for path in self.dirs.values():
                    os.makedirs(path, exist_ok=True)
                memory, cpu = self.dirs["memory"], self.dirs["cpu"]
                if mem_limit:
                    _write(os.path.join(memory, "memory.limit_in_bytes"), int(mem_limit))
                    memsw = os.path.join(memory, "memory.memsw.limit_in_bytes")
                    if os.path.exists(memsw):  # no swapping past the limit
                        _write(memsw, int(mem_limit))
                if cpu_limit:
                    _write(os.path.join(cpu, "cpu.cfs_period_us"), PERIOD_US)
                    _write(os.path.join(cpu, "cpu.cfs_quota_us"), int(cpu_limit * PERIOD_US))
                if pids_limit and "pids" in self.dirs:
                    _write(os.path.join(self.dirs["pids"], "pids.max"), int(pids_limit))
        except OSError as e:
            self.remove()
            raise CgroupError(f"could not set up the cgroup {PREFIX}/{self.name} ({self.kind}): {e}") from e
        return self

    def join(self, pid=None):
        """Move ``pid`` (default: this process) into the cgroup; in a child before exec."""
        pid = pid or os.getpid()
        for path in self.dirs.values():
            _write(os.path.join(path, "cgroup.procs"), pid)

    def pids(self):
        found = set()
        for path in self.dirs.values():
            try:
                found.update(int(p) for p in _read(os.path.join(path, "cgroup.procs")).split())
            except OSError:
                pass
        return sorted(found)

    def pids_max(self):
        """The cgroup's ``pids.max`` (an int), or None where there is none (or it is 'max')."""
        path = self.dirs.get("pids") or self.dirs.get("unified")
        try:
            value = _read(os.path.join(path, "pids.max")).strip()
        except (OSError, TypeError):
            return None
        return int(value) if value.isdigit() else None

    def kill(self, timeout=10):
        """SIGKILL every process in the cgroup until none is left (what forks meanwhile is
        in the cgroup too, and goes in the next round). The pids still there after
        ``timeout`` s (none, normally)."""
        kill_file = os.path.join(self.dirs.get("unified", ""), "cgroup.kill")
        if self.kind == "v2" and os.path.exists(kill_file):
            try:
                _write(kill_file, 1)
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        while True:
            left = [p for p in self.pids() if p != os.getpid()]
            if not left or time.monotonic() > deadline:
                return left
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)

    def cpu_seconds(self):
        """CPU time used by the session so far (from the cgroup's accounting)."""
        if self.kind == "v2":
            stat = dict(line.split() for line in _read(os.path.join(self.dirs["unified"], "cpu.stat")).splitlines())
            return int(stat["usage_usec"]) / 1e6
        return int(_read(os.path.join(self.dirs["cpuacct"], "cpuacct.usage"))) / 1e9

    def memory_peak(self):
        """The most memory the session has held at once, in bytes (None where not told:
        cgroup v2 before Linux 5.19 has no ``memory.peak``)."""
        path = self.dirs.get("unified") or self.dirs["memory"]
        name = "memory.peak" if self.kind == "v2" else "memory.max_usage_in_bytes"
        try:
            return int(_read(os.path.join(path, name)))
        except (OSError, ValueError):
            return None

    def oom_kills(self):
        """How many processes the OOM killer ended in this cgroup (None if not told)."""
        path = self.dirs.get("unified") or self.dirs["memory"]
        name = "memory.events" if self.kind == "v2" else "memory.oom_control"
        try:
            fields = dict(line.split() for line in _read(os.path.join(path, name)).splitlines())
        except OSError:
            return None
        return int(fields["oom_kill"]) if "oom_kill" in fields else None

    def remove(self, timeout=5):
        """Remove the cgroup once its processes are gone (a stopped session's)."""
        deadline = time.monotonic() + timeout
        for path in self.dirs.values():
            while os.path.isdir(path):
                try:
                    os.rmdir(path)
                except OSError:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.1)


def session_name(data_dir, user_slug, server_slug=""):
    """The cgroup name of a session: ``<hub>-<user>[--<server>]``, ``<hub>`` a short hash
    of the hub's data directory, so two hubs on one machine never share a user's cgroup."""
    import hashlib

    hub = hashlib.sha256(os.path.abspath(data_dir).encode()).hexdigest()[:8]
    return f"{hub}-{user_slug}" + (f"--{server_slug}" if server_slug else "")


def session_cgroup(name, cpu_limit, mem_limit, root=None, pids_limit=None):
    """A created :class:`SessionCgroup` for ``name``, or None where cgroups are not available."""
    root = root or default_root()
    kind, _ = detect(root)
    if kind is None:
        return None
    return SessionCgroup(kind, name, root).create(cpu_limit, mem_limit, pids_limit)
