"""`oggmhub datasets mirror`, and OGGM reading its downloads from the mounted mirror.

A local HTTP server on 127.0.0.1 plays the data provider; a GCS emulator holds the
mirror; OGGM (if installed) runs with ``has_internet`` off and must find every file it
asks for in the read-only mount.
"""

import functools
import http.server
import importlib.util
import json
import os
import subprocess
import sys
import threading

import pytest

from oggmhub.catalog import Dataset
from oggmhub.cli import mirror
from oggmhub.mounts import process as mounts
from support.paths import REPO

OGGM_URL = "https://cluster.klima.uni-bremen.de/~oggm/test_files/oggmhub/rgi62_11_outlines.csv"


@pytest.fixture(scope="module")
def provider(tmp_path_factory):
    """A data provider: files served over HTTP on 127.0.0.1."""
    folder = tmp_path_factory.mktemp("provider")
    (folder / "~oggm" / "climate").mkdir(parents=True)
    (folder / "~oggm" / "climate" / "cru.nc").write_bytes(bytes(range(256)) * 100)
    (folder / "~oggm" / "README.txt").write_text("hello\n")
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_cache_names_are_oggms():
    assert mirror.cache_name(OGGM_URL) == "cluster.klima.uni-bremen.de/~oggm/test_files/oggmhub/rgi62_11_outlines.csv"
    assert mirror.cache_name("http://127.0.0.1:8080/a/b.txt") == "127.0.0.1/a/b.txt"  # OGGM drops the port
    with pytest.raises(ValueError, match="not a download URL"):
        mirror.cache_name("gs://bucket/x")


