"""System accounts per hub user (oggmhub.backends.local.system_users, run_as, file_modes):
names, the GECOS record, refusal to reuse an account for another hub user, and the
spawner options that decide who servers run as. Real accounts (useradd, as root) with a
distinctive prefix per run, removed afterwards."""

import os
import pwd
import stat

import pytest

from oggmhub.backends.local import file_modes, run_as, system_users
from oggmhub.errors import SpawnFailed
from support.local_hub import account_prefix, accounts_folder, remove_accounts

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="creating accounts needs root")


@pytest.fixture
def prefix():
    p = account_prefix()
    yield p
    remove_accounts(p)
    assert not system_users.accounts_with_prefix(p)


# --- names ------------------------------------------------------------------------------

def test_a_plain_username_is_kept_and_names_are_deterministic():
    assert system_users.account_name("ada") == "oggm-ada"
    assert system_users.account_name("ada", "lab_") == "lab_ada"
    assert system_users.account_name("Ada.L") == system_users.account_name("Ada.L")


@pytest.mark.parametrize("names", [
    ("Ada", "ada"), ("ada.l", "ada-l", "ada_l", "Ada.L", "ada l"),
    ("x" * 40, "x" * 41, "x" * 40 + "!"), ("", "user", "ÿ"),
    ("ada-l_8debcb8d", "ada.l"),  # a username shaped like another's hashed name
])
def test_names_that_slug_alike_get_different_accounts(names):
    accounts = [system_users.account_name(n) for n in names]
    assert len(set(accounts)) == len(names), dict(zip(names, accounts))
    for account in accounts:
        assert len(account) <= 32 and account.startswith("oggm-")
        assert all(c.isascii() and (c.islower() or c.isdigit() or c in "-_") for c in account), account


def test_a_long_username_is_cut_to_32_characters_with_a_hash():
    name = system_users.account_name("glaciologist-" * 5)
    assert len(name) == 32 and name.startswith("oggm-glaciologist-glaci") and "_" in name


@pytest.mark.parametrize("bad", ["", "Oggm-", "9x-", "a" * 17, "oggm:", "a b"])
def test_a_bad_prefix_is_refused_naming_what_is_allowed(bad):
    with pytest.raises(ValueError, match="system_account_prefix .* lowercase letters"):
        system_users.account_name("ada", bad)


# --- real accounts ----------------------------------------------------------------------

@needs_root
def test_an_account_is_created_once_with_its_gecos_record(prefix, tmp_path):
    home = tmp_path / "homes" / "ada"
    assert system_users.lookup("ada", "hub1", prefix) is None
    account = system_users.ensure("ada", "hub1", str(home), prefix)
    entry = pwd.getpwnam(f"{prefix}ada")
    assert (account.uid, account.gid, account.home) == (entry.pw_uid, entry.pw_gid, str(home))
    assert entry.pw_gecos == "oggmhub hub=hub1 user=ada" == account.gecos
    assert entry.pw_shell in ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false")
    assert entry.pw_uid < 1000 and entry.pw_uid != 0  # a system account
    assert not home.exists()  # --no-create-home: the spawner makes it
    assert system_users.ensure("ada", "hub1", str(home), prefix) == account  # found, not made again
    assert system_users.lookup("ada", "hub1", prefix) == account


@needs_root
def test_an_account_of_another_hub_user_or_hub_is_never_reused(prefix, tmp_path):
    system_users.ensure("ada", "hub1", str(tmp_path / "ada"), prefix)
    with pytest.raises(system_users.SystemAccountError, match=r"records 'oggmhub hub=hub1 user=ada'.*never reused"):
        system_users.lookup("ada", "hub2", prefix)  # the same name on another hub
    # an account of that name made by someone else (no oggmhub record)
    os.system(f"useradd --system --no-create-home {prefix}eve")
    with pytest.raises(system_users.SystemAccountError, match=rf"'{prefix}eve' .* records 'nothing'"):
        system_users.ensure("eve", "hub1", str(tmp_path / "eve"), prefix)
    assert pwd.getpwnam(f"{prefix}eve").pw_gecos == ""  # left as it was


@needs_root
def test_a_username_with_odd_characters_is_recorded_exactly(prefix, tmp_path):
    account = system_users.ensure("Ada:L,x", "hub1", str(tmp_path / "a"), prefix)
    assert account.gecos == "oggmhub hub=hub1 user=Ada%3AL%2Cx"
    assert system_users.lookup("ada-l-x", "hub1", prefix) is None  # slugs alike, another account


