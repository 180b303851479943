"""Which unix account a local server runs as: the spawner's side of :mod:`.system_users`.

Three ways, decided per hub (:func:`run_mode`):

- ``"accounts"`` (the default when the hub runs as root): each hub user's server runs as
  their own system account (:mod:`.system_users`), their home, scratch folder, private
  ``TMPDIR`` and mounts theirs alone (mode 0700), the hub's database and cookie secret root's alone
  (:mod:`.file_modes`). The server joins its root-owned cgroup while still root, then
  drops its groups, group and user, in that order, so it cannot lift its own limits.
- ``"shared"`` (``c.LocalEnvSpawner.shared_account = True``, ``--shared-account``): every
  server runs as the hub's own system user, knowingly; users can read each other's files,
  and the welcome page says so.
- ``"single"`` (a hub that is not root, without ``shared_account``): the same, but only
  one hub user may have a server (and so a home) here: a second user's start is refused
  naming the option, rather than silently sharing one account between people.
"""

from __future__ import annotations

import os

from traitlets import Bool, Unicode, default, validate
from traitlets.config import LoggingConfigurable

from oggmhub.backends.local import file_modes, system_users, user_files
from oggmhub.errors import SpawnFailed

SHARED_NOTE = ("Every user's server runs as the same system account on this machine: "
               "users can read each other's files.")


def run_mode(euid, system_accounts, shared_account):
    """``"accounts"``, ``"shared"`` or ``"single"`` (see the module's docstring)."""
    if system_accounts:
        if euid != 0:
            raise SpawnFailed("c.LocalEnvSpawner.system_accounts = True needs the hub to run as root "
                              "(it creates a system account per user); run it as root, or set "
                              "c.LocalEnvSpawner.shared_account = True (--shared-account) to share one account")
        return "accounts"
    return "shared" if shared_account else "single"


def single_account_problem(homes_dir, own_home, hub_user):
    """Why ``hub_user`` may not start on a non-root hub without ``shared_account`` (another
    hub user already has a home here), or None."""
    try:
        others = sorted(e.name for e in os.scandir(homes_dir)
                        if e.is_dir() and os.path.abspath(e.path) != os.path.abspath(own_home))
    except FileNotFoundError:
        return None
    if not others:
        return None
    return (f"this hub does not run as root, so every server would run as its one system account "
            f"({_me()}) and {hub_user!r} could read the files of {', '.join(repr(o) for o in others[:3])} "
            f"(homes in {homes_dir}). Run the hub as root (each user then gets a system account of their own), "
            f"or start it with --shared-account (c.LocalEnvSpawner.shared_account = True) to share one "
            f"account knowingly")


def _me():
    import pwd

    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid {os.geteuid()}"


