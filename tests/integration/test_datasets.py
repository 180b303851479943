"""Datasets: the catalog entries, the session's environment, and the notebook API.

The API tests read a real GCS emulator (fake-gcs-server on 127.0.0.1) and count the
requests it serves, to prove a second read comes from the local cache.
"""

import errno
import json
import os
import subprocess
import sys

import pytest
import yaml

from oggmhub.catalog import CatalogError, Dataset, load_catalog
from oggmhub.session import datasets
from oggmhub.session.readonly import (
    WRITE_METHODS,
    DatasetPathError,
    DatasetReadOnlyError,
)
from support.paths import CATALOG, REPO

FILES = {
    "glaciers/rgi/outlines.csv": b"id,area\nRGI60-11.00897,8.0\n",
    "glaciers/rgi/README.txt": b"RGI 6.0\n",
    "glaciers/climate/cru.nc": bytes(range(256)) * 4096,  # 1 MiB
    "glaciers/top.txt": b"top\n",
}


# --- the catalog ------------------------------------------------------------------


def good():
    return yaml.safe_load(CATALOG.read_text())


def problems_of(tmp_path, data):
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(CatalogError) as info:
        load_catalog(str(path))
    return info.value.problems


def test_shipped_catalog_builds_dataset_objects(catalog):
    mirror = catalog.datasets["oggm-mirror"]
    assert isinstance(mirror, Dataset)
    # OGGM's public server (no bucket that exists nowhere), where OGGM's cache looks for it
    assert mirror.source == "https://cluster.klima.uni-bremen.de/~oggm/"
    # mounted as OGGM's download cache: the server at <host>/<path>, a mirror of it as is
    assert mirror.mount_path == "/data/oggm-mirror" and mirror.layout == "download-cache"
    assert datasets.source_folder(mirror) == "cluster.klima.uni-bremen.de/~oggm"
    assert mirror.doi == "10.5194/gmd-12-909-2019" and mirror.citation and mirror.licence
    assert mirror.credentials == {}
    assert mirror.required is False  # a session starts without it when the server is down
    assert "oggmhub datasets mirror" not in mirror.description  # no admin text for users
    # the oggm environment mounts it, and points OGGM's download cache at it read-only
    oggm = catalog.environments["oggm"]
    assert oggm.datasets == ("oggm-mirror",)
    from oggmhub.cli.mirror import cache_name
    url = "https://cluster.klima.uni-bremen.de/~oggm/rgi/rgi62_stats.h5"
    assert os.path.join(oggm.env["OGGM_DOWNLOAD_CACHE"], cache_name(url)) == \
        os.path.join(mirror.mount_path, datasets.source_folder(mirror), "rgi/rgi62_stats.h5")
    assert oggm.env["OGGM_DOWNLOAD_CACHE_RO"] == "1"
    # the local backend moves the cache folder above the mount under the mount root too
    env = datasets.localize_env(oggm.env, [mirror], "/srv/m")
    assert env["OGGM_DOWNLOAD_CACHE"] == "/srv/m/data/oggm-mirror"


def test_defaults_and_every_field(tmp_path):
    data = good()
    data["datasets"]["era5"] = {
        "title": "ERA5 subset", "source": "s3://era5-subset/monthly", "licence": "CC-BY-4.0",
        "credentials": {"secret": "era5-reader", "key": "s3.json"}, "endpoint": "http://minio:9000/",
    }
    data["datasets"]["local"] = {"title": "Local", "source": "/srv/data/local"}
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(data))
    catalog = load_catalog(str(path))
    era5 = catalog.datasets["era5"]
    assert era5.mount_path == "/data/era5"
    assert era5.credentials == {"secret": "era5-reader", "key": "s3.json"}
    assert era5.endpoint == "http://minio:9000"
    assert catalog.datasets["local"].source == "/srv/data/local"


