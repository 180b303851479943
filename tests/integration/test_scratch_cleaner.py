"""Scratch that cleans itself (oggmhub/storage/scratch.py, scratch_service.py): files past
the catalog's TTL go, files inside it stay, a file a process holds open stays, a link is
removed itself and never followed, the hub's own files and each server's TMPDIR stay,
and the service says what it removed."""

import os
import subprocess
import sys
import time

import yaml

from oggmhub.storage import scratch
from support.paths import CATALOG

DAY = 86400


def old(path, days):
    t = time.time() - days * DAY
    os.utime(path, (t, t), follow_symlinks=False)


def make_scratch(root):
    user = root / "scratch" / "alice"
    (user / "runs" / "old-run").mkdir(parents=True)
    (user / "tmp" / "default").mkdir(parents=True)
    (user / "dask" / "default").mkdir(parents=True)
    files = {
        "stale": user / "runs" / "old-run" / "out.nc",
        "fresh": user / "runs" / "new.nc",
        "held": user / "runs" / "held.nc",
        "tmp_old": user / "tmp" / "default" / "x.tmp",
        "registry": user / "dask" / "default" / "cluster.json",
    }
    for path in files.values():
        path.write_bytes(b"x" * 100_000)
    outside = root / "precious.txt"
    outside.write_text("not scratch")
    old(outside, 30)
    link = user / "link-out"
    link.symlink_to(outside)
    for name in ("stale", "held", "tmp_old", "registry"):
        old(files[name], 8)
    old(link, 8)
    for folder in (user / "runs" / "old-run", user / "tmp" / "default", user / "tmp", user / "dask"):
        old(folder, 8)
    return user, files, outside, link


def test_files_past_the_ttl_go_and_the_rest_stays(tmp_path):
    user, files, outside, link = make_scratch(tmp_path)
    with open(files["held"], "rb"):  # a notebook still reads it
        removed = scratch.clean(str(user), "alice", 7 * DAY)
    assert sorted(removed.paths) == ["link-out", "runs/old-run/", "runs/old-run/out.nc", "tmp/default/x.tmp"]
    assert removed.kept_in_use == 1 and removed.bytes >= 200_000
    assert files["fresh"].exists() and files["held"].exists() and files["registry"].exists()
    assert (user / "tmp" / "default").is_dir()  # a server's TMPDIR: emptied, kept
    assert outside.read_text() == "not scratch" and not os.path.lexists(link)


def test_service_reads_the_ttl_from_the_catalog_and_logs_what_it_removed(tmp_path):
    user, files, outside, _ = make_scratch(tmp_path)
    data = yaml.safe_load(CATALOG.read_text())
    data["storage"] = {"scratch_ttl_days": 7}
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(yaml.safe_dump(data))
    result = subprocess.run([sys.executable, "-m", "oggmhub.storage.scratch_service", "--data-dir", str(tmp_path),
                             "--catalog", str(catalog), "--once"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "scratch of alice: removed 5 older than 7 days" in result.stderr  # held.nc is not held here
    assert "runs/old-run/out.nc" in result.stderr and "kept 0 in use" in result.stderr
    assert not files["stale"].exists() and files["fresh"].exists()


def test_no_ttl_in_the_catalog_removes_nothing(tmp_path):
    user, files, _, _ = make_scratch(tmp_path)
    catalog = yaml.safe_load(CATALOG.read_text())
    catalog["storage"].pop("scratch_ttl_days")  # the shipped catalog's 7 days, left out
    (tmp_path / "catalog.yaml").write_text(yaml.safe_dump(catalog))
    result = subprocess.run([sys.executable, "-m", "oggmhub.storage.scratch_service", "--data-dir", str(tmp_path),
                             "--catalog", str(tmp_path / "catalog.yaml"), "--once"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and result.stderr == ""
    assert all(path.exists() for path in files.values())