def test_cache_names_match_oggms_own(tmp_path):
    if importlib.util.find_spec("oggm") is None:
        pytest.skip("OGGM is not installed in this environment (pip install oggm)")
    urls = [OGGM_URL, "http://127.0.0.1:8080/a/b.txt"]
    code = ("import json, sys; from oggm.utils._downloads import _get_url_cache_name as name; "
            "print(json.dumps([name(u) for u in sys.argv[1:]]))")
    # in a child with its own HOME: importing OGGM writes ~/.oggm_config
    result = subprocess.run([sys.executable, "-c", code, *urls], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [mirror.cache_name(u) for u in urls]


def test_mirror_urls_into_a_bucket_in_oggms_layout(gcs, provider):
    gcs.create_bucket("mirror-urls")
    fs, root = mirror.destination("gs://mirror-urls/cache", endpoint=gcs.url)
    urls = [f"{provider}/~oggm/README.txt", f"{provider}/~oggm/climate/cru.nc", f"{provider}/~oggm/missing.txt"]
    report = mirror.mirror_urls(urls, fs, root, log=lambda *_: None)
    assert sorted(report.copied) == ["mirror-urls/cache/127.0.0.1/~oggm/README.txt",
                                     "mirror-urls/cache/127.0.0.1/~oggm/climate/cru.nc"]
    assert [url for url, _ in report.failed] == [f"{provider}/~oggm/missing.txt"]
    check = gcs.filesystem()
    assert check.cat("mirror-urls/cache/127.0.0.1/~oggm/README.txt") == b"hello\n"
    assert not check.exists("mirror-urls/cache/127.0.0.1/~oggm/missing.txt")  # nothing half-made
    again = mirror.mirror_urls(urls[:2], fs, root, log=lambda *_: None)
    assert len(again.skipped) == 2 and not again.copied


def test_cli_mirrors_a_url_list_and_a_tree(gcs, provider, tmp_path):
    gcs.create_bucket("mirror-cli")
    listing = tmp_path / "urls.txt"
    listing.write_text(f"# OGGM files\n{provider}/~oggm/README.txt\n")
    cli = [sys.executable, "-m", "oggmhub", "datasets", "mirror"]
    result = subprocess.run([*cli, "gs://mirror-cli", "--endpoint", gcs.url, "--token", "anon", "--urls-from", str(listing)],
                            capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "1 copied, 0 already there, 0 failed" in result.stdout
    tree = tmp_path / "download_cache" / "example.org" / "data"
    tree.mkdir(parents=True)
    (tree / "x.bin").write_bytes(b"x" * 10)
    result = subprocess.run([*cli, "gs://mirror-cli", "--endpoint", gcs.url, "--token", "anon",
                             "--tree", str(tmp_path / "download_cache")], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 0, result.stderr
    assert gcs.filesystem().cat("mirror-cli/example.org/data/x.bin") == b"x" * 10
    result = subprocess.run([*cli, "gs://mirror-cli", f"{provider}/x", "--tree", str(tmp_path)],
                            capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 2 and "not both" in result.stderr


OGGM_SCRIPT = """
import json, os, sys
from oggm import cfg, utils
cfg.initialize_minimal(logging_level="CRITICAL")
cfg.PARAMS["has_internet"] = False
found = utils.file_downloader(sys.argv[1])
print(json.dumps({"path": found, "text": open(found).read(),
                  "cache": cfg.PATHS["dl_cache_dir"], "ro": cfg.PARAMS["dl_cache_readonly"]}))
"""


def test_oggm_reads_its_downloads_from_the_mounted_mirror_without_internet(gcs, tmp_path):
    if importlib.util.find_spec("oggm") is None:  # not imported here: OGGM runs in a child
        pytest.skip("OGGM is not installed in this environment (pip install oggm)")
    # the operator fills the mirror from an OGGM download cache, in OGGM's layout
    cache = tmp_path / "download_cache"
    name = mirror.cache_name(OGGM_URL)
    (cache / os.path.dirname(name)).mkdir(parents=True)
    (cache / name).write_text("RGIId,Area\nRGI60-11.00897,8.036\n")
    gcs.create_bucket("oggm-mirror")
    fs, root = mirror.destination("gs://oggm-mirror", endpoint=gcs.url)
    assert mirror.mirror_tree(str(cache), fs, root, log=lambda *_: None).ok
    # the local backend mounts it and rewrites the environment's catalog paths
    dataset = Dataset(name="oggm-mirror", title="OGGM mirror", source="gs://oggm-mirror",
                      mount_path="/data/oggm-mirror", endpoint=gcs.url)
    live = mounts.mount_datasets([dataset], str(tmp_path / "mounts"))
    try:
        from oggmhub.session.datasets import localize_env

        env = localize_env({"OGGM_DOWNLOAD_CACHE": "/data/oggm-mirror", "OGGM_DOWNLOAD_CACHE_RO": "1",
                            "OGGM_EXTRACT_DIR": str(tmp_path / "extract")}, [dataset], str(tmp_path / "mounts"))
        home = tmp_path / "home"
        home.mkdir()
        run_env = {**os.environ, **env, "HOME": str(home), "OGGM_WORKDIR": str(tmp_path / "work")}
        result = subprocess.run([sys.executable, "-c", OGGM_SCRIPT, OGGM_URL], capture_output=True, text=True,
                                env=run_env, timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]
        out = json.loads(result.stdout.strip().splitlines()[-1])
        assert out["cache"] == live[0].mountpoint and out["ro"] is True
        assert out["path"] == os.path.join(live[0].mountpoint, name)
        assert out["text"].startswith("RGIId,Area")
        # a file not in the mirror: OGGM would have to download it, and may not
        result = subprocess.run([sys.executable, "-c", OGGM_SCRIPT, OGGM_URL + ".missing"], capture_output=True,
                                text=True, env=run_env, timeout=120)
        assert result.returncode != 0 and "NoInternetException" in result.stderr
    finally:
        mounts.unmount_datasets(live)


def test_a_folder_without_oggms_layout_is_refused_and_nothing_is_copied(tmp_path):
    wrong = tmp_path / "not-a-cache"
    (wrong / "rgi").mkdir(parents=True)
    (wrong / "rgi" / "outlines.shp").write_bytes(b"x")
    (wrong / "README.txt").write_text("hello")
    dest = tmp_path / "mirror"
    cli = [sys.executable, "-m", "oggmhub", "datasets", "mirror", str(dest), "--tree", str(wrong)]
    result = subprocess.run(cli, capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 1
    assert "not laid out as OGGM's download cache" in result.stderr
    assert "README.txt, rgi" in result.stderr and "<host>/<path>" in result.stderr
    assert "Nothing was copied" in result.stderr
    assert not dest.exists() or not any(dest.rglob("*"))
    bad_zip = tmp_path / "oggm-sample-data-main.zip"
    bad_zip.write_bytes(b"PK")
    with pytest.raises(ValueError, match="not named oggm-sample-data-<40-hex commit>.zip"):
        mirror.mirror_tree(str(bad_zip), *mirror.destination(str(dest)), log=lambda *_: None)


def test_the_sample_data_zip_lands_where_oggm_looks(tmp_path):
    sys.path.insert(0, os.path.dirname(__file__))
    from support.local_hub import SAMPLE_COMMIT, sample_zip

    zip_path = sample_zip()  # skips, saying so, when ../shared/data is absent
    dest = tmp_path / "mirror"
    cli = [sys.executable, "-m", "oggmhub", "datasets", "mirror", str(dest), "--tree", zip_path]
    result = subprocess.run(cli, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    target = dest / "github.com" / "OGGM" / "oggm-sample-data" / "archive" / f"{SAMPLE_COMMIT}.zip"
    assert target.stat().st_size == os.path.getsize(zip_path)
    again = subprocess.run(cli, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert "0 copied, 1 already there" in again.stdout


@pytest.mark.skipif(not mounts.fuse_available()[0], reason="FUSE unavailable on this machine")
def test_a_server_with_download_cache_layout_appears_where_oggm_looks(provider, tmp_path):
    # as the shipped catalog mounts OGGM's server: at the cache folder, the server's files
    # at <host>/<path> of their URLs (the port dropped, as OGGM does)
    dataset = Dataset(name="oggm-mirror", title="OGGM server", source=f"{provider}/~oggm/",
                      mount_path="/data/oggm-mirror", layout="download-cache")
    live = mounts.mount_datasets([dataset], str(tmp_path / "mounts"))
    try:
        top = live[0].mountpoint
        assert os.listdir(top) == ["127.0.0.1"] and os.listdir(os.path.join(top, "127.0.0.1")) == ["~oggm"]
        url = f"{provider}/~oggm/climate/cru.nc"
        with open(os.path.join(top, mirror.cache_name(url)), "rb") as f:
            assert f.read() == bytes(range(256)) * 100
        assert not os.path.exists(os.path.join(top, "github.com"))  # nothing beside the server
        with pytest.raises(OSError):
            open(os.path.join(top, "127.0.0.1", "x.txt"), "w")
        if importlib.util.find_spec("oggm") is not None:  # OGGM itself finds it there, offline
            env = {**os.environ, "HOME": str(tmp_path), "OGGM_DOWNLOAD_CACHE": top, "OGGM_DOWNLOAD_CACHE_RO": "1",
                   "OGGM_EXTRACT_DIR": str(tmp_path / "extract")}
            result = subprocess.run([sys.executable, "-c", OGGM_SCRIPT, f"{provider}/~oggm/README.txt"],
                                    capture_output=True, text=True, env=env, timeout=120)
            assert result.returncode == 0, result.stderr[-2000:]
            assert json.loads(result.stdout.strip().splitlines()[-1])["text"] == "hello\n"
    finally:
        mounts.unmount_datasets(live)


def _catalog_with(tmp_path, name, **changes):
    import yaml

    catalog = yaml.safe_load(open(os.path.join(REPO, "hub_config", "catalog.yaml")))
    entry = catalog["datasets"]["oggm-mirror"]
    entry.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del entry[key]
    path = tmp_path / name
    path.write_text(yaml.safe_dump(catalog, sort_keys=False))
    return str(path)


def test_a_mirror_the_catalog_would_hide_is_refused_and_catalog_check_warns(tmp_path):
    from support.local_hub import SAMPLE_COMMIT, sample_zip

    zip_path = sample_zip()
    dest = tmp_path / "mirror"
    # the shipped catalog's mount path before this fix: below OGGM's cache folder
    hiding = _catalog_with(tmp_path, "hiding.yaml", source=str(dest), layout=None,
                           mount_path="/data/oggm-mirror/cluster.klima.uni-bremen.de/~oggm")
    for target in (str(dest), "oggm-mirror"):  # a folder the catalog names, or the dataset's name
        cli = [sys.executable, "-m", "oggmhub", "datasets", "mirror", target, "--tree", zip_path, "--catalog", hiding]
        result = subprocess.run(cli, capture_output=True, text=True, cwd=REPO, timeout=120)
        assert result.returncode == 1, result.stdout
        assert "dataset 'oggm-mirror' is mounted at /data/oggm-mirror/cluster.klima.uni-bremen.de/~oggm" in result.stderr
        assert f"OGGM_DOWNLOAD_CACHE=/data/oggm-mirror: github.com/OGGM/oggm-sample-data/archive/{SAMPLE_COMMIT}.zip" in result.stderr
        assert "Set the dataset's mount_path: /data/oggm-mirror" in result.stderr and "Nothing was copied" in result.stderr
        assert not dest.exists()
    check = [sys.executable, "-m", "oggmhub", "catalog", "check"]
    result = subprocess.run([*check, hiding], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 0  # a warning, not an error: the catalog is valid
    assert "datasets.oggm-mirror.mount_path: warning: the mount path /data/oggm-mirror/cluster.klima.uni-bremen.de/~oggm " \
           f"hides part of the mirror {dest}" in result.stderr
    assert "set mount_path: /data/oggm-mirror" in result.stderr
    # the server mounted at the cache folder without its layout: its files are not at <host>/<path>
    flat = _catalog_with(tmp_path, "flat.yaml", layout=None)
    result = subprocess.run([*check, flat], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert "https://cluster.klima.uni-bremen.de/~oggm/ is shown at /data/oggm-mirror, but" in result.stderr
    assert "set layout: download-cache" in result.stderr
    # the shipped catalog, and the README's change (the source only): no warning, and the mirror fills
    good = _catalog_with(tmp_path, "good.yaml", source=str(dest))
    for path in (os.path.join(REPO, "hub_config", "catalog.yaml"), good):
        result = subprocess.run([*check, path], capture_output=True, text=True, cwd=REPO, timeout=60)
        assert result.returncode == 0 and "warning" not in result.stderr, result.stderr
    cli = [sys.executable, "-m", "oggmhub", "datasets", "mirror", str(dest), "--tree", zip_path, "--catalog", good]
    result = subprocess.run(cli, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (dest / "github.com" / "OGGM" / "oggm-sample-data" / "archive" / f"{SAMPLE_COMMIT}.zip").is_file()