@pytest.mark.parametrize(
    "dataset, expected",
    [
        ({"token": "ya29.SECRETVALUE"}, "datasets.d.token: not allowed: credentials are referenced, never written in the catalog"),
        ({"aws_secret_access_key": "SECRETVALUE"}, "datasets.d.aws_secret_access_key: not allowed: credentials are referenced"),
        ({"credentials": {"private_key": "SECRETVALUE"}}, "datasets.d.credentials.private_key: not allowed: credentials are referenced"),
        ({"credentials": {"secret": "a", "env": "B"}}, "datasets.d.credentials: give exactly one of secret, env or ambient (found: secret, env)"),
        ({"credentials": {"key": "k"}}, "datasets.d.credentials.key: key names an entry of a Kubernetes secret: give secret: NAME too"),
        ({"credentials": {"secret": "SECRET/VALUE+abc"}}, "datasets.d.credentials.secret: 'SECRET/VALUE+abc' is invalid: secret names a Kubernetes secret"),
        ({"credentials": {"ambient": False}}, "datasets.d.credentials.ambient: False is invalid: ambient: true uses"),
        ({"source": "/srv/x", "credentials": {"env": "TOKEN"}}, "datasets.d.credentials: a local source needs no credentials"),
        ({"source": "ftp://host/x"}, "datasets.d.source: 'ftp://host/x' is invalid: a source is gs://BUCKET"),
        ({"mount_path": "/usr/share/x"}, "datasets.d.mount_path: '/usr/share/x' is invalid: a mount path is an absolute path"),
        ({"mount_path": "/data/../etc"}, "datasets.d.mount_path: '/data/../etc' is invalid"),
        ({"mount_path": "/data/oggm-mirror/cluster.klima.uni-bremen.de/~oggm/inner"}, "datasets.d.mount_path: /data/oggm-mirror/cluster.klima.uni-bremen.de/~oggm/inner clashes with dataset 'oggm-mirror'"),
        ({"layout": "mirror"}, "datasets.d.layout: 'mirror' is invalid: layout is plain"),
        ({"required": "yes"}, "datasets.d.required: 'yes' is invalid: required is true (a spawn stops when the source cannot be reached"),
        ({"mount_path": "/~data/x"}, "datasets.d.mount_path: '/~data/x' is invalid"),
        ({"doi": "https://doi.org/10.1/x"}, "datasets.d.doi: 'https://doi.org/10.1/x' is invalid: a DOI looks like"),
        ({"source": "https://example.org/data", "endpoint": "http://127.0.0.1:1"}, "datasets.d.endpoint: an endpoint applies to gs:// and s3:// sources only"),
        ({"license": "MIT"}, "datasets.d.license: unknown field 'license' (did you mean 'licence'?)"),
        ({"environments": ["oggm"]}, "datasets.d.environments: unknown field 'environments'"),
    ],
)
def test_dataset_errors_name_file_line_entry_and_field(tmp_path, dataset, expected):
    data = good()
    data["datasets"]["d"] = {"title": "D", "source": "gs://some-bucket", **dataset}
    problems = problems_of(tmp_path, data)
    assert any(expected in p for p in problems), problems
    located = next(p for p in problems if expected in p)
    assert located.startswith(str(tmp_path / "catalog.yaml") + ":")
    assert "SECRETVALUE" not in "\n".join(problems)  # never echo an inline secret


