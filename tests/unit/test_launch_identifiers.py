"""Identifiers, catalog aliases and launch parameters as pure functions (no hub)."""

import os

import pytest
import yaml

from oggmhub.backends.local.dataset_links import link_datasets
from oggmhub.catalog import CatalogError, load_catalog
from oggmhub.identifiers import IdentifierError, parse
from oggmhub.launch.request import LaunchRequest
from oggmhub.launch.resolution import LaunchError, resolve
from oggmhub.launch.snippets import bookmarklet, snippets
from support.paths import CATALOG


@pytest.mark.parametrize("text", [
    "10.5281/zenodo.123", "10.5281/ZENODO.123", "doi:10.5281/zenodo.123", "DOI:10.5281/zenodo.123",
    "doi: 10.5281/zenodo.123", "https://doi.org/10.5281/zenodo.123", "http://doi.org/10.5281/zenodo.123",
    "http://dx.doi.org/10.5281/zenodo.123", "https://www.doi.org/10.5281/zenodo.123", "doi.org/10.5281/zenodo.123",
    "info:doi/10.5281/zenodo.123", "https://doi.org/10.5281%2Fzenodo.123", "  10.5281/zenodo.123  ",
])
def test_every_doi_spelling_is_the_same_identifier(text):
    assert parse(text) == parse("10.5281/zenodo.123")
    assert parse(text).kind == "doi" and parse(text).value == "10.5281/zenodo.123"


@pytest.mark.parametrize("text, message", [
    ("", "dataset is missing"),
    ("doi:10.1/x", "is not a valid DOI"),
    ("https://doi.org/not-a-doi", "is not a valid DOI"),
    ("file:///etc/passwd", "is not a URL oggmhub can mount"),
    ("javascript:alert(1)", "is not an identifier oggmhub knows"),
    ("../../etc", "is not an identifier oggmhub knows"),
    ("x" * 3000, "dataset is 3000 characters long; at most 2048"),
])
def test_malformed_identifiers_are_refused_naming_what_is_allowed(text, message):
    with pytest.raises(IdentifierError, match=message):
        parse(text)


def write_catalog(tmp_path, **datasets):
    data = yaml.safe_load(CATALOG.read_text())
    for name, fields in datasets.items():
        data["datasets"].setdefault(name, {"title": name, "source": f"gs://bucket-{name}"}).update(fields)
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def test_aliases_resolve_and_bad_or_shared_aliases_are_catalog_errors(tmp_path):
    catalog = load_catalog(write_catalog(tmp_path, **{"oggm-mirror": {"aliases": ["https://zenodo.org/records/1", "doi:10.5281/zenodo.1"]}}))
    for text in ("https://zenodo.org/records/1/", "https://doi.org/10.5281/ZENODO.1", "https://cluster.klima.uni-bremen.de/~oggm/"):
        assert resolve(catalog, text).dataset.name == "oggm-mirror"
    with pytest.raises(CatalogError) as info:
        load_catalog(write_catalog(tmp_path, **{"oggm-mirror": {"aliases": ["ftp://x", "10.5194/gmd-12-909-2019"]},
                                                "era5": {"aliases": ["oggm-mirror"]}}))
    text = str(info.value)
    assert "datasets.oggm-mirror.aliases[0]" in text and "is not a URL oggmhub can mount" in text
    assert "datasets.era5.aliases[0]: 'oggm-mirror' already identifies dataset 'oggm-mirror'" in text


@pytest.mark.parametrize("params, field", [
    ({"dataset": "oggm-mirror", "path": "a/../../b"}, "path"),
    ({"dataset": "oggm-mirror", "path": "C:\\windows"}, "path"),
    ({"dataset": "oggm-mirror", "urlpath": "/hub/admin"}, "urlpath"),
    ({"dataset": "oggm-mirror", "urlpath": "javascript:alert(1)"}, "urlpath"),
    ({"dataset": "oggm-mirror", "repo": "https://x/y", "branch": "../x"}, "branch"),
    ({"dataset": "oggm-mirror", "env": "Not A Name"}, "env"),
])
def test_bad_parameters_name_the_field(params, field):
    with pytest.raises(LaunchError) as info:
        LaunchRequest.from_arguments({k: [v.encode()] for k, v in params.items()})
    assert info.value.field == field and info.value.status_code == 400


def test_where_a_launch_lands(catalog):
    mirror = catalog.datasets["oggm-mirror"]
    req = LaunchRequest.from_arguments({"dataset": [b"oggm-mirror"], "path": [b"./rgi//v6 files/"]})
    assert req.target_url("/user/ann/", mirror) == "/user/ann/lab/tree/datasets/oggm-mirror/rgi/v6%20files"
    req = LaunchRequest.from_arguments({"dataset": [b"oggm-mirror"], "repo": [b"https://github.com/OGGM/tutorials"],
                                        "branch": [b"stable"], "urlpath": [b"lab/tree/tutorials/welcome.ipynb"]})
    assert req.target_url("/user/ann/", mirror) == (
        "/user/ann/git-pull?repo=https%3A%2F%2Fgithub.com%2FOGGM%2Ftutorials&urlpath=lab%2Ftree%2Ftutorials%2Fwelcome.ipynb&branch=stable")


def test_snippets_and_bookmarklet_escape_the_hub_url():
    s = snippets("https://hub.example/hub/", "10.5281/zenodo.1")
    assert s["markdown"] == ("[![Open in oggmhub](https://hub.example/hub/launch/badge.svg)]"
                             "(https://hub.example/hub/launch?dataset=10.5281/zenodo.1)")
    assert 'var h="https://hub.example/hub/\\"x";' in bookmarklet('https://hub.example/hub/"x')


def test_dataset_links_never_replace_a_users_own_files(tmp_path):
    home, mounts = tmp_path / "home", tmp_path / "mounts"
    (home / "datasets" / "mine").mkdir(parents=True)
    (mounts / "a").mkdir(parents=True)
    (mounts / "b").mkdir()
    link_datasets(str(home), {"a": str(mounts / "a"), "mine": str(mounts / "b")})
    assert os.readlink(home / "datasets" / "a") == str(mounts / "a")
    assert (home / "datasets" / "mine").is_dir() and not (home / "datasets" / "mine").is_symlink()
    link_datasets(str(home), {})  # a session without datasets: the links go, the user's folder stays
    assert sorted(os.listdir(home / "datasets")) == ["mine"]
