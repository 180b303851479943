"""The size's CPU and memory limits of a local server: its cgroup (:mod:`.cgroups`).

A mixin of :class:`~.spawner.LocalEnvSpawner`: each start gets a cgroup of its own, which
the server process joins in its ``preexec_fn`` while still root (before it becomes the
user's system account, see :mod:`.run_as`), and which goes when the server stops.
"""

from __future__ import annotations

from kubespawner.slugs import safe_slug

from oggmhub.backends.local import cgroups
from oggmhub.errors import SpawnFailed
from oggmhub.session import env as session_vars


class SizeLimits:
    """Where this start's cgroup is made and removed."""

    _cgroup = None

    def _limit_resources(self):
        """Put this start's server into a cgroup with its size's limits, where the machine has cgroups."""
        self._remove_cgroup()
        server = safe_slug(self.name) if self.name else ""
        name = cgroups.session_name(self.data_dir, safe_slug(self.user.name), server)
        try:
            self._cgroup = cgroups.session_cgroup(name, self.cpu_limit, self.mem_limit)
        except cgroups.CgroupError as e:
            raise SpawnFailed(f"the size's CPU and memory limits could not be applied: {e}") from e
        enforced = f"cgroup {self._cgroup.kind}" if self._cgroup else "no"
        self.environment = {**self.environment, session_vars.LIMITS_ENFORCED: enforced}

    def _remove_cgroup(self):
        cgroup, self._cgroup = self._cgroup, None
        if cgroup is not None:
            cgroup.remove()