def test_cli_lists_datasets_and_their_environments():
    result = subprocess.run([sys.executable, "-m", "oggmhub", "datasets", "list", "--catalog", str(CATALOG)],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "oggm-mirror: OGGM data server" in result.stdout
    assert "mounted at  /data/oggm-mirror in: oggm" in result.stdout


# --- what the spawner passes to the session ----------------------------------------


def test_session_env_round_trips_and_holds_references_only():
    secret = Dataset(name="era5", title="ERA5", source="gs://era5", mount_path="/data/era5",
                     credentials={"secret": "era5-reader"})
    mirror = load_catalog(str(CATALOG)).datasets["oggm-mirror"]
    env = datasets.session_env([mirror, secret])
    assert env["OGGMHUB_DATASETS"] == "oggm-mirror,era5"
    assert datasets.session_datasets(env) == [mirror, secret]
    assert json.loads(env["OGGMHUB_DATASETS_JSON"])[1]["credentials"] == {"secret": "era5-reader"}
    assert datasets.list_datasets({}) == []  # outside a session


def test_local_backend_paths_are_rewritten_under_its_mount_root(tmp_path):
    mirror = load_catalog(str(CATALOG)).datasets["oggm-mirror"]
    env = datasets.session_env([mirror], mount_root=str(tmp_path))
    (entry,) = json.loads(env["OGGMHUB_DATASETS_JSON"])
    assert entry["mount_path"] == f"{tmp_path}/data/oggm-mirror"
    oggm_env = {"OGGM_DOWNLOAD_CACHE": "/data/oggm-mirror", "OGGM_EXTRACT_DIR": "/tmp/oggm-extract",
                "OTHER": "/data/oggm-mirror-not-it"}
    assert datasets.localize_env(oggm_env, [mirror], str(tmp_path)) == {
        "OGGM_DOWNLOAD_CACHE": f"{tmp_path}/data/oggm-mirror",
        "OGGM_EXTRACT_DIR": "/tmp/oggm-extract",
        "OTHER": "/data/oggm-mirror-not-it",
    }


def test_credentials_are_resolved_from_the_environment_only():
    by_env = Dataset(name="a-b", title="A", source="gs://a", mount_path="/data/a", credentials={"env": "A_TOKEN"})
    by_secret = Dataset(name="a-b", title="A", source="gs://a", mount_path="/data/a", credentials={"secret": "s"})
    public = Dataset(name="p", title="P", source="gs://p", mount_path="/data/p")
    assert datasets.resolve_credentials(public, {}) is None
    assert datasets.resolve_credentials(by_env, {"A_TOKEN": "/keys/a.json"}) == "/keys/a.json"
    assert datasets.resolve_credentials(by_secret, {"OGGMHUB_DATASET_CREDENTIALS_A_B": "{}"}) == "{}"
    with pytest.raises(datasets.DatasetError, match=r"dataset 'a-b': its credentials, \$A_TOKEN, are not set"):
        datasets.resolve_credentials(by_env, {})
    with pytest.raises(datasets.DatasetError, match="Kubernetes secret 's'"):
        datasets.open_dataset(by_secret, environ={})  # not mounted either: nothing to fall back to


# --- the notebook API against a GCS emulator ---------------------------------------


GCS_BUCKETS = {"oggm-data": FILES}  # conftest's gcs fixture fills them


@pytest.fixture
def session(gcs, tmp_path, monkeypatch):
    """A notebook session with one dataset (the bucket's glaciers/ folder)."""
    dataset = Dataset(name="glaciers", title="Glaciers", source="gs://oggm-data/glaciers",
                      mount_path=str(tmp_path / "not-mounted"), endpoint=gcs.url)
    for key, value in datasets.session_env([dataset]).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("OGGMHUB_SCRATCH", str(tmp_path / "scratch"))
    return dataset


def test_the_api_lists_opens_and_reads(session):
    assert [d.name for d in datasets.list()] == ["glaciers"]
    assert datasets.get("glaciers").title == "Glaciers"
    fs = datasets.open("glaciers")
    assert sorted(fs.ls("", detail=False)) == ["climate", "rgi", "top.txt"]
    assert sorted(fs.find("")) == sorted(k[len("glaciers/"):] for k in FILES)
    assert fs.cat("rgi/outlines.csv") == FILES["glaciers/rgi/outlines.csv"]
    with fs.open("climate/cru.nc") as f:
        f.seek(1000)
        assert f.read(10) == FILES["glaciers/climate/cru.nc"][1000:1010]
    assert datasets.path("glaciers") is None  # not mounted in this session
    with pytest.raises(datasets.DatasetError, match=r"dataset 'era5': not one of this session's datasets \(glaciers\)"):
        datasets.open("era5")


def write_attempts(fs, tmp_path):
    local = tmp_path / "local.txt"
    local.write_bytes(b"x")
    attempts = {name: (lambda name=name: getattr(fs, name)("rgi/outlines.csv", "rgi/copy.csv")) for name in WRITE_METHODS}
    attempts.update({
        "put": lambda: fs.put(str(local), "rgi/new.txt"),
        "put_file": lambda: fs.put_file(str(local), "rgi/new.txt"),
        "open wb": lambda: fs.open("rgi/new.txt", "wb"),
        "open ab": lambda: fs.open("rgi/outlines.csv", "ab"),
        "open r+b": lambda: fs.open("rgi/outlines.csv", "r+b"),
        "open w": lambda: fs.open("rgi/new.txt", "w"),
        "mapper": lambda: fs.get_mapper("rgi").__setitem__("new.txt", b"x"),
        "mapper del": lambda: fs.get_mapper("rgi").__delitem__("outlines.csv"),
        "transaction": lambda: fs.transaction,
        # the filesystem underneath is not handed out writable either (issue 14)
        "underlying pipe": lambda: fs.fs.pipe(fs._join("rgi/new.txt"), b"x"),
        "underlying open wb": lambda: fs.fs.open(fs._join("rgi/new.txt"), "wb"),
        "underlying rm": lambda: fs.fs.rm(fs._join("rgi/outlines.csv")),
        "underlying mapper": lambda: fs.fs.get_mapper(fs._join("rgi")),
        "nested fs": lambda: fs.fs.fs,
        "constructor args": lambda: [a for a in fs.storage_args if hasattr(a, "ls")][0].pipe(fs._join("x"), b"x"),
    })
    return attempts


def test_every_kind_of_write_is_refused_and_the_bucket_is_unchanged(session, gcs, tmp_path):
    fs = datasets.open("glaciers")
    before = gcs.filesystem().find("oggm-data", detail=True)
    mark = gcs.mark()
    for name, attempt in write_attempts(fs, tmp_path).items():
        with pytest.raises((PermissionError, KeyError)) as info:
            attempt()
        # fsspec's mapper turns any error of a delete into KeyError; the cause is ours
        error = info.value.__cause__ if isinstance(info.value, KeyError) else info.value
        assert isinstance(error, DatasetReadOnlyError), name
        assert error.errno == errno.EROFS, name
        assert "dataset 'glaciers' is read-only" in str(error), name
    assert gcs.writes(mark) == []
    after = gcs.filesystem().find("oggm-data", detail=True)
    assert {k: v["md5Hash"] for k, v in after.items()} == {k: v["md5Hash"] for k, v in before.items()}


@pytest.mark.parametrize("cache", ["simplecache", "blockcache"])
def test_a_second_read_is_served_from_the_cache_without_a_request(session, gcs, tmp_path, cache):
    fs = datasets.open("glaciers", cache=cache)
    mark = gcs.mark()
    assert fs.cat("climate/cru.nc") == FILES["glaciers/climate/cru.nc"]
    assert any("cru.nc" in path for _, path, _ in gcs.requests(mark))
    mark = gcs.mark()
    again = datasets.open("glaciers", cache=cache)  # a new handle, as a new notebook cell would
    assert again.cat("climate/cru.nc") == FILES["glaciers/climate/cru.nc"]
    with again.open("climate/cru.nc") as f:
        assert f.read() == FILES["glaciers/climate/cru.nc"]
    assert gcs.requests(mark) == []
    # the cache lives on the session's scratch space, one folder per dataset
    assert os.listdir(tmp_path / "scratch" / "datasets-cache" / "glaciers")


def test_a_new_process_reads_the_cached_copy_without_a_request(session, gcs, tmp_path):
    assert datasets.open("glaciers").cat("rgi/README.txt") == FILES["glaciers/rgi/README.txt"]
    mark = gcs.mark()
    code = ("import oggmhub.session.datasets as d; f = d.open('glaciers'); "
            "assert f.open('rgi/README.txt').read() == b'RGI 6.0\\n'")
    subprocess.run([sys.executable, "-c", code], check=True, env=os.environ.copy(), cwd=REPO)
    assert gcs.requests(mark) == []


def test_no_cache_reads_the_bucket_every_time(session, gcs):
    fs = datasets.open("glaciers", cache="none")
    fs.cat("top.txt")
    mark = gcs.mark()
    assert fs.cat("top.txt") == b"top\n"
    assert len(gcs.requests(mark)) == 1
    with pytest.raises(datasets.DatasetError, match="unknown cache 'disk'; choose from: simplecache, blockcache, none"):
        datasets.open("glaciers", cache="disk")


def test_a_local_folder_dataset_is_read_only_too(tmp_path):
    folder = tmp_path / "data"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "a.txt").write_text("a")
    dataset = Dataset(name="local", title="Local", source=str(folder), mount_path="/data/local")
    fs = datasets.open_dataset(dataset, cache_dir=str(tmp_path / "cache"))
    assert fs.cat("sub/a.txt") == b"a"
    for name, attempt in write_attempts(fs, tmp_path).items():
        with pytest.raises((DatasetReadOnlyError, KeyError)):
            attempt()
    assert sorted(os.listdir(folder / "sub")) == ["a.txt"] and not (tmp_path / "cache").exists()


