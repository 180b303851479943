"""Tutorials merged into the home the nbgitpuller way (oggmhub.session.tutorials)."""

import json
import os
import subprocess
import sys

import pytest

from oggmhub.session import tutorials
from support.paths import REPO


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


def fake_environment(tmp_path):
    """An environment prefix as oggmhub's wheel leaves it: bin/python, share/oggmhub/tutorials."""
    prefix = tmp_path / "env"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "bin" / "python").symlink_to(sys.executable)
    for name in ("oggm-getting-started.ipynb", "slicer-getting-started.ipynb", "fiji-getting-started.ipynb"):
        write(prefix / "share" / "oggmhub" / "tutorials" / name, f"the tutorial {name}")
    return prefix


def run_start_script(env, prefix, home, **extra):
    environ = {"PATH": os.environ["PATH"], "HOME": str(home), "NB_PYTHON_PREFIX": str(prefix),
               "PYTHONPATH": str(REPO), "OGGMHUB_ENVIRONMENT": env, **extra}
    return subprocess.run([str(REPO / "images" / env / "start"), "sh", "-c", "echo started in $PWD"],
                          capture_output=True, text=True, env=environ, timeout=60)


@pytest.mark.parametrize("env", ["oggm", "slicer", "fiji"])
def test_each_images_start_script_merges_its_own_tutorials_into_the_home(tmp_path, env):
    prefix, home = fake_environment(tmp_path), tmp_path / "home"
    home.mkdir()
    out = run_start_script(env, prefix, home)
    assert out.returncode == 0, out.stderr
    assert f"started in {home}" in out.stdout  # the session's command still runs, in the home
    assert os.listdir(home / "tutorials") == [env]  # only this environment's
    assert read(home / "tutorials" / env / f"{env}-getting-started.ipynb") == f"the tutorial {env}-getting-started.ipynb"
    assert "1 added" in out.stderr
    # the user's edit survives the next start; the image's update of another file arrives
    write(home / "tutorials" / env / f"{env}-getting-started.ipynb", "my notes")
    write(prefix / "share" / "oggmhub" / "tutorials" / f"{env}-new.ipynb", "new")
    out = run_start_script(env, prefix, home)
    assert read(home / "tutorials" / env / f"{env}-getting-started.ipynb") == "my notes"
    assert read(home / "tutorials" / env / f"{env}-new.ipynb") == "new"
    assert "1 added, 1 kept as you edited them" in out.stderr


def test_the_start_script_leaves_tutorials_to_the_local_hub_and_never_fails_a_start(tmp_path):
    prefix, home = fake_environment(tmp_path), tmp_path / "home"
    home.mkdir()
    out = run_start_script("oggm", prefix, home, OGGMHUB_TUTORIALS="hub")
    assert out.returncode == 0 and "started in" in out.stdout
    assert not (home / "tutorials").exists()  # the local hub merged them (from its tutorials_dir)
    (home / "tutorials").write_text("a file of the user's in the way")
    out = run_start_script("oggm", prefix, home)
    assert out.returncode == 0 and "started in" in out.stdout, out.stderr
    assert "tutorials: not merged into" in out.stderr


def test_the_lab_extension_is_told_the_sessions_tutorials_folder(tmp_path):
    from oggmhub.session import lab

    (tmp_path / "tutorials" / "oggm").mkdir(parents=True)
    assert lab.tutorials_folder(str(tmp_path), {"OGGMHUB_ENVIRONMENT": "oggm"}) == "tutorials/oggm"
    assert lab.tutorials_folder(str(tmp_path), {"OGGMHUB_ENVIRONMENT": "fiji"}) is None  # none merged
    assert lab.tutorials_folder(str(tmp_path), {"OGGMHUB_ENVIRONMENT": "../etc"}) is None
    assert lab.tutorials_folder(str(tmp_path), {}) is None


def test_the_wheel_installs_the_tutorials_and_both_extensions():
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    data = {key: [v.strip() for v in value.replace("\n", ",").split(",") if v.strip()]
            for key, value in cfg["options.data_files"].items()}
    assert data["share/oggmhub/tutorials"] == ["notebooks/*.ipynb"]
    ext = "share/jupyter/labextensions/@oggmhub/tutorials"
    package = json.loads(read(REPO / "oggmhub" / "share" / "labextension" / "package.json"))
    assert package["name"] == "@oggmhub/tutorials"  # the container's name in remoteEntry.js
    assert f'var NAME = "{package["name"]}"' in read(REPO / "oggmhub" / "share" / "labextension" / "static" / "remoteEntry.js")
    assert "oggmhub/share/labextension/static/remoteEntry.js" in data[f"{ext}/static"]
    server = json.loads(read(REPO / "oggmhub" / "share" / "jupyter_server_config.d" / "oggmhub.json"))
    assert server["ServerApp"]["jpserver_extensions"] == {"oggmhub.session.lab": True}
    assert data["etc/jupyter/jupyter_server_config.d"] == ["oggmhub/share/jupyter_server_config.d/oggmhub.json"]
