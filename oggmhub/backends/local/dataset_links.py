"""``~/datasets/<name>``: a link in the user's home to each dataset this session mounts.

A local session's mounts live outside its home (under ``<data_dir>/mounts/<user>``), and
JupyterLab shows only what is under the server's root, the home. A symlink per mounted
dataset makes each browsable at ``lab/tree/datasets/<name>`` (where launch links open).
Links of datasets this session does not mount are removed; anything else in the folder
(the user's own files) is never touched.
"""

from __future__ import annotations

import os

FOLDER = "datasets"


def link_datasets(home, targets):
    """Point ``home/datasets/<name>`` at each ``targets[name]`` (a mounted folder).

    Returns the links made or kept. A name already taken by the user's own file or
    folder is left as it is (no user data is replaced).
    """
    folder = os.path.join(home, FOLDER)
    if not targets and not os.path.isdir(folder):
        return []
    os.makedirs(folder, mode=0o755, exist_ok=True)
    for entry in os.scandir(folder):
        if entry.is_symlink() and entry.name not in targets:
            os.unlink(entry.path)
    kept = []
    for name, target in targets.items():
        link = os.path.join(folder, name)
        if os.path.islink(link):
            if os.readlink(link) == target:
                kept.append(link)
                continue
            os.unlink(link)
        elif os.path.lexists(link):
            continue  # the user's own
        os.symlink(target, link)
        kept.append(link)
    return kept
