"""``~/datasets/<name>`` in a pod: a postStart hook linking each mounted dataset into the home.

The same links as the local backend's (:mod:`oggmhub.backends.local.dataset_links`), so
that JupyterLab, whose root is the home, shows a session's datasets at
``datasets/<name>`` (where launch links open). Links of datasets the session does not
mount are removed; the user's own files are never replaced. The hook always succeeds: a
link that cannot be made never stops a server.
"""

from __future__ import annotations

import shlex

FOLDER = "datasets"


def link_command(datasets, home):
    """The shell command (``["sh", "-c", script]``) that makes the links under ``home``."""
    folder = f"{home.rstrip('/')}/{FOLDER}"
    q = shlex.quote
    lines = [f"d={q(folder)}", 'mkdir -p "$d" || exit 0',
             'for l in "$d"/*; do [ -L "$l" ] && rm -f "$l"; done']
    for dataset in datasets:
        link = f'"$d"/{q(dataset.name)}'
        lines.append(f"[ -e {link} ] || [ -L {link} ] || ln -s {q(dataset.mount_path)} {link}")
    return ["sh", "-c", "; ".join(lines) + "; exit 0"]


def with_links(configured_hooks, datasets, home):
    """kubespawner's ``lifecycle_hooks``: the configured ones, plus the links as postStart.

    A postStart the admin configured is kept as it is (and no links are made).
    """
    hooks = dict(configured_hooks or {})
    if "postStart" not in hooks:
        hooks["postStart"] = {"exec": {"command": link_command(datasets, home)}}
    return hooks
