"""``start-local-hub.sh`` before it installs anything: run from a fresh clone with the
distribution's own python3 first on PATH, ``--help`` answers at once and bad options are
refused in one line, exit 2, with no virtualenv, data directory or download left behind."""

import os
import socket
import subprocess
import time

import pytest

from support.local_hub import REPO, free_port

DEBIAN_PATH = "/usr/bin:/bin"


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """A fresh clone of this checkout's committed state (what a newcomer gets)."""
    dest = tmp_path_factory.mktemp("clone") / "oggmhub"
    subprocess.run(["git", "clone", "-q", REPO, str(dest)], check=True)
    return dest


def script(clone, *args):
    env = {"PATH": DEBIAN_PATH, "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8"}
    start = time.monotonic()
    result = subprocess.run(["./start-local-hub.sh", *args], cwd=clone, env=env, capture_output=True, text=True, timeout=60)
    return result, time.monotonic() - start


def assert_nothing_created(clone):
    assert not (clone / ".venv").exists(), "a refused start created the virtualenv"
    assert not (clone / "data").exists(), "a refused start created the data directory"
    assert not (clone / "node_modules").exists(), "a refused start ran npm"


def test_help_answers_at_once_before_any_install(clone):
    result, took = script(clone, "--help")
    assert result.returncode == 0, result.stderr
    assert "--data-dir" in result.stdout and "--port" in result.stdout and "--stop-servers-on-exit" in result.stdout
    assert "--shared-account" in result.stdout
    assert took < 2, f"--help took {took:.1f} s"
    assert_nothing_created(clone)


def one_line_refusal(clone, *args):
    result, _ = script(clone, *args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert_nothing_created(clone)
    return lines[0]


def test_unknown_option_is_one_line(clone):
    line = one_line_refusal(clone, "--prot", "8000")
    assert "unrecognized arguments: --prot" in line and "--help" in line


def test_port_in_use_is_named(clone):
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        line = one_line_refusal(clone, "--port", str(port), "--data-dir", str(clone / "data"))
    assert f"--port {port}" in line and "already in use" in line


def test_data_dir_not_writable_is_named(clone, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    line = one_line_refusal(clone, "--port", str(free_port()), "--data-dir", str(blocker / "data"))
    assert "--data-dir" in line and "not writable" in line
    line = one_line_refusal(clone, "--port", str(free_port()), "--data-dir", str(blocker))
    assert "is not a folder" in line


def test_relative_data_dir_is_the_callers(tmp_path):
    """``oggmhub hub --data-dir ./data`` keeps everything in ./data of where it was run (the
    hub changes into the data directory: a path resolved after that would nest data/data)."""
    from types import SimpleNamespace

    from oggmhub.backends.local import hub as local_hub

    seen = {}
    real = (os.chdir, os.execve)
    os.chdir, os.execve = (lambda path: seen.setdefault("cwd", path)), (lambda exe, cmd, env: seen.setdefault("env", env))
    cwd = os.getcwd()
    try:
        real[0](tmp_path)
        args = SimpleNamespace(ip="127.0.0.1", port=free_port(), hub_port=free_port(2), data_dir="./data",
                               catalog=os.path.join(REPO, "hub_config", "catalog.yaml"), admin="admin",
                               idle_timeout=0, cohort_check_interval=0, stop_servers_on_exit=False,
                               shared_account=True,
                               config=os.path.join(REPO, "hub_config", "jupyterhub_config.py"))
        local_hub.start_hub(args)
    finally:
        real[0](cwd)
        os.chdir, os.execve = real
    assert seen["cwd"] == str(tmp_path / "data")
    assert seen["env"]["OGGMHUB_DATA_DIR"] == str(tmp_path / "data")


def test_a_data_dir_too_long_for_the_desktops_socket_is_named_at_start_up(tmp_path, capsys):
    """TigerVNC refuses a socket path over 107 bytes ("socket path is too long"); the
    desktop's socket is made in each server's TMPDIR under the data directory. Seen for real
    with a 5-character user under a 49-character data directory (a 113-byte path)."""
    from oggmhub.backends.local.user_files import desktop_socket_warning

    long_dir = "/tmp/pytest-of-root/pytest-293/popen-gw1/hub0/data"  # 49 characters
    said = desktop_socket_warning(long_dir, username_length=5)
    assert said and "6 bytes over the 107 a Unix socket's path may have" in said and long_dir in said
    assert desktop_socket_warning("/tmp/pytest-of-root/pytest-293/hub0/data", username_length=5) is None
    assert desktop_socket_warning("/srv/oggmhub") is None  # room for 16-character usernames
    assert desktop_socket_warning("/srv/" + "d" * 60) is not None