# --- folders and modes ------------------------------------------------------------------

@needs_root
def test_private_folders_are_the_accounts_and_hub_files_roots(prefix, tmp_path):
    data = tmp_path / "data"
    (data / "homes" / "ada" / "old").mkdir(parents=True)  # a home from shared mode, root's
    (data / "jupyterhub.sqlite").write_text("")
    os.chmod(data / "jupyterhub.sqlite", 0o644)
    (data / "exports").mkdir()
    (data / "envs").mkdir()
    account = system_users.ensure("ada", "hub1", str(data / "homes" / "ada"), prefix)
    file_modes.secure_data_dir(data, keep_open=[data / "envs"])
    file_modes.private_dir(data / "homes" / "ada", account)
    modes = {p: stat.S_IMODE(os.stat(data / p).st_mode) for p in ("", "homes", "mounts", "scratch", "exports", "envs",
                                                                  "jupyterhub.sqlite", "homes/ada")}
    assert modes == {"": 0o711, "homes": 0o711, "mounts": 0o711, "scratch": 0o711, "exports": 0o700,
                     "envs": 0o755, "jupyterhub.sqlite": 0o600, "homes/ada": 0o700}
    assert os.stat(data / "homes" / "ada" / "old").st_uid == account.uid  # handed over with the home
    assert os.stat(data / "jupyterhub.sqlite").st_uid == 0


def test_a_folder_others_cannot_traverse_is_named():
    with accounts_folder() as top:
        closed = os.path.join(top, "closed")
        os.makedirs(os.path.join(closed, "data"))
        os.chmod(closed, 0o700)
        assert file_modes.blocked_for_others(os.path.join(closed, "data")) == closed
        problem = file_modes.describe_blocked(os.path.join(closed, "data"), "--data-dir", "--data-dir DIR")
        assert f"{closed} is mode 0700" in problem and "--data-dir DIR" in problem
        os.chmod(closed, 0o711)
        assert file_modes.blocked_for_others(os.path.join(closed, "data")) is None
        assert file_modes.blocked_for_others(os.path.join(closed, "not-yet")) is None  # made by the hub
    assert file_modes.blocked_for_others("/usr/bin/python3") is None
    assert file_modes.blocked_for_others("/root/.pyenv") == "/root"


# --- who servers run as: the options -------------------------------------------------------

def test_run_mode_follows_the_options():
    assert run_as.run_mode(0, True, False) == "accounts"
    assert run_as.run_mode(0, False, True) == "shared"
    assert run_as.run_mode(1000, False, True) == "shared"
    assert run_as.run_mode(1000, False, False) == "single"
    with pytest.raises(SpawnFailed, match="system_accounts = True needs the hub to run as root.*shared_account"):
        run_as.run_mode(1000, True, False)


def test_the_options_defaults_and_effects(local_spawner):
    root = os.geteuid() == 0
    spawner = local_spawner()
    assert spawner.system_accounts is root and spawner.shared_account is False
    assert spawner.run_mode == ("accounts" if root else "single")
    shared = local_spawner(shared_account=True)
    assert shared.system_accounts is False and shared.run_mode == "shared"
    assert "shared by every user" in shared.describe_run_mode()
    lab = local_spawner(system_account_prefix="lab-")
    assert lab.system_account_prefix == "lab-"
    if root:
        assert lab.describe_run_mode() == "a system account per user (lab-<username>)"
    with pytest.raises(ValueError, match="system_account_prefix 'Lab' is not allowed"):
        local_spawner(system_account_prefix="Lab")


def test_shared_mode_runs_servers_as_the_hub_and_says_allow_root(local_spawner):
    spawner = local_spawner(shared_account=True)
    spawner.prepare_account()
    assert spawner.account is None and os.path.isdir(spawner.home_dir)
    env = spawner.account_env({})
    assert env["USER"] == "ada" and env["HOME"] == spawner.home_dir
    assert spawner.still_root() is (os.geteuid() == 0)


def test_single_mode_refuses_a_second_users_server_naming_the_option(tmp_path):
    homes = tmp_path / "homes"
    (homes / "ada").mkdir(parents=True)
    assert run_as.single_account_problem(str(homes), str(homes / "ada"), "ada") is None
    problem = run_as.single_account_problem(str(homes), str(homes / "bob"), "bob")
    assert "'bob' could read the files of 'ada'" in problem and "--shared-account" in problem
    assert "c.LocalEnvSpawner.shared_account = True" in problem