class SystemAccounts(LoggingConfigurable):
    """The spawner's options and steps for running servers as system accounts (a mixin of
    :class:`~.spawner.LocalEnvSpawner`, which provides the folders it names)."""

    system_accounts = Bool(
        config=True,
        help="""Run each hub user's server as a system account of their own (created on their
        first start; see oggmhub.backends.local.system_users), with their home, scratch folder
        and dataset mounts readable by them alone and the hub's database unreadable by any.
        Needs the hub to run as root. Default: True when the hub runs as root and
        shared_account is False.""",
    )

    @default("system_accounts")
    def _default_system_accounts(self):
        return os.geteuid() == 0 and not self.shared_account

    shared_account = Bool(
        False, config=True,
        help="""Run every user's server as the hub's own system user, knowingly: users can read
        each other's files (the welcome page says so). Without it, a hub that is not root
        serves one hub user only, and one that is root gives each user an account.
        `oggmhub hub --shared-account` sets it.""",
    )

    system_account_prefix = Unicode(
        system_users.DEFAULT_PREFIX, config=True,
        help="""The start of every user's system account name: <prefix><slug of the hub
        username> (at most 32 characters; a short hash of the username follows the slug where
        the username had to be changed or shortened). 1-16 lowercase letters, digits, '-' or
        '_'.""",
    )

    @validate("system_account_prefix")
    def _check_prefix(self, proposal):
        return system_users.check_prefix(proposal["value"])

    account = None  # this start's system_users.Account, in accounts mode
    _account_groups = ()

    @property
    def run_mode(self):
        return run_mode(os.geteuid(), self.system_accounts, self.shared_account)

    def prepare_account(self):
        """Before a start (in a thread): the account and the user's folders, or SpawnFailed."""
        mode = self.run_mode
        self.account = None
        if mode == "single":
            problem = single_account_problem(os.path.join(self.data_dir, "homes"), self.home_dir, self.user.name)
            if problem:
                raise SpawnFailed(problem)
        if mode != "accounts":
            for path in (self.home_dir, self.scratch_dir):
                os.makedirs(path, mode=0o700, exist_ok=True)
            self._make_tmp(None)
            return None
        # the folders above the data directory and the environments' must let accounts through
        # (those two themselves are set here and by the build); the build contexts need not be
        # reachable: the start script is copied beside the environment
        inside = [self.env_dir] if os.path.dirname(os.path.abspath(self.env_dir)) == os.path.abspath(self.data_dir) else []
        for path, what, option in ((self.data_dir, "the data directory", "--data-dir"),
                                   (self.env_dir, "the environments' folder", "c.LocalEnvSpawner.env_dir")):
            problem = file_modes.describe_blocked(os.path.dirname(os.path.abspath(path)), f"{what} {path}: its folder",
                                                  option)
            if problem:
                raise SpawnFailed(problem)
        file_modes.secure_data_dir(self.data_dir, keep_open=inside)
        try:
            account = system_users.ensure(self.user.name, system_users.hub_id(self.data_dir), self.home_dir,
                                          self.system_account_prefix)
        except system_users.SystemAccountError as e:
            raise SpawnFailed(str(e)) from e
        try:
            for path in (self.home_dir, self.scratch_dir):
                file_modes.private_dir(path, account)
        except file_modes.FolderTaken as e:
            self.log.warning("Start of %s refused: %s", self.user.name, e)
            raise SpawnFailed(str(e)) from e
        file_modes.hub_owned_dir(self.mount_root, account)
        self._make_tmp((account.uid, account.gid))
        self.account, self._account_groups = account, account.groups()
        return account

    @property
    def tmp_dir(self):
        """This server's ``TMPDIR``: ``<scratch>/tmp/<server name or default>``."""
        return os.path.join(self.scratch_dir, user_files.TMP_FOLDER, self.name or "default")

    def _make_tmp(self, owner):
        try:
            user_files.private_tmp(self.scratch_dir, os.path.basename(self.tmp_dir), owner)
        except user_files.UserFilesError as e:
            raise SpawnFailed(str(e)) from e

    def hand_over(self, path):
        """Give what the hub (root) just wrote into the user's folders to their account."""
        if self.account is not None and os.path.lexists(path):
            file_modes.give(path, self.account)

    def drop_to_account(self):
        """In the child, after joining the cgroup: become the user's account (if any)."""
        if self.account is not None:
            system_users.drop_privileges(self.account, list(self._account_groups))

    def account_env(self, env):
        """HOME, USER and LOGNAME of the account the server runs as."""
        name = self.account.name if self.account is not None else self.user.name
        env.update(USER=name, LOGNAME=name, HOME=self.home_dir, SHELL="/bin/bash")
        return env

    def still_root(self):
        """Whether the server process will run as root (then it needs --allow-root)."""
        return os.geteuid() == 0 and self.account is None

    def describe_run_mode(self):
        mode = self.run_mode
        if mode == "accounts":
            return f"a system account per user ({self.system_account_prefix}<username>)"
        return f"the hub's own system account ({_me()}), " + ("shared by every user" if mode == "shared" else "one hub user only")
