"""Launch links against a real local hub: every DOI spelling resolves alike, every bad
input gets a 4xx naming what was wrong and starts nothing, a GET never starts a server,
cohorts narrow what a member may launch, and c.Launch.allowed_sources takes effect."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

import pytest
import requests
import yaml

from oggmhub.cohorts.model import now_utc
from support.launch_fixtures import CELLS_DOI, OGGM_DOI, launch_catalog
from support.local_hub import REPO, LocalHub, running_hub

SPELLINGS = [
    OGGM_DOI, OGGM_DOI.upper(), f"doi:{OGGM_DOI}", f"DOI: {OGGM_DOI}", f"https://doi.org/{OGGM_DOI}",
    f"http://dx.doi.org/{OGGM_DOI}", f"https://doi.org/{OGGM_DOI.replace('/', '%2F')}", f"info:doi/{OGGM_DOI}",
    "oggm-mirror", "OGGM-Mirror", "oggm-data", "https://zenodo.org/records/3585097/",
]


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    folder = tmp_path_factory.mktemp("launch-api")
    catalog = launch_catalog(folder / "config")
    with running_hub(folder / "data", catalog=catalog, images_dir=os.path.join(REPO, "images"),
                     env={"OGGMHUB_COHORT_CHECK_INTERVAL": "0"}) as hub:
        yield hub


@pytest.fixture(scope="module")
def ada(hub):
    return hub.new_user("ada")


# where the shipped catalog mounts OGGM's mirror (the test hub's catalog keeps it)
SHIPPED_MIRROR_PATH = yaml.safe_load(open(os.path.join(REPO, "hub_config", "catalog.yaml")).read())[
    "datasets"]["oggm-mirror"]["mount_path"]


def resolve(hub, session, identifier):
    return hub.api(session, "GET", "/datasets/resolve", params={"id": identifier})


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_every_spelling_resolves_to_the_same_dataset(hub, ada, spelling):
    for session in (ada, requests.Session()):  # logged in, and not
        r = resolve(hub, session, spelling)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["dataset"]["name"] == "oggm-mirror" and body["dataset"]["doi"] == OGGM_DOI
        assert body["folder"] == "datasets/oggm-mirror"
        assert [e["name"] for e in body["environments"]] == ["oggm"]
        # no c.JupyterHub.public_url on this hub: a relative link (never one from the Host header)
        assert body["launch_url"] == "/hub/launch?dataset=oggm-mirror"
        if session is ada:
            assert body["mount_path"] == SHIPPED_MIRROR_PATH and body["dataset"]["source"]


def test_logged_out_visitors_see_no_source_or_local_path(hub):
    """A visitor's resolve shows the public catalog facts only: the test hub's mirror is a
    folder on the hub's machine, and its path is nowhere in the answer."""
    config = os.path.dirname(hub.catalog)  # the datasets' folders are in it
    assert os.path.isdir(os.path.join(config, "oggm-mirror"))
    for identifier in ("oggm-mirror", OGGM_DOI, "cell-images"):
        r = requests.get(f"{hub.url}/hub/api/datasets/resolve", params={"id": identifier})
        assert r.status_code == 200, r.text
        body = r.json()
        assert "source" not in body["dataset"] and "mount_path" not in body
        assert config not in r.text and hub.data_dir not in r.text and '"/' not in r.text.replace('"/hub/', "")
        assert body["dataset"]["title"] and body["environments"]
    logged_in = resolve(hub, hub.admin(), "oggm-mirror").json()
    assert logged_in["dataset"]["source"]  # a logged-in user still sees it


def test_a_forged_host_header_never_reaches_a_link(hub, ada):
    """L13: the datasets page, its snippets, the bookmarklet and resolve's launch_url with
    ``Host: evil.example``: no link names evil.example (this hub has no public_url: they are relative)."""
    forged = {"Host": "evil.example"}
    for session in (ada, requests.Session()):
        page = session.get(f"{hub.url}/hub/datasets", headers=forged)
        assert page.status_code == 200 and "oggmhub-dataset" in page.text
        assert "evil.example" not in page.text
        assert 'value="[![Open in oggmhub](/hub/launch/badge.svg)](/hub/launch?dataset=' in page.text.replace("&#34;", '"')
        assert "javascript:" in page.text and "&#34;/hub/&#34;" in page.text  # the bookmarklet's hub
        r = session.get(f"{hub.url}/hub/api/datasets/resolve", params={"id": "oggm-mirror"}, headers=forged)
        assert r.status_code == 200 and "evil.example" not in r.text
        assert r.json()["launch_url"] == "/hub/launch?dataset=oggm-mirror"


