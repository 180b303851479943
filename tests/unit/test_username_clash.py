"""Usernames whose folders would be another user's (oggmhub.username_clash), on the hub's
own database tables (SQLite in memory), without a hub.

kubespawner's ``safe_slug`` gives different usernames different folder names (short of a
32-bit hash collision), so these tests stand in a folder-name function that collides
(``a_b`` and ``a-b`` share one), to show every check finds and names the clash."""

import pytest
from jupyterhub import orm

from oggmhub import user_folders, username_clash


@pytest.fixture
def db():
    session = orm.new_session_factory("sqlite://")()
    for name in ("adv-vic", "ada"):
        session.add(orm.User(name=name))
    session.commit()
    return session


@pytest.fixture
def colliding(monkeypatch):
    real = user_folders.folder_name
    monkeypatch.setattr(user_folders, "folder_name", lambda n: real(n.replace("_", "-")))


def test_a_new_username_sharing_a_folder_is_named_and_an_existing_one_is_not(db, colliding):
    assert username_clash.clash(db, "adv_vic") == "adv-vic"
    assert username_clash.clash(db, "adv-vic") is None  # the existing account itself
    assert username_clash.clash(db, "bob") is None
    assert username_clash.clash(db, "b_c", also=["b-c"]) == "b-c"
    assert username_clash.clashes(db, ["adv_vic", "x_y", "x-y", "fresh"]) == {"adv_vic": "adv-vic", "x-y": "x_y"}
    text = username_clash.message("adv_vic", "adv-vic")
    assert text == ("the username 'adv_vic' is not available: its folders would be named 'adv-vic', which are "
                    "those of the existing user 'adv-vic'; choose another username")


def test_pending_sign_ups_count_too(db, colliding):
    from nativeauthenticator.orm import UserInfo

    UserInfo.__table__.create(db.get_bind(), checkfirst=True)
    db.add(UserInfo(username="wait_ing", password=b"x"))
    db.commit()
    assert username_clash.clash(db, "wait-ing") == "wait_ing"


def test_the_real_folder_names_never_collide(db):
    assert username_clash.clashes(db, ["adv.vic", user_folders.folder_name("adv.vic"), "ADV-vic", "adv--vic"]) == {}
