"""``LocalEnvSpawner``: the local backend's spawner (one machine, no Kubernetes, no Docker).

Same picker, same validation and same messages as the Kubernetes spawner (both use
:class:`~oggmhub.picker.CatalogPickerMixin`); the difference is how a server runs: as a
local process, from a virtualenv built from ``images/<env>/`` the first time that
environment is chosen (progress on the spawn page), with the user's persistent home
under the hub's data directory.

Isolation: when the hub runs as root, each user's server runs as a system account of
their own, their home, scratch folder and mounts theirs alone (:mod:`.run_as`,
:mod:`.system_users`, :mod:`.file_modes`). A hub that is not root runs every server as
its own system user: then it serves one hub user only, unless ``shared_account`` says
that users may read each other's files.
"""

from __future__ import annotations

import asyncio
import functools
import os
import shlex
import secrets

from jupyterhub.spawner import LocalProcessSpawner
from traitlets import Unicode, default

from oggmhub.session import tutorials as session_tutorials
from oggmhub.backends.base import SessionBackend
from oggmhub.backends.session_env import session_environment
from oggmhub.session import env as session_vars
from oggmhub.cohorts import materials as cohort_materials
from oggmhub.backends.local import cgroups, file_modes
from oggmhub.mounts import process as dataset_mounts
from oggmhub.backends.local.dataset_links import link_datasets
from oggmhub.errors import SpawnFailed
from oggmhub.backends.local.lifecycle import ServerLifecycle, settle as _settle
from oggmhub.backends.local import user_files
from oggmhub.backends.local.environments import LocalEnvError, build_local_env
from oggmhub.backends.local.home_quota import HomeQuotas
from oggmhub.backends.local import machine as machine_fit
from oggmhub.backends.local.run_as import SystemAccounts
from oggmhub.backends.local.size_limits import SizeLimits
from oggmhub.picker import CatalogPickerMixin
from oggmhub.usage.accounting import UsageAccounting
from oggmhub.user_folders import folder_name, home_path

# Every process of one server session carries this variable, with a value of its own:
# what double-forks out of the server's process tree (a desktop's message bus and its
# settings daemons) is still found, and ended, when the server stops.
SESSION_MARKER = session_vars.SESSION

# the traits a choice sets; their configured values are the base every choice starts from
_CHOICE_TRAITS = ("environment", "cpu_limit", "cpu_guarantee", "mem_limit", "mem_guarantee")


@functools.lru_cache(maxsize=1)
def _machine():
    return machine_fit.this_machine()


def data_dir_default():
    """``$OGGMHUB_DATA_DIR`` if set, else ``./data``."""
    return os.path.abspath(os.environ.get("OGGMHUB_DATA_DIR") or "data")


