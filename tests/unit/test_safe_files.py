"""Root's file operations in a user's folders never follow the user's links (issue 28:
X03, X05 and the start/stop path's other writes), checked on real folders with real links:
each planted link points at a folder or file standing for root's own, which must come out
unchanged (content, owner, listing)."""

import json
import os
import types

import pytest

from oggmhub.backends.local import dataset_links, file_modes, safe_files, user_files


def _snapshot(folder):
    """What a user could have changed in ``folder``: every name, its content and owner."""
    out = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = os.path.join(root, name)
            st = os.lstat(path)
            content = open(path, "rb").read() if os.path.isfile(path) and not os.path.islink(path) else None
            out[os.path.relpath(path, folder)] = (st.st_uid, st.st_mode, content)
    return out


@pytest.fixture
def roots(tmp_path):
    """A folder standing for root's files (/etc), and a user's scratch folder beside it."""
    etc = tmp_path / "etc"
    (etc / "default").mkdir(parents=True)
    (etc / "default" / "keep.conf").write_text("root's\n")
    (etc / "passwd").write_text("root:x:0:0\n")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    return etc, scratch


def test_removing_a_registry_that_is_a_link_removes_the_link_only(roots):
    etc, scratch = roots
    before = _snapshot(etc)
    os.symlink(etc, scratch / "dask")  # X05: ln -s /etc $OGGMHUB_SCRATCH/dask
    with pytest.raises(safe_files.UnsafePath, match="is a symbolic link or not a folder"):
        safe_files.remove(str(scratch), "dask/default")
    assert safe_files.remove(str(scratch), "dask") is True  # the link itself
    assert not os.path.lexists(scratch / "dask") and _snapshot(etc) == before
    # a link inside a real registry folder: removed with it, its target untouched
    (scratch / "dask").mkdir()
    os.symlink(etc / "default", scratch / "dask" / "default")
    os.symlink(etc, scratch / "dask" / "inner")
    assert safe_files.remove(str(scratch), "dask") is True
    assert _snapshot(etc) == before and not os.path.lexists(scratch / "dask")
    assert safe_files.remove(str(scratch), "dask") is False  # nothing there: no-op


def test_the_unavailable_notice_never_writes_through_a_link(roots):
    etc, scratch = roots
    before = _snapshot(etc)
    # X03: links at the notice's old temporary name and at the notice itself
    os.symlink(etc / "passwd", scratch / "datasets-unavailable.json.tmp")
    os.symlink(etc / "default" / "keep.conf", scratch / "datasets-unavailable.json")
    user_files.write_unavailable(str(scratch), {"oggm-mirror": "the server could not be reached"})
    assert _snapshot(etc) == before
    notice = scratch / "datasets-unavailable.json"
    assert not notice.is_symlink() and json.loads(notice.read_text()) == {"oggm-mirror": "the server could not be reached"}
    assert oct(notice.stat().st_mode & 0o777) == "0o644" and notice.stat().st_uid == scratch.stat().st_uid
    assert not [n for n in os.listdir(scratch) if n.startswith(".datasets-unavailable")]  # no temporary left
    os.remove(notice)
    os.symlink(etc / "passwd", notice)
    user_files.write_unavailable(str(scratch), {})  # none: the link goes, its target stays
    assert not os.path.lexists(notice) and _snapshot(etc) == before


def test_a_scratch_folder_that_is_a_link_is_refused(roots):
    etc, scratch = roots
    link = scratch.parent / "scratch-link"
    os.symlink(etc, link)
    with pytest.raises(safe_files.UnsafePath):
        safe_files.write_atomic(str(link), "passwd", "pwned")
    with pytest.raises(safe_files.UnsafePath):
        safe_files.makedirs(str(link), "tmp/default")
    assert (etc / "passwd").read_text() == "root:x:0:0\n"
    with pytest.raises(safe_files.UnsafePath, match="'..'"):
        safe_files.open_dir(str(scratch), "../etc")


def test_the_private_tmp_folder_is_made_without_following_links(roots):
    etc, scratch = roots
    os.symlink(etc, scratch / "tmp")
    with pytest.raises(user_files.UserFilesError, match="could not be made"):
        user_files.private_tmp(str(scratch), "default")
    assert sorted(os.listdir(etc)) == ["default", "passwd"]
    os.remove(scratch / "tmp")
    path = user_files.private_tmp(str(scratch), "default", owner=(os.getuid(), os.getgid()))
    assert path == str(scratch / "tmp" / "default") and oct(os.stat(path).st_mode & 0o777) == "0o700"


def test_dataset_links_never_go_through_a_link_at_datasets(roots, tmp_path):
    etc, _ = roots
    home = tmp_path / "home"
    home.mkdir()
    before = _snapshot(etc)
    os.symlink(etc, home / "datasets")
    with pytest.raises(safe_files.UnsafePath):
        dataset_links.link_datasets(str(home), {"oggm-mirror": "/mnt/x"})
    with pytest.raises(safe_files.UnsafePath):
        dataset_links.link_datasets(str(home), {})
    assert _snapshot(etc) == before
    os.remove(home / "datasets")
    made = dataset_links.link_datasets(str(home), {"oggm-mirror": "/mnt/x"})
    assert made == [str(home / "datasets" / "oggm-mirror")] and os.readlink(made[0]) == "/mnt/x"
    (home / "datasets" / "mine").write_text("the user's")
    assert dataset_links.link_datasets(str(home), {}) == []  # links go, the user's file stays
    assert os.listdir(home / "datasets") == ["mine"]


@pytest.mark.skipif(os.geteuid() != 0, reason="handing files to another uid needs root")
def test_give_never_changes_the_owner_of_a_links_target(roots, tmp_path):
    etc, _ = roots
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    (work / "sub" / "file").write_text("x")
    os.symlink(etc / "passwd", work / "sub" / "to-passwd")
    os.symlink(etc, work / "to-etc")
    account = types.SimpleNamespace(uid=4242, gid=4242)
    before = _snapshot(etc)
    file_modes.give(str(work), account)
    assert _snapshot(etc) == before
    assert {os.lstat(os.path.join(r, n)).st_uid for r, ds, fs in os.walk(work) for n in ds + fs} == {4242}
    assert os.lstat(work).st_uid == 4242