def test_a_dataset_of_another_environment_resolves_with_that_environment(hub, ada):
    body = resolve(hub, ada, f"https://doi.org/{CELLS_DOI}").json()
    assert body["dataset"]["name"] == "cell-images" and body["dataset"]["size"] == "12Mi"
    assert body["environments"] == [{"name": "fiji", "display_name": "Fiji", "mounts_by_default": True}]


@pytest.mark.parametrize("identifier, status, message", [
    ("no-such-data", 404, "no dataset available here is identified by name 'no-such-data'; available datasets: oggm-mirror, idc-nlst-ct, idr-nuclei-3d, cell-images"),
    ("10.5281/zenodo.999999", 404, "identified by doi '10.5281/zenodo.999999'"),
    ("doi:10.12/x", 400, "is not a valid DOI: a DOI looks like 10.5281/zenodo.123"),
    ("https://example.org/not-listed", 404, "available datasets: oggm-mirror, idc-nlst-ct, idr-nuclei-3d, cell-images"),
    ("ftp://example.org/data", 400, "use one of the schemes https://, http://, gs://, s3://"),
    ("<script>alert(1)</script>", 400, "is not an identifier oggmhub knows"),
    ("x" * 10_000, 400, "id is 10000 characters long; at most 2048 are allowed"),
], ids=lambda v: str(v)[:40])
def test_bad_identifiers_get_4xx_naming_what_is_allowed(hub, ada, identifier, status, message):
    r = resolve(hub, ada, identifier)
    assert r.status_code == status and message in r.json()["message"], r.text


def server_record(hub, name):
    """What the hub holds about a user's servers (the admin's view, less activity times)."""
    model = hub.api(hub.admin(), "GET", f"/users/{name}").json()
    return {k: v for k, v in model.items() if k not in ("last_activity",)}


BAD_LAUNCHES = [
    ({"dataset": "no-such-data"}, 404, "available datasets: oggm-mirror, idc-nlst-ct, idr-nuclei-3d, cell-images"),
    ({"dataset": "10.1234/nope.1"}, 404, "identified by doi '10.1234/nope.1'"),
    ({"dataset": "doi:bogus"}, 400, "is not a valid DOI"),
    ({}, 400, "parameter 'dataset' is missing"),
    ({"dataset": "oggm-mirror", "env": "fiji"}, 400, "environment 'fiji' cannot mount dataset 'oggm-mirror'; choose one of: oggm"),
    ({"dataset": "oggm-mirror", "env": "nonesuch"}, 400, "environment 'nonesuch' is not an environment you may start"),
    ({"dataset": "oggm-mirror", "size": "huge"}, 400, "size 'huge' is not offered for OGGM; choose one of: small, medium, large"),
    ({"dataset": "oggm-mirror", "path": "../../../etc/passwd"}, 400, "leaves the dataset: '..' is not allowed"),
    ({"dataset": "oggm-mirror", "path": "/etc/passwd"}, 400, "path must be a relative path inside the dataset"),
    ({"dataset": "oggm-mirror", "urlpath": "https://evil.example/"}, 400, "urlpath must be a relative path inside your own server"),
    ({"dataset": "oggm-mirror", "urlpath": "//evil.example/x"}, 400, "urlpath must be a relative path inside your own server"),
    ({"dataset": "oggm-mirror", "urlpath": "../../hub/admin"}, 400, "leaves your own server"),
    ({"dataset": "oggm-mirror", "repo": "javascript:alert(1)"}, 400, "repo must be a git URL"),
    ({"dataset": "oggm-mirror", "branch": "main"}, 400, "branch needs repo"),
    ({"dataset": "oggm-mirror", "next": "https://evil.example/"}, 400, "unknown parameter 'next'"),
    ({"dataset": "oggm-mirror", "path": "a" * 10_000}, 400, "path is 10000 characters long; at most 2048"),
    ({"dataset": "x" * 10_000}, 400, "dataset is 10000 characters long; at most 2048"),
]


@pytest.mark.parametrize("params, status, message", BAD_LAUNCHES, ids=lambda v: str(v)[:50])
def test_bad_launches_get_a_page_naming_the_problem_and_start_nothing(hub, ada, params, status, message):
    before = server_record(hub, "ada")
    for method in ("GET", "POST"):
        if method == "GET":
            r = ada.get(f"{hub.url}/hub/launch", params=params)
        else:
            r = ada.post(f"{hub.url}/hub/launch", data={**params, "action": "start",
                                                          "_xsrf": ada.headers["X-XSRFToken"]})
        assert r.status_code == status, (method, r.status_code, r.text[-2000:])
        assert "This launch link cannot be opened" in r.text and "Nothing was started" in r.text
        assert message.replace("'", "&#39;") in r.text, r.text[-3000:]
    assert server_record(hub, "ada") == before and before["servers"] == {}
    assert not os.path.exists(os.path.join(hub.data_dir, "mounts", "ada"))


