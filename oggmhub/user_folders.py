"""Where a hub user's folders live under the hub's data directory: one spelling, everywhere.

A user's home, scratch folder and mount root are named by :func:`folder_name`, the
username made safe for a path (kubespawner's ``safe_slug``: a username that is already
safe stays as it is, any other gets an escaped form plus a short hash). The spawner,
cohorts' exports, tool tasks and the file picker all use these functions, so they agree
on which folder is whose. Two usernames with the same folder name are never both
allowed (:func:`colliding_user`).
"""

from __future__ import annotations

import os

from kubespawner.slugs import safe_slug


def folder_name(username):
    """The name of ``username``'s folders (``safe_slug``)."""
    return safe_slug(username)


def home_path(homes_dir, username):
    """``<homes_dir>/<folder_name(username)>``."""
    return os.path.join(homes_dir, folder_name(username))


def colliding_user(username, existing_usernames):
    """The existing username whose folders ``username``'s would share, or None."""
    mine = folder_name(username)
    for other in existing_usernames:
        if other != username and folder_name(other) == mine:
            return other
    return None