@needs_root
def test_accounts_mode_prepares_the_account_and_its_folders(local_spawner, prefix):
    with accounts_folder() as folder:
        _prepare(local_spawner, prefix, os.path.join(folder, "data"))


def _prepare(local_spawner, prefix, data):
    os.makedirs(os.path.join(data, "envs"), mode=0o700)
    spawner = local_spawner(system_account_prefix=prefix, data_dir=data, env_dir=os.path.join(data, "envs"))
    account = spawner.prepare_account()
    assert account.name == f"{prefix}ada" and spawner.account == account
    for path in (spawner.home_dir, spawner.scratch_dir, spawner.tmp_dir):
        st = os.stat(path)
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (account.uid, 0o700), path
    # the mount root: root makes mount points in it, so it is root's (the user may enter, not write)
    st = os.stat(spawner.mount_root)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, account.gid, 0o750)
    env = spawner.account_env({})
    assert (env["USER"], env["LOGNAME"], env["HOME"]) == (account.name, account.name, spawner.home_dir)
    assert spawner.still_root() is False  # no --allow-root
    assert stat.S_IMODE(os.stat(data).st_mode) == 0o711
    assert stat.S_IMODE(os.stat(os.path.join(data, "envs")).st_mode) == 0o755  # the environments: everyone's


# --- T20: a home is never taken over ------------------------------------------------------

@needs_root
def test_a_folder_of_another_account_is_never_handed_over(prefix, tmp_path):
    """T20 (account side): an account set up on a folder that is already another account's
    home (as tool tasks did with ``homes/<raw username>``, which was the home of another
    user) refuses, and the victim's home keeps its owner, mode and files."""
    from oggmhub.user_folders import folder_name, home_path

    homes = tmp_path / "homes"
    homes.mkdir()
    victim = system_users.ensure("adv.vic", "hub1", home_path(str(homes), "adv.vic"), prefix)
    home = home_path(str(homes), "adv.vic")
    file_modes.private_dir(home, victim)
    with open(os.path.join(home, "thesis.txt"), "w") as f:
        f.write("mine")
    os.chown(os.path.join(home, "thesis.txt"), victim.uid, victim.gid)
    lookalike = folder_name("adv.vic")  # the attacker signs up as the victim's folder name
    assert home_path(str(homes), lookalike) != home  # one home path everywhere: its own folder ...
    attacker = system_users.ensure(lookalike, "hub1", home, prefix)  # ... but say a path still led here
    assert attacker.uid != victim.uid
    before = {p: (os.stat(p).st_uid, stat.S_IMODE(os.stat(p).st_mode)) for p in (home, os.path.join(home, "thesis.txt"))}
    with pytest.raises(file_modes.FolderTaken, match=rf"{home} already exists and belongs to the account "
                                                     rf"'{victim.name}' .*never hands one account's folder to another"):
        file_modes.private_dir(home, attacker)
    after = {p: (os.stat(p).st_uid, stat.S_IMODE(os.stat(p).st_mode)) for p in before}
    assert after == before and sorted(os.listdir(home)) == ["thesis.txt"]
    # a folder whose owner no longer exists is not adopted either
    orphan = tmp_path / "orphan"
    orphan.mkdir()
    os.chown(orphan, 54321, 54321)
    with pytest.raises(file_modes.FolderTaken, match="uid 54321, which no account has now"):
        file_modes.private_dir(str(orphan), attacker)
    assert os.stat(orphan).st_uid == 54321


@needs_root
def test_a_start_over_another_accounts_home_fails_naming_it(local_spawner, prefix):
    with accounts_folder() as folder:
        data = os.path.join(folder, "data")
        os.makedirs(os.path.join(data, "envs"), mode=0o700)
        spawner = local_spawner(system_account_prefix=prefix, data_dir=data, env_dir=os.path.join(data, "envs"))
        other = system_users.ensure("someone-else", "hub1", os.path.join(folder, "x"), prefix)
        os.makedirs(spawner.home_dir)
        os.chown(spawner.home_dir, other.uid, other.gid)
        with pytest.raises(SpawnFailed, match=f"belongs to the account '{other.name}'"):
            spawner.prepare_account()
        assert os.stat(spawner.home_dir).st_uid == other.uid