def test_a_100000_character_parameter_is_refused_and_starts_nothing(hub, ada):
    huge = "x" * 100_000
    before = server_record(hub, "ada")
    # in a form body it reaches the hub, which names it
    r = ada.post(f"{hub.url}/hub/launch", data={"dataset": huge, "_xsrf": ada.headers["X-XSRFToken"]})
    assert r.status_code == 400 and "dataset is 100000 characters long; at most 2048 are allowed" in r.text
    # in a URL it exceeds what the proxy accepts in a request line: refused before the hub
    for url in (f"{hub.url}/hub/launch?dataset={huge}", f"{hub.url}/hub/api/datasets/resolve?id={huge}"):
        try:
            status = ada.get(url).status_code
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
            status = None  # the proxy reset the connection
        assert status is None or 400 <= status < 500
    assert server_record(hub, "ada") == before and before["servers"] == {}


def test_a_get_only_asks_and_a_post_from_elsewhere_is_refused(hub):
    bob = hub.new_user("bob")
    before = server_record(hub, "bob")
    r = bob.get(f"{hub.url}/hub/launch", params={"dataset": f"https://doi.org/{OGGM_DOI}", "path": "rgi/outlines.csv"})
    assert r.status_code == 200 and 'id="launch-start-button"' in r.text and 'name="_xsrf"' in r.text
    assert "Start OGGM and open it" in r.text and "Opens <code>rgi/outlines.csv</code>" in r.text
    # a form on another site: the hub's cookie, but no _xsrf token
    forged = requests.Session()
    forged.cookies.update(bob.cookies)
    r = forged.post(f"{hub.url}/hub/launch", data={"dataset": "oggm-mirror", "action": "start"})
    assert r.status_code == 403
    assert server_record(hub, "bob") == before and before["servers"] == {}


def test_logged_out_visitors_are_asked_to_log_in_and_come_back(hub):
    r = requests.get(f"{hub.url}/hub/launch", params={"dataset": OGGM_DOI, "path": "rgi"})
    assert r.status_code == 200 and 'id="launch-login-button"' in r.text
    assert "/hub/login?next=%2Fhub%2Flaunch%3Fdataset%3D10.5194%252Fgmd-12-909-2019%26path%3Drgi" in r.text
    assert "/hub/signup?next=" in r.text
    # the datasets page is open to visitors too (the whole catalog; cohorts narrow it after login)
    page = requests.get(f"{hub.url}/hub/datasets")
    assert page.status_code == 200 and "OGGM data server" in page.text and "Cell images" in page.text


def test_the_datasets_page_and_badge(hub, ada):
    page = ada.get(f"{hub.url}/hub/datasets").text
    assert '<dd class="col-sm-10 dataset-size">12Mi</dd>' in page  # the catalog's size, where it gives one
    for text in ("OGGM data server", "Cell images", OGGM_DOI, CELLS_DOI, "CC-BY-4.0", "Maussion",
                 "Open in oggmhub", "javascript:", f"/hub/launch?dataset={OGGM_DOI}"):
        assert text in page, text
    r = requests.get(f"{hub.url}/hub/launch/badge.svg")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("image/svg+xml") and "<svg" in r.text


IMAGING = [("10.1148/rg.230180", "idc-nlst-ct", "slicer", "3D Slicer", "158M", "gs://idc-open-data/"),
           ("10.1038/nmeth.4326", "idr-nuclei-3d", "fiji", "Fiji", "70M", "s3://idr/zarr/v0.4/")]


def test_the_shipped_imaging_archives_resolve_launch_and_are_listed(hub, ada):
    """The catalog's IDC DICOM series (Slicer) and IDR OME-Zarr image (Fiji): launch links by
    DOI pick their environment, and the datasets page shows title, DOI, licence and size."""
    page = ada.get(f"{hub.url}/hub/datasets").text
    for doi, name, env, display, size, source in IMAGING:
        body = resolve(hub, ada, f"https://doi.org/{doi}").json()
        assert body["dataset"]["name"] == name and body["dataset"]["size"] == size
        assert body["dataset"]["source"].startswith(source) and body["dataset"]["licence"].startswith("CC BY 4.0")
        assert body["environments"][0] == {"name": env, "display_name": display, "mounts_by_default": True}
        assert body["mount_path"] == f"/data/{name}"
        r = ada.get(f"{hub.url}/hub/launch", params={"dataset": f"doi:{doi}"})
        assert r.status_code == 200 and f"Start {display} and open it" in r.text, r.text[-2000:]
        for text in (body["dataset"]["title"].replace("'", "&#39;").split(":")[0], doi, f"/hub/launch?dataset={doi}",
                     f'<dd class="col-sm-10 dataset-size">{size}</dd>'):
            assert text in page, text
    assert page.count("CC BY 4.0") >= 2 and "Fedorov" in page and "Williams" in page
    assert server_record(hub, "ada")["servers"] == {}  # asking never starts anything