class LocalEnvSpawner(UsageAccounting, CatalogPickerMixin, SessionBackend, SystemAccounts, SizeLimits, ServerLifecycle,
                      HomeQuotas, LocalProcessSpawner):
    """Run the chosen environment as a local process with a persistent home."""


    data_dir = Unicode(
        config=True,
        help="""Directory holding homes, built environments and mounts.

        Defaults to $OGGMHUB_DATA_DIR, else ./data. Homes live in <data_dir>/homes.""",
    )

    @default("data_dir")
    def _default_data_dir(self):
        return data_dir_default()

    env_dir = Unicode(
        config=True,
        help="""Where environments built from images/<env>/ are cached.

        Defaults to $OGGMHUB_ENV_CACHE if set, else <data_dir>/envs. An environment is
        rebuilt only when its spec changes, into a new folder, so running servers keep
        theirs.""",
    )

    @default("env_dir")
    def _default_env_dir(self):
        return os.environ.get("OGGMHUB_ENV_CACHE") or os.path.join(self.data_dir, "envs")

    images_dir = Unicode(
        config=True,
        help="""The folder of build contexts, one images/<env>/ per environment.

        Defaults to the images/ folder next to the catalog's folder.""",
    )

    @default("images_dir")
    def _default_images_dir(self):
        return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(self.catalog_path))), "images")

    tutorials_dir = Unicode(
        config=True,
        help="""The folder of tutorials: an environment's are the files named <env>-* in it.

        Merged into the home at every start, in tutorials/<env>/, the way nbgitpuller
        merges (new ones added, unchanged ones updated, the user's edits never
        overwritten), and JupyterLab opens on that folder. Defaults to the notebooks/
        folder beside images_dir; empty: no tutorials.""",
    )

    @default("tutorials_dir")
    def _default_tutorials_dir(self):
        return os.path.join(os.path.dirname(os.path.abspath(self.images_dir)), "notebooks")

    @property
    def home_dir(self):
        """<data_dir>/homes/<safe username>: usernames that escape alike never share one."""
        return home_path(os.path.join(self.data_dir, "homes"), self.user.name)

    @property
    def mount_root(self):
        """Where this user's session mounts its datasets (each at its catalog mount path)."""
        return os.path.join(self.data_dir, "mounts", folder_name(self.user.name))

    @property
    def scratch_dir(self):
        """Disposable per-user space (dataset caches), outside the persistent home."""
        return os.path.join(self.data_dir, "scratch", folder_name(self.user.name))

    @default("notebook_dir")
    def _default_notebook_dir(self):
        # the server's root is the user's home, never a parent of other users' homes
        return self.home_dir

    @default("default_url")
    def _default_default_url(self):
        return "/lab"

    # --- the choice ------------------------------------------------------------------

    @property
    def machine(self):
        """What this machine can honour (:mod:`.machine`), measured once per hub."""
        return _machine()

    def max_gpus(self):
        limit = super().max_gpus()  # the user's cohort's, if any
        return self.machine.gpus if limit is None else min(limit, self.machine.gpus)

    def session_environment(self, choice):
        """Datasets under this user's mount root, with their scratch space and Dask registry."""
        return session_environment(choice, mount_root=self.mount_root, scratch_dir=self.scratch_dir,
                                   dask_backend="local", dask_registry=self.dask_registry,
                                   tmp_dir=self.tmp_dir, tutorials_by_hub=True)  # _merge_tutorials does it

    def apply_choice(self, choice):
        """The session's variables and the size's CPU and memory limits, over the configured base."""
        machine_fit.check_choice(choice, self.machine)  # the API is refused what the picker leaves out
        base = self.base_settings(_CHOICE_TRAITS)
        size = choice.size
        self.environment = {**base["environment"], **self.session_environment(choice)}
        self.cpu_limit, self.cpu_guarantee = size.cpu_limit, size.cpu_guarantee
        self.mem_limit, self.mem_guarantee = size.mem_limit, size.mem_guarantee

    # --- process lifecycle -----------------------------------------------------------

    _progress_queue = None
    _venv = None

    def _report(self, message):
        """Send a line to the spawn page (safe to call from a build thread)."""
        self.log.info("%s: %s", self._log_name, message)
        if self._progress_queue is not None:
            self._loop.call_soon_threadsafe(self._progress_queue.put_nowait, message)

    async def progress(self):
        if self.choice is not None:
            yield {"progress": 1, "message": f"Starting {self.choice.describe()}"}
        queue = self._progress_queue
        percent = 1
        while queue is not None:
            message = await queue.get()
            if message is None:
                break
            # build steps carry where they are (.percent); the bar only moves forward
            percent = max(percent, int(getattr(message, "percent", None) or percent))
            yield {"progress": percent, "message": str(message)}

    async def start(self):  # the choice is applied first (CatalogPickerMixin)
        self._session = secrets.token_hex(8)  # a new marker for every start
        self._loop = asyncio.get_running_loop()
        self._progress_queue = asyncio.Queue()
        try:
            try:
                await self._loop.run_in_executor(None, self.prepare_account)  # refusals come first
                await self._loop.run_in_executor(None, self.prepare_storage)  # free space, home quota
                venv = self._venv = str(await self._loop.run_in_executor(None, self._build_env))
                await self._loop.run_in_executor(None, self._pull_materials)
                await self._loop.run_in_executor(None, self._merge_tutorials)
            except LocalEnvError as e:
                raise SpawnFailed(str(e)) from e
            self.cmd = self._start_script() + [os.path.join(venv, "bin", "jupyterhub-singleuser")]
            self._limit_resources()
            # mounts come up while the server starts (each is a process of its own, ~1 s);
            # start() returns, and the hub routes to the server, only once both are ready
            # never awaited bare: a cancelled start (a stop while starting) must not cancel
            # the wait for the mount thread, which goes on regardless; see _settle
            mounting = self._mounting = self._loop.run_in_executor(None, self._mount_datasets)
            self._report("Starting the Jupyter server")
            try:
                ip, port = await super().start()
                self._record_process()
                await asyncio.shield(mounting)
            except asyncio.CancelledError:
                # a stop during the start: end the start now (JupyterHub gives it 1 s), and
                # let the stop that follows wait for the mount thread and undo everything
                raise
            except BaseException as e:
                await _settle(mounting)  # the mount is done (or failed) before it is undone
                if self.pid:
                    await self.stop(now=True)  # also unmounts
                else:
                    self._unmount_datasets()
                if isinstance(e, dataset_mounts.MountError):
                    raise SpawnFailed(str(e)) from e
                raise
            return ip, port
        finally:
            self._progress_queue.put_nowait(None)

    def _build_env(self):
        name = self.choice.environment.name
        return build_local_env(
            name, self.catalog, self.env_dir, progress=self._report,
            context=os.path.join(self.images_dir, name), shared=self.account is not None,
        )

    def _pull_materials(self):
        """Sync the cohort's materials into the home (nbgitpuller from the environment if it has it)."""
        if self.rescue:  # a full home: nothing more is written into it
            return
        for item in self.cohort_materials:
            cohort_materials.pull(item, self.home_dir, search_path=os.path.join(self._venv, "bin"),
                                  progress=self._report, run_as=self.account)

    _tutorials_url = None  # the default URL this spawner set for the last start's tutorials

    def _merge_tutorials(self):
        """The environment's tutorials into ~/tutorials/<env>/ (oggmhub.session.tutorials);
        JupyterLab opens on them unless a default URL was configured or the user's cohort
        has materials (then it opens on the home, where both are)."""
        env = self.choice.environment.name
        ours = self.default_url in ("/lab", self._tutorials_url)
        if ours and self._tutorials_url:
            self.default_url = "/lab"
        if self.rescue or not self.tutorials_dir or not session_tutorials.tutorial_files(self.tutorials_dir, env):
            return
        dest = os.path.join(self.home_dir, "tutorials", env)
        try:  # as the user's account where there is one: root never writes through their links
            summary = user_files.merge_tutorials(self.tutorials_dir, dest, env, self.account, self._venv)
        except user_files.UserFilesError as e:
            self._report(f"Tutorials not merged into ~/tutorials/{env}: {e}")
            return
        self._report(f"Tutorials in ~/tutorials/{env}: {summary}")
        if ours and not self.cohort_materials:
            self.default_url = self._tutorials_url = f"/lab/tree/tutorials/{env}"

    def budget_notice(self, text):
        """A used-up budget's warning for this server's kernels (UsageAccounting's hook)."""
        user_files.write_budget_notice(self.scratch_dir, self.name, text)

    _mounts = ()
    _mounting = None  # the future of the mount thread of the current start

    def _mount_datasets(self):
        """Mount the session's datasets read-only; a failure names the dataset."""
        dataset_mounts.cleanup_stale_mounts(self.mount_root)  # left by a crash, if any
        datasets = self.choice.datasets
        user_files.write_unavailable(self.scratch_dir, {})  # a previous session's notice
        self._link_datasets({})  # links of an earlier session's datasets go
        if not datasets:
            return
        ok, why = dataset_mounts.fuse_available()
        if not ok:
            self._report(f"Datasets are not mounted ({why}); oggmhub.session.datasets still opens them")
            return
        for dataset in datasets:
            self._report(f"Mounting dataset {dataset.name} ({dataset.source}) read-only")
        missing = {}

        def unavailable(dataset, error):  # catalog: required: false
            missing[dataset.name] = str(error)
            self._report(f"{error}; starting without it")

        owner = (self.account.uid, self.account.gid) if self.account is not None else None
        self._mounts = dataset_mounts.mount_datasets(datasets, self.mount_root, self.mount_options,
                                                     unavailable=unavailable, owner=owner)
        user_files.write_unavailable(self.scratch_dir, missing)  # read by datasets.unavailable()
        # browsable from JupyterLab at datasets/<name> (where launch links open)
        self._link_datasets({m.dataset: m.mountpoint for m in self._mounts})

    def _link_datasets(self, targets):
        owner = (self.account.uid, self.account.gid) if self.account is not None else None
        try:  # descriptor-relative, never following a link of the user's (dataset_links)
            link_datasets(self.home_dir, targets, owner=owner)
        except OSError as e:
            self._report(f"Datasets are not linked into ~/datasets: {e}")

    def _unmount_datasets(self):
        mounts, self._mounts = self._mounts, ()
        try:
            dataset_mounts.unmount_datasets(mounts)
        finally:
            dataset_mounts.cleanup_stale_mounts(self.mount_root)

    def _start_script(self):
        """The context's repo2docker ``start`` script, which wraps every session's command
        (a copy beside the environment where users have accounts: the build contexts may
        lie where their accounts cannot reach, e.g. a clone under /root)."""
        start = os.path.join(self.images_dir, self.choice.environment.name, "start")
        if not os.access(start, os.X_OK):
            return []
        return [file_modes.publish_start_script(start, self._venv) if self.account is not None else start]

    def get_env(self):
        env = super().get_env()
        venv = self._venv
        # the environment's tools first, for terminals and `pip` as much as for kernels
        env.update(
            VIRTUAL_ENV=venv,
            NB_PYTHON_PREFIX=venv,
            PATH=os.pathsep.join([os.path.join(venv, "bin"), env.get("PATH", os.defpath)]),
        )
        if self._session:
            env[SESSION_MARKER] = self._session
        env.update(self.storage_environment())
        return env

    def get_args(self):
        args = super().get_args()
        if self.still_root():
            args.append("--allow-root")  # the hub runs as root, and so does this server
        return args

    def make_preexec_fn(self, name):
        home = self.home_dir
        cgroup = self._cgroup
        drop = self.drop_to_account

        def preexec():  # in the child: into the size's cgroup while root, then the user's account
            if cgroup is not None:
                cgroup.join()
            drop()  # groups, gid, uid: from here on the user cannot leave the cgroup
            os.chdir(home)

        return preexec

    # --- the size's CPU and memory limits (cgroups; see oggmhub.backends.local.cgroups) ---

    UNENFORCED = " (limits not enforced on this machine)"

    def picker_profile_list(self, spawner=None):
        # what this machine cannot honour is left out (machine.py), then unenforced limits are named
        profiles = machine_fit.fit_profiles(super().picker_profile_list(spawner), self.catalog, self.machine)
        if cgroups.detect()[0] is None:  # say so where the user picks a size
            for profile in profiles:
                for choice in profile["profile_options"]["size"]["choices"].values():
                    choice["display_name"] += self.UNENFORCED
        return profiles

    def user_env(self, env):
        return self.account_env(env)

    def __repr__(self):
        return f"<LocalEnvSpawner {self._log_name} cmd={shlex.join(self.cmd or [])}>"

