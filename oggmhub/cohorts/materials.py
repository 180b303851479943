"""A cohort's materials: a git repository pulled into each member's home when a server starts.

nbgitpuller's ``gitpuller`` does the pull when the environment has it (a first start
clones; later starts merge upstream changes without overwriting the member's edits);
otherwise a plain ``git clone`` on first start, and nothing later. A failed pull never
blocks a start: it is reported on the spawn page and the member's files stay as they are.

* local backend: :func:`pull` runs the command before the server starts;
* Kubernetes: :func:`init_container` runs it in the user's image, in an init container
  with the home volume mounted and the user container's own (unprivileged) security
  context.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess

PULL_TIMEOUT = 300


def shell_command(materials, home):
    """A POSIX shell line that syncs ``materials`` into ``home``/<dir>; never fails."""
    dest = f"{home.rstrip('/')}/{materials.dir}"
    repo, branch = shlex.quote(materials.repo), shlex.quote(materials.branch)
    qdest = shlex.quote(dest)
    return (
        f"if command -v gitpuller >/dev/null 2>&1; then gitpuller {repo} {branch} {qdest}; "
        f"elif [ ! -e {qdest} ]; then git clone --depth 1 --branch {branch} -- {repo} {qdest}; fi "
        f"|| echo 'oggmhub: could not pull the materials from {materials.repo}' >&2; true"
    )


def command(materials, home, search_path=None):
    """The argv that syncs ``materials`` into ``home``/<dir> on this machine, or None.

    ``search_path`` (a PATH string) is where gitpuller is looked for first, e.g. the
    environment's bin folder. None when there is nothing to do (already cloned, no
    gitpuller to update it).
    """
    dest = os.path.join(home, materials.dir)
    gitpuller = shutil.which("gitpuller", path=search_path) if search_path else None
    gitpuller = gitpuller or shutil.which("gitpuller")
    if gitpuller:
        return [gitpuller, materials.repo, materials.branch, dest]
    if os.path.exists(dest):
        return None
    return ["git", "clone", "--depth", "1", "--branch", materials.branch, "--", materials.repo, dest]


def pull(materials, home, search_path=None, env=None, progress=None, run_as=None):
    """Sync ``materials`` into ``home`` (local backend); True on success.

    ``progress`` gets one line for the spawn page; a failure is reported, not raised.
    ``run_as``: the user's system account (:class:`~oggmhub.backends.local.system_users.Account`),
    which then runs the pull (the hub, root, never writes into a user's home itself).
    """
    say = progress or (lambda line: None)
    argv = command(materials, home, search_path)
    if argv is None:
        say(f"Materials already in ~/{materials.dir}")
        return True
    tool = "nbgitpuller" if os.path.basename(argv[0]) == "gitpuller" else "git clone"
    say(f"Pulling the materials ({materials.repo}, {materials.branch}) into ~/{materials.dir} with {tool}")
    run_env = {**os.environ, **(env or {}), "HOME": home, "GIT_TERMINAL_PROMPT": "0"}
    try:
        account = {} if run_as is None else dict(user=run_as.uid, group=run_as.gid, extra_groups=run_as.groups())
        result = subprocess.run(argv, cwd=home, env=run_env, capture_output=True, text=True,
                                timeout=PULL_TIMEOUT, **account)
    except (OSError, subprocess.TimeoutExpired) as e:
        say(f"Could not pull the materials from {materials.repo}: {e}; starting without them")
        return False
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        say(f"Could not pull the materials from {materials.repo} ({detail[0]}); starting without them")
        return False
    return True


def init_container(materials_list, image, home_mount_path, security_context, home_volume="home"):
    """The Kubernetes init container that syncs every item of ``materials_list`` into the home."""
    script = "; ".join(shell_command(m, home_mount_path) for m in materials_list)
    return {
        "name": "materials",
        "image": image,
        "command": ["/bin/sh", "-c", script],
        "workingDir": home_mount_path,
        "env": [{"name": "HOME", "value": home_mount_path}, {"name": "GIT_TERMINAL_PROMPT", "value": "0"}],
        "securityContext": dict(security_context),
        "volumeMounts": [{"name": home_volume, "mountPath": home_mount_path}],
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}},
    }