def test_a_cohort_member_sees_and_launches_only_what_the_cohort_allows(hub):
    token = hub.api(hub.admin(), "POST", "/users/admin/tokens", json={"note": "launch"}).json()["token"]
    now = now_utc()
    out = subprocess.run(
        [sys.executable, "-m", "oggmhub", "cohort", "create", "microscopy", "--env", "fiji",
         "--start", (now - timedelta(hours=1)).isoformat(), "--end", (now + timedelta(days=1)).isoformat(),
         "--hub", hub.url, "--token", token], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr
    code = out.stdout.split("join code: ")[1].split()[0]
    s = requests.Session()
    s.get(f"{hub.url}/hub/signup")
    password = "ice-core-2026-x"
    s.post(f"{hub.url}/hub/signup", data={"username": "mo", "signup_password": password,
                                          "signup_password_confirmation": password, "join_code": code,
                                          "_xsrf": s.cookies.get("_xsrf", "")}).raise_for_status()
    mo = hub.login("mo", password)
    page = mo.get(f"{hub.url}/hub/datasets").text
    assert "Cell images" in page and "OGGM data server" not in page
    r = resolve(hub, mo, OGGM_DOI)
    assert r.status_code == 403 and "mounted by no environment you may start; available datasets: idr-nuclei-3d, cell-images" in r.json()["message"]
    r = mo.get(f"{hub.url}/hub/launch", params={"dataset": "oggm-mirror"})
    assert r.status_code == 403 and "cell-images" in r.text
    r = mo.post(f"{hub.url}/hub/launch", data={"dataset": "oggm-mirror", "_xsrf": mo.headers["X-XSRFToken"]})
    assert r.status_code == 403
    assert resolve(hub, mo, CELLS_DOI).json()["environments"][0]["name"] == "fiji"
    assert server_record(hub, "mo")["servers"] == {}


def test_allowed_sources_takes_effect(tmp_path):
    from oggmhub.launch.config import Launch

    with pytest.raises(Exception, match="is not a regular expression"):
        Launch(allowed_sources=["https://zenodo.org/records/(["])
    catalog = launch_catalog(tmp_path / "config")
    config = tmp_path / "jupyterhub_config.py"
    hub = LocalHub(tmp_path / "data", catalog=catalog, config=str(config), idle_timeout=0,
                   images_dir=os.path.join(REPO, "images"), env={"OGGMHUB_COHORT_CHECK_INTERVAL": "0"})
    config.write_text(  # also: links from c.JupyterHub.public_url (L13)
        f"c = get_config()\nload_subconfig({os.path.join(REPO, 'hub_config', 'jupyterhub_config.py')!r})\n"
        "c.Launch.allowed_sources = [r'https://data\\.example\\.org/public/.+']\n"
        f"c.JupyterHub.public_url = {hub.url + '/'!r}\n")
    hub.start()
    try:
        forged = {"Host": "evil.example"}
        r = requests.get(f"{hub.url}/hub/api/datasets/resolve", params={"id": "oggm-mirror"}, headers=forged)
        assert r.json()["launch_url"] == f"{hub.url}/hub/launch?dataset=oggm-mirror"
        page = requests.get(f"{hub.url}/hub/datasets", headers=forged).text
        assert "evil.example" not in page and f"{hub.url}/hub/launch?dataset=" in page
        assert "datasets-relative-links" not in page
        cy = hub.new_user("cy")
        body = resolve(hub, cy, "https://DATA.example.org/public/glaciers/").json()
        assert body["on_demand"] is True and body["dataset"]["source"] == "https://data.example.org/public/glaciers"
        assert body["dataset"]["name"].startswith("src-") and body["mount_path"] == f"/data/{body['dataset']['name']}"
        # any environment may mount it; the default first
        assert [e["name"] for e in body["environments"]][0] == "oggm"
        for url in ("https://data.example.org/private/x", "https://user:pw@data.example.org/public/x"):
            assert resolve(hub, cy, url).status_code == 404
        page = cy.get(f"{hub.url}/hub/launch", params={"dataset": "https://data.example.org/public/glaciers"})
        assert page.status_code == 200 and "on demand from" in page.text
    finally:
        hub.stop(servers=True)
