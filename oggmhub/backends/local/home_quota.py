"""The local spawner's side of storage: the hub's free-space rule, the user's home quota
(a loop-mounted image, :mod:`.home_images`) and the rescue start.

A mixin of :class:`~.spawner.LocalEnvSpawner`; :meth:`HomeQuotas.prepare_storage` runs
in a thread at each start, after the account is made and before anything is written.
"""

from __future__ import annotations

import os

from jupyterhub.traitlets import ByteSpecification
from traitlets.config import LoggingConfigurable

from oggmhub.backends.local import home_images
from oggmhub.cohorts import model as cohorts
from oggmhub.errors import SpawnFailed
from oggmhub.session import env as session_env
from oggmhub.storage import scratch, space, usage
from oggmhub.storage.quotas import human, user_quota
from oggmhub.user_folders import folder_name

RESCUE_VARIABLE = session_env.HOME_RESCUE  # "1" in a rescue start's session
SCRATCH_TTL_VARIABLE = session_env.SCRATCH_TTL_DAYS  # days a scratch file lives unchanged


class HomeQuotas(LoggingConfigurable):
    """Home quotas from the catalog's ``storage`` section, and the space kept for the hub."""

    min_free_space = ByteSpecification(
        2 * 1024**3, config=True,
        help="""Free space kept for the hub itself (its database, cookie secret, logs) on the
        disk holding the data directory, e.g. '2G'. A start is refused, in one sentence naming
        the reason, when that disk's free space less what mounted home images may still grow
        would fall below it. 0: no check.""",
    )

    home_state = None  # the last start's home_images.HomeState (None: no quota)
    home_largest = ()  # a rescue start's largest folders: [(name, bytes)]

    def user_home_quota(self):
        """This user's :class:`~oggmhub.storage.quotas.HomeQuota`, or None."""
        return user_quota(self.catalog, self.user, [c.name for c in cohorts.user_cohorts(self.user)])

    def check_free_space(self, growth=0):
        """SpawnFailed if the hub's disk is too full for a new start (``min_free_space``).

        Home images are sparse and their quotas may add up to more than the disk (as
        quotas on any shared disk do): what they may still grow is logged for the admin,
        not held against a start, or a hub with a few users would refuse everyone."""
        if not self.min_free_space:
            return
        free = space.free_bytes(self.data_dir)
        refusal = space.start_refusal(free, growth, self.min_free_space, self.data_dir)
        if refusal:
            self.log.error("Start of %s refused: %s", self.user.name, refusal)
            raise SpawnFailed(refusal)
        may_grow = home_images.may_grow(self.data_dir) if os.geteuid() == 0 else 0
        if may_grow > free - self.min_free_space:
            self.log.warning("Home quotas are overcommitted: mounted homes may still grow by %s, the disk holding "
                             "%s has %s free and %s is kept for the hub; starts are refused once less than that "
                             "is free", human(may_grow), self.data_dir, human(free), human(self.min_free_space))

    def prepare_storage(self):
        """In a thread, after ``prepare_account``: the free-space rule, then the home quota."""
        self.home_state, self.home_largest = None, ()
        quota = self.user_home_quota()
        self.check_free_space()
        if quota is None:
            return
        if self.account is None:
            self.log.warning("%s: home quota %s not enforced: it needs a hub running as root with a system "
                             "account per user", self._log_name, human(quota.bytes))
            return
        try:
            state = home_images.prepare(self.data_dir, folder_name(self.user.name), self.home_dir, quota.bytes,
                                        (self.account.uid, self.account.gid), self.log)
        except home_images.HomeImageError as e:
            raise SpawnFailed(str(e)) from e
        self.home_state = state
        self._report(f"{home_images.describe(state)} ({quota.source})")
        if state.rescue:
            self.home_largest = usage.scan(self.home_dir).largest
            biggest = ", ".join(f"{name} ({human(size)})" for name, size in self.home_largest[:5])
            self._report(f"Rescue start: your home is full ({human(state.used)} of {human(state.quota)}). "
                         f"Largest: {biggest or 'nothing'}. Delete or move files to start normally next time.")

    @property
    def rescue(self):
        return self.home_state is not None and self.home_state.rescue

    def storage_environment(self):
        """The session's variables for storage: a rescue start says so, and Jupyter's
        runtime files go to the private TMPDIR (a full home must not stop the server)."""
        env = {"JUPYTER_RUNTIME_DIR": os.path.join(self.tmp_dir, "jupyter-runtime")} if self.home_state else {}
        ttl = scratch.ttl_days(self.catalog.storage)
        if ttl:
            env[SCRATCH_TTL_VARIABLE] = str(ttl)
        if self.rescue:
            env[RESCUE_VARIABLE] = "1"
        return env

    def home_storage(self):
        """What the hub's home page shows: used, quota, level, a rescue start's largest
        folders; None where the user has no quota or their home is not mounted from its image."""
        quota = self.user_home_quota()
        if quota is None or home_images.mount_source(self.home_dir) is None:
            return None
        try:
            st = os.statvfs(self.home_dir)
        except OSError:
            return None
        used = (st.f_blocks - st.f_bfree) * st.f_frsize
        return {"used": human(used), "quota": human(quota.bytes), "percent": round(100 * used / quota.bytes),
                "level": usage.level(used, quota.bytes), "rescue": self.rescue,
                "scratch_ttl_days": scratch.ttl_days(self.catalog.storage),
                "largest": [(name, human(size)) for name, size in self.home_largest]}
