"""Usernames whose folders would be another user's: refused wherever an account is made.

A user's home, scratch folder and mount root are named by
:func:`oggmhub.user_folders.folder_name` (the ``safe_slug`` of the username), so two
usernames with the same folder name would share them (``adv.vic`` and
``adv-vic---<hash>``). A new username is checked against every hub user and every
sign-up waiting for approval (NativeAuthenticator's ``users_info``) by
:func:`clash`; the sign-up page, join codes, cohort adds and the admin's
``POST /hub/api/users`` all refuse it with :func:`message`.
"""

from __future__ import annotations

from jupyterhub import orm
from sqlalchemy import select

from oggmhub import user_folders  # its functions looked up at each call (a test hub may stand in one)


def known_usernames(db):
    """Every hub user's name and every name signed up (approved or not), from the hub's database."""
    names = set(db.execute(select(orm.User.name)).scalars())
    try:
        from nativeauthenticator.orm import UserInfo
    except ImportError:  # another authenticator: hub users only
        return names
    try:
        names.update(db.execute(select(UserInfo.username)).scalars())
    except Exception:  # noqa: BLE001 - no users_info table on this hub
        db.rollback()
    return names


def clash(db, username, also=(), created=False):
    """The existing username (or one of ``also``, names being created with it) whose
    folders ``username``'s would share; None when there is none or ``username`` exists
    itself (an existing account keeps its folders), unless ``created``: it was made just now
    (JupyterHub's ``add_user`` hook) and is checked against the others."""
    names = known_usernames(db)
    if username in names and not created:
        return None
    return user_folders.colliding_user(username, names | set(also))


def message(username, other):
    """Why ``username`` is refused: it names the clash and what to do."""
    return (f"the username {username!r} is not available: its folders would be named "
            f"{user_folders.folder_name(username)!r}, which are those of the existing user {other!r}; choose another username")


def clashes(db, new_usernames):
    """``{username: other}`` for each of ``new_usernames`` (none of them existing) whose
    folders would be an existing user's or an earlier one of ``new_usernames``'."""
    names = known_usernames(db)
    folder_name = user_folders.folder_name
    by_folder = {folder_name(n): n for n in names}
    found = {}
    for username in new_usernames:
        mine = folder_name(username)
        other = by_folder.get(mine)
        if other is not None and other != username:
            found[username] = other
        by_folder.setdefault(mine, username)
    return found
