"""Tutorials merged into the home the nbgitpuller way (oggmhub.session.tutorials)."""

import json
import os
import subprocess
import sys

from conftest import REPO
from oggmhub.session import tutorials


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def read(path):
    with open(path) as f:
        return f.read()


def test_new_added_unchanged_updated_edits_kept_deleted_restored(tmp_path):
    src, home = tmp_path / "notebooks", tmp_path / "home" / "tutorials" / "oggm"
    write(src / "oggm-a.ipynb", "a1")
    write(src / "oggm-b.ipynb", "b1")
    write(src / "fiji-x.ipynb", "not oggm's")
    first = tutorials.merge(str(src), str(home), "oggm")
    assert first.added == ["oggm-a.ipynb", "oggm-b.ipynb"]
    assert sorted(os.listdir(home)) == [".oggmhub-tutorials.json", "oggm-a.ipynb", "oggm-b.ipynb"]

    write(home / "oggm-a.ipynb", "a1 + my notes")  # the user edits one
    write(home / "mine.ipynb", "my own")
    write(src / "oggm-a.ipynb", "a2")  # the tutorials change
    write(src / "oggm-b.ipynb", "b2")
    write(src / "oggm-c.ipynb", "c1")
    second = tutorials.merge(str(src), str(home), "oggm")
    assert second.kept == ["oggm-a.ipynb"] and second.updated == ["oggm-b.ipynb"] and second.added == ["oggm-c.ipynb"]
    assert read(home / "oggm-a.ipynb") == "a1 + my notes"
    assert read(home / "oggm-b.ipynb") == "b2" and read(home / "oggm-c.ipynb") == "c1"
    assert read(home / "mine.ipynb") == "my own"

    os.remove(home / "oggm-c.ipynb")  # deleted: comes back, as with nbgitpuller
    third = tutorials.merge(str(src), str(home), "oggm")
    assert third.updated == ["oggm-c.ipynb"] and third.kept == ["oggm-a.ipynb"]
    assert "kept as you edited them" in third.summary()


def test_a_users_file_already_there_is_never_overwritten(tmp_path):
    src, home = tmp_path / "src", tmp_path / "home"
    write(src / "lesson.ipynb", "ours")
    write(home / "lesson.ipynb", "theirs, from before")
    report = tutorials.merge(str(src), str(home))
    assert report.kept == ["lesson.ipynb"] and read(home / "lesson.ipynb") == "theirs, from before"
    assert "lesson.ipynb" not in json.loads(read(home / ".oggmhub-tutorials.json"))


def test_the_command_line_for_images(tmp_path):
    src, home = tmp_path / "share", tmp_path / "home"
    write(src / "sub" / "t.ipynb", "t")
    out = subprocess.run([sys.executable, "-m", "oggmhub.session.tutorials", "merge", str(src), str(home)],
                         capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "1 added" in out.stdout and read(home / "sub" / "t.ipynb") == "t"


def test_the_repository_has_tutorials_for_oggm():
    names = tutorials.tutorial_files(str(REPO / "notebooks"), "oggm")
    assert "oggm-getting-started.ipynb" in names and "oggm-dask.ipynb" in names
