"""Pure pieces of issue 14: bounded quotes and options, cgroup detection and the v2 layout
(this machine has cgroup v1; v2 is checked against a directory laid out as v2 is)."""

import os

from oggmhub.backends.local import cgroups
from oggmhub.limits import MAX_OPTION_CHARS, TRUNCATED, cap_options, quote


def test_quotes_are_short_and_say_how_long_the_value_was():
    assert quote("oggm") == "'oggm'"
    text = quote("x" * 10_000)
    assert text == f"{'x' * 40!r}… (10000 characters)"


def test_options_are_capped_and_small_ones_come_back_equal():
    small = {"profile": "oggm", "size": "small", "datasets": ["oggm-mirror"]}
    assert cap_options(small) == small
    big = cap_options({"profile": "p" * 10**6, "datasets": ["d"] * 1000, "k" * 500: {"nested": "x" * 10**5}})
    assert len(repr(big)) < 5000
    assert big["profile"] == "p" * MAX_OPTION_CHARS + TRUNCATED
    assert big["datasets"][-1] == TRUNCATED and len(big["datasets"]) == 17


def _fake_v2(root, controllers="cpuset cpu io memory pids"):
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "cgroup.controllers"), "w") as f:
        f.write(controllers)
    open(os.path.join(root, "cgroup.subtree_control"), "w").close()
    return str(root)


def test_cgroup_v2_is_detected_and_a_session_gets_its_limits(tmp_path):
    root = _fake_v2(tmp_path / "cg")
    assert cgroups.detect(root) == ("v2", None)
    group = cgroups.session_cgroup("abc-alice", 1.5, 4 * 2**30, root=root, pids_limit=300)
    path = os.path.join(root, "oggmhub", "abc-alice")
    assert open(os.path.join(path, "memory.max")).read() == str(4 * 2**30)
    assert open(os.path.join(path, "cpu.max")).read() == "150000 100000"
    assert open(os.path.join(path, "pids.max")).read() == "300" and group.pids_max() == 300
    assert open(os.path.join(root, "oggmhub", "cgroup.subtree_control")).read() == "+memory +cpu +pids"
    assert group.dirs == {"unified": path}
    # without the pids controller: memory and cpu only, no process limit
    bare = _fake_v2(tmp_path / "bare", "cpu memory")
    group = cgroups.session_cgroup("abc-alice", 1, 2**30, root=bare, pids_limit=300)
    assert open(os.path.join(bare, "oggmhub", "cgroup.subtree_control")).read() == "+memory +cpu"
    assert group.pids_max() is None


def test_no_cgroups_say_why(tmp_path):
    kind, why = cgroups.detect(_fake_v2(tmp_path / "v2", "cpu io"))
    assert kind is None and why == "cgroup v2 without the memory controller"
    kind, why = cgroups.detect(str(tmp_path / "nothing"))
    assert kind is None and why.startswith("no cgroup v2")
    assert cgroups.describe(str(tmp_path / "nothing")).startswith("sizes' CPU and memory limits are NOT enforced")


def test_two_hubs_never_share_a_users_cgroup():
    assert cgroups.session_name("/srv/a", "bob") != cgroups.session_name("/srv/b", "bob")
    assert cgroups.session_name("/srv/a", "bob", "gpu").endswith("-bob--gpu")


def test_importing_the_picker_changes_nothing_and_a_spawner_caps_what_is_stored():
    """No import-time side effect: the option cap is installed by the first spawner made
    (what is stored is capped from then on)."""
    import subprocess
    import sys

    probe = (
        "from jupyterhub import orm\n"
        "from sqlalchemy import event\n"
        "import oggmhub.picker, oggmhub.limits\n"
        "print(oggmhub.limits._installed)\n"
        "oggmhub.picker.CatalogPickerMixin()  # what every oggmhub spawner is\n"
        "print(oggmhub.limits._installed)\n"
        "row = orm.Spawner(name='')\n"
        "row.user_options = {'profile': 'p' * 10**6}\n"
        "print(len(row.user_options['profile']))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert out[:2] == ["False", "True"]
    assert int(out[2]) == MAX_OPTION_CHARS + len(TRUNCATED)
