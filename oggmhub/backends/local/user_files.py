"""What the hub puts into a user's own folders at a start, without acting through their links.

- :func:`merge_tutorials`: the environment's tutorials into ``~/tutorials/<env>``. Where
  the user has a system account the merge runs *as that account* (the environment's
  Python, isolated mode, ``python -m oggmhub.session.tutorials merge``) from a copy of the
  tutorials the hub staged in a fresh folder: root never writes into the home, so a link
  the user put at ``~/tutorials`` (or anywhere below it) leads only where they could write
  anyway. Without accounts (one system user for the hub and its servers) it runs in the
  hub, as before.
- :func:`private_tmp`: the server's ``TMPDIR``, a folder of its own in the user's scratch
  space, mode 0700, the user's (made without following links, :mod:`.safe_files`).
- :func:`write_unavailable`: the notice of the session's datasets that could not be
  mounted, in the user's scratch space (a link there is replaced, never written through);
  :func:`write_budget_notice`: a used-up budget's warning for the server's kernels, the same way.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile

from oggmhub.backends.local import safe_files
from oggmhub.session import budget_notice as session_budget_notice
from oggmhub.session import datasets as datasets_api
from oggmhub.session import tutorials as session_tutorials

TMP_FOLDER = "tmp"  # <scratch>/tmp/<server>: each server's TMPDIR
UNIX_SOCKET_MAX = 107  # bytes a Unix socket's path may have (sun_path's 108, less its NUL)
DESKTOP_SOCKET = "jupyter-server-proxy-xxxxxxxx/socket"  # the desktop's VNC socket, made in TMPDIR
USERNAME_ROOM = 16  # the username length the start-up check keeps room for


class UserFilesError(RuntimeError):
    """What the hub could not put into a user's folder; the message says why."""


def merge_tutorials(source, dest, env, account=None, venv=None, timeout=120):
    """Merge the ``<env>-*`` tutorials of ``source`` into ``dest``; the merge's summary."""
    if account is None:
        return session_tutorials.merge(source, dest, env).summary()
    files = session_tutorials.tutorial_files(source, env)
    stage = tempfile.mkdtemp(prefix="oggmhub-tutorials-")  # root's, fresh: nobody else's links in it
    try:
        for rel in files:
            target = os.path.join(stage, rel)
            os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
            shutil.copyfile(os.path.join(source, rel), target)
            os.chmod(target, 0o644)
        for root, dirs, _ in os.walk(stage):
            for name in dirs:
                os.chmod(os.path.join(root, name), 0o755)
        os.chmod(stage, 0o755)
        python = os.path.join(venv, "bin", "python") if venv else "python3"
        try:
            done = subprocess.run(
                [python, "-I", "-m", "oggmhub.session.tutorials", "merge", stage, dest],
                user=account.uid, group=account.gid, extra_groups=list(account.groups()),
                cwd="/", env={"PATH": os.defpath, "HOME": os.path.dirname(os.path.dirname(dest)), "LANG": "C.UTF-8"},
                capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise UserFilesError(f"the merge as {account.name} did not run: {e}") from e
        if done.returncode:
            last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
            raise UserFilesError(f"the merge as {account.name} failed: {last}")
        line = (done.stdout.strip().splitlines() or [""])[-1]
        return line.split(": ", 1)[1] if ": " in line else line
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def private_tmp(scratch, server, owner=None):
    """``<scratch>/tmp/<server>``, made if missing (0700, ``owner``'s), never through a link;
    its path. A link or a file of the user's there: :class:`UserFilesError` saying so."""
    rel = os.path.join(TMP_FOLDER, server)
    try:
        fd = safe_files.makedirs(scratch, rel, mode=0o700, owner=owner)
    except OSError as e:
        raise UserFilesError(f"the server's temporary folder {os.path.join(scratch, rel)} could not be made: {e}") from e
    try:
        st = os.fstat(fd)
        if owner is not None and (st.st_uid, st.st_gid) != tuple(owner):
            os.fchown(fd, *owner)
        os.fchmod(fd, 0o700)
    finally:
        os.close(fd)
    return os.path.join(scratch, rel)


def write_unavailable(scratch, reasons):
    """Record ``{name: why}`` for the session's :func:`oggmhub.session.datasets.unavailable`
    (the spawner's side, as root); none: remove it (see :func:`write_notice`)."""
    write_notice(scratch, datasets_api.UNAVAILABLE_FILE, reasons or None)


def write_budget_notice(scratch, server_name, text):
    """Leave ``text`` (a used-up budget, see :mod:`oggmhub.session.budget_notice`) for the
    kernels of server ``server_name``; None: remove it."""
    write_notice(scratch, session_budget_notice.file_name(server_name), {"text": text} if text else None)


def write_notice(scratch, name, data):
    """``data`` as JSON at ``scratch/name``, the folder owner's, readable; None: remove it.
    ``scratch`` is the user's: a link they put at the notice's name (or at any temporary
    name) is replaced or removed, never written through (:mod:`.safe_files`)."""
    if data is None:
        try:
            fd = safe_files.open_dir(scratch)
        except FileNotFoundError:
            return
        try:
            os.unlink(name, dir_fd=fd)
        except (FileNotFoundError, IsADirectoryError, PermissionError):
            pass
        finally:
            os.close(fd)
        return
    os.makedirs(scratch, exist_ok=True)
    owner = os.lstat(scratch)
    safe_files.write_atomic(scratch, name, json.dumps(data, indent=1), mode=0o644,
                            owner=(owner.st_uid, owner.st_gid) if os.geteuid() == 0 else None)


def desktop_socket_warning(data_dir, username_length=USERNAME_ROOM):
    """One line for the hub's start-up when the desktop's VNC socket (in each server's
    TMPDIR, ``<data dir>/scratch/<user>/tmp/<server>``) would be longer than a Unix socket's
    path may be for a user of ``username_length`` characters (TigerVNC then refuses to
    start: "socket path is too long"); None when there is room."""
    path = os.path.join(os.path.abspath(data_dir), "scratch", "u" * username_length, TMP_FOLDER, "default",
                        DESKTOP_SOCKET)
    over = len(path.encode()) - UNIX_SOCKET_MAX
    if over <= 0:
        return None
    return (f"the desktop (Slicer's and Fiji's TigerVNC) cannot start for users with names of {username_length} or "
            f"more characters: its socket under {data_dir}/scratch/<user>/tmp/ would be {over} bytes over the "
            f"{UNIX_SOCKET_MAX} a Unix socket's path may have; use a --data-dir path at least {over} characters "
            f"shorter (e.g. /srv/oggmhub)")
