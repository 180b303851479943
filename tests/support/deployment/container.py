"""A container's filesystem view without a container runtime: run a command in a private
mount namespace (``unshare --mount``) where prepared folders and files are bound at the
paths a pod's volumes would have (``/usr/local/etc/jupyterhub/...``, ``/srv/jupyterhub``,
``/home/jovyan``), then switch to the container's user and working directory.

Nothing is mounted outside the namespace: the mounts vanish with the process. Test
equipment (tests/support), run as root::

    argv = container_argv(binds, ["jupyterhub", ...], cwd="/srv/jupyterhub", env=env)
    subprocess.Popen(argv)

``binds`` is a list of ``(source on this machine, path in the container, read_only)``.
A target that does not exist is made on a fresh tmpfs laid over its nearest existing
ancestor (which the container then sees empty but for its mounts), except directly
under ``/``, where an empty mount point is created on this machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

KEPT = ("/dev", "/proc", "/sys", "/tmp", "/etc", "/usr", "/bin", "/lib", "/root")  # never shadowed
HERE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/


def container_argv(binds, command, *, cwd="/", env=None, uid=None, gid=None, groups=(), spec_dir=None, join=None):
    """The argv that runs ``command`` in its own mount namespace with ``binds`` mounted, or
    (``join``: a process id) in that process's mount namespace (a pod's other containers)."""
    spec = {"binds": [list(b) for b in binds], "command": list(command), "cwd": cwd,
            "env": dict(env if env is not None else os.environ), "uid": uid, "gid": gid, "groups": list(groups)}
    fd, path = tempfile.mkstemp(prefix="container-", suffix=".json", dir=spec_dir)
    with os.fdopen(fd, "w") as f:
        json.dump(spec, f)
    enter = ["nsenter", f"--mount=/proc/{join}/ns/mnt", "--"] if join else ["unshare", "--mount", "--propagation", "private"]
    return [*enter, sys.executable, "-c",
            f"import sys; sys.path.insert(0, {HERE!r}); from support.deployment.container import main; main({path!r})"]


def _mount(*args):
    subprocess.run(["mount", *args], check=True, stdout=subprocess.DEVNULL)


def _make_target(target, is_dir, shadowed):
    """Create ``target`` as a mount point, overlaying a tmpfs on an existing ancestor if needed."""
    if os.path.lexists(target):
        return
    ancestor = os.path.dirname(target)
    while not os.path.exists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if ancestor in KEPT:
        raise ValueError(f"cannot mount at {target}: {ancestor} is this machine's own")
    if ancestor != "/" and ancestor not in shadowed:
        _mount("-t", "tmpfs", "-o", "mode=755", "tmpfs", ancestor)
        shadowed.add(ancestor)
    if is_dir:
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        open(target, "a").close()


def main(spec_path):
    with open(spec_path) as f:
        spec = json.load(f)
    os.unlink(spec_path)
    shadowed = set()
    # parents first, so a bind inside an earlier one lands on top of it
    for source, target, read_only in sorted(spec["binds"], key=lambda b: b[1].count("/")):
        _make_target(target, os.path.isdir(source), shadowed)
        _mount("--bind", source, target)
        if read_only:
            _mount("-o", "remount,bind,ro", target)
    os.chdir(spec["cwd"])
    if spec["uid"] is not None:
        os.setgroups(spec["groups"])
        os.setgid(spec["gid"] if spec["gid"] is not None else spec["uid"])
        os.setuid(spec["uid"])
    command = spec["command"]
    os.execvpe(command[0], command, spec["env"])