# --- K12: no path leaves the dataset --------------------------------------------------

ESCAPES = ["../secret.txt", "../../../../../../etc/hostname", "sub/../../secret.txt", "./../secret.txt",
           "sub/../sub/../../secret.txt"]


def escape_attempts(fs, path):
    """Every read method, each given ``path`` (a list of callables)."""
    return {
        "open": lambda: fs.open(path).read(), "cat": lambda: fs.cat(path), "cat_file": lambda: fs.cat_file(path),
        "read_bytes": lambda: fs.read_bytes(path), "read_text": lambda: fs.read_text(path),
        "head": lambda: fs.head(path), "ls": lambda: fs.ls(os.path.dirname(path) or path),
        "glob": lambda: fs.glob(os.path.dirname(path) + "/*"), "find": lambda: fs.find(os.path.dirname(path)),
        "walk": lambda: list(fs.walk(os.path.dirname(path))), "info": lambda: fs.info(path),
        "exists": lambda: fs.exists(path), "isfile": lambda: fs.isfile(path), "size": lambda: fs.size(path),
        "du": lambda: fs.du(os.path.dirname(path)), "get": lambda: fs.get(path, os.devnull),
        "cat_list": lambda: fs.cat(["sub/a.txt", path]),
    }


@pytest.mark.parametrize("path", ESCAPES)
def test_a_path_leaving_a_local_dataset_is_refused_by_every_method(tmp_path, path):
    """K12: '..' out of the dataset's root reads nothing, whatever the method."""
    folder = tmp_path / "data"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "a.txt").write_text("a")
    (tmp_path / "secret.txt").write_text("outside the dataset")  # beside the dataset's root
    before = sorted(os.listdir(tmp_path))
    dataset = Dataset(name="local", title="Local", source=str(folder), mount_path="/data/local")
    fs = datasets.open_dataset(dataset)
    assert fs.cat("sub/../sub/a.txt") == b"a"  # '..' that stays inside is fine
    for name, attempt in escape_attempts(fs, path).items():
        with pytest.raises(DatasetPathError, match=r"dataset 'local': the path '.*' leaves the dataset"):
            attempt()
    assert sorted(os.listdir(tmp_path)) == before and (tmp_path / "secret.txt").read_text() == "outside the dataset"


def test_the_etc_hostname_escape_is_refused_on_a_bucket_dataset_too(session):
    """K12 as reported: open(...).cat('../../../etc/hostname') on a bucket-backed dataset."""
    fs = datasets.open("glaciers")
    for name, attempt in escape_attempts(fs, "../../../etc/hostname").items():
        with pytest.raises(DatasetPathError, match="dataset 'glaciers': the path '../../../etc"):
            attempt()
    with pytest.raises(DatasetPathError, match=r"dataset 'glaciers': the path '../../../etc/hostname' leaves the dataset"):
        fs.cat("../../../etc/hostname")
    with pytest.raises(DatasetPathError):
        fs.ls("rgi/../..")
