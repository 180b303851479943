"""The size's CPU and memory limits of a local server, and its process limit
(``pids_limit``): its cgroup (:mod:`.cgroups`).

A mixin of :class:`~.spawner.LocalEnvSpawner`: each start gets a cgroup of its own, which
the server process joins in its ``preexec_fn`` while still root (before it becomes the
user's system account, see :mod:`.run_as`), and which goes when the server stops. Where
the limits hold, the environment's kernels load :mod:`oggmhub.session.oom_notice`, which
tells the user when the memory limit stopped their previous kernel.
"""

from __future__ import annotations

import os
import tempfile

from kubespawner.slugs import safe_slug
from traitlets import Int, TraitError, validate
from traitlets.config import LoggingConfigurable

from oggmhub.backends.local import cgroups
from oggmhub.errors import SpawnFailed
from oggmhub.session import env as session_vars


MIN_PIDS = 64  # a Jupyter server, a kernel and a small Dask cluster need about this many threads


class SizeLimits(LoggingConfigurable):
    """Where this start's cgroup is made and removed."""

    pids_limit = Int(
        512, config=True,
        help=f"""The most processes and threads one server may have at once (its cgroup's
        pids.max, where the machine has the pids controller): a fork loop in a notebook
        stops there (BlockingIOError) instead of taking every pid of the machine. The
        server, its kernels, terminals and Dask workers all count, each thread too. At
        least {MIN_PIDS}; default 512.""",
    )

    @validate("pids_limit")
    def _check_pids_limit(self, proposal):
        value = proposal["value"]
        if value < MIN_PIDS:
            raise TraitError(f"pids_limit {value} is too small: a server needs at least {MIN_PIDS} "
                             f"processes and threads (its Jupyter server, kernels, Dask workers); "
                             f"use an integer >= {MIN_PIDS} (default 512)")
        return value

    _cgroup = None

    def _limit_resources(self):
        """Put this start's server into a cgroup with its size's limits, where the machine has cgroups."""
        self._remove_cgroup()
        server = safe_slug(self.name) if self.name else ""
        name = cgroups.session_name(self.data_dir, safe_slug(self.user.name), server)
        try:
            self._cgroup = cgroups.session_cgroup(name, self.cpu_limit, self.mem_limit, pids_limit=self.pids_limit)
        except cgroups.CgroupError as e:
            raise SpawnFailed(f"the size's CPU and memory limits could not be applied: {e}") from e
        enforced = f"cgroup {self._cgroup.kind}" if self._cgroup else "no"
        self.environment = {**self.environment, session_vars.LIMITS_ENFORCED: enforced}
        if self._cgroup is not None and getattr(self, "_venv", None):
            install_oom_notice(self._venv)

    def _remove_cgroup(self):
        cgroup, self._cgroup = self._cgroup, None
        if cgroup is not None:
            cgroup.remove()


def install_oom_notice(venv):
    """Make the kernels of ``venv`` load the out-of-memory notice (its ``etc/ipython``
    kernel config; added to one the environment has, replaced atomically, world-readable)."""
    from oggmhub.session.oom_notice import KERNEL_CONFIG

    folder = os.path.join(venv, "etc", "ipython")
    path = os.path.join(folder, "ipython_kernel_config.py")
    try:
        with open(path) as f:
            have = f.read()
    except FileNotFoundError:
        have = ""
    if KERNEL_CONFIG in have:
        return
    os.makedirs(folder, mode=0o755, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".oggmhub-")
    with os.fdopen(fd, "w") as f:
        f.write(have + ("\n" if have and not have.endswith("\n") else "") + KERNEL_CONFIG)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
