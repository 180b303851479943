"""Launch links' address (L13) and what a logged-out visitor's resolve shows, without a hub."""

from urllib.parse import urlparse

from oggmhub.launch import snippets
from oggmhub.launch.resolution import Resolution
from oggmhub.session.datasets import Dataset


def test_links_come_from_public_url_or_are_relative():
    assert snippets.public_hub_url(urlparse("https://hub.example.org/"), "/hub/") == "https://hub.example.org/hub/"
    assert snippets.public_hub_url("https://hub.example.org:8443/x/", "/x/hub/") == "https://hub.example.org:8443/x/hub/"
    for unset in ("", None, urlparse("")):
        assert snippets.public_hub_url(unset, "/hub/") == "/hub/"
    relative = snippets.snippets("/hub/", "10.5194/gmd-12-909-2019")
    assert relative["link"] == "/hub/launch?dataset=10.5194/gmd-12-909-2019"
    assert "(/hub/launch/badge.svg)" in relative["markdown"]
    assert snippets.bookmarklet("/hub/").startswith('javascript:(function(){var h="/hub/";')


class _Catalog:
    class _Env:
        display_name = "OGGM"

    environments = {"oggm": _Env()}


def test_a_visitor_sees_no_source_mount_path_or_local_alias():
    dataset = Dataset(name="mirror", title="Mirror", source="/srv/private/mirror", mount_path="/data/mirror",
                      doi="10.1/x", aliases=("/srv/private/mirror-old", "file:///srv/m", "doi:10.1/x", "https://z.org/r/1"))
    resolution = Resolution(dataset, ("oggm",), ("oggm",))
    member = resolution.to_json(_Catalog())
    assert member["dataset"]["source"] == "/srv/private/mirror" and member["mount_path"] == "/data/mirror"
    visitor = resolution.to_json(_Catalog(), visitor=True)
    assert "source" not in visitor["dataset"] and "mount_path" not in visitor
    assert visitor["dataset"]["aliases"] == ["doi:10.1/x", "https://z.org/r/1"]
    assert "/srv" not in repr(visitor)
    # an on-demand dataset's source is the public URL the visitor asked for
    on_demand = Resolution(Dataset(name="src-1", title="x", source="https://data.example.org/p", mount_path="/data/src-1"),
                           ("oggm",), ("oggm",), on_demand=True)
    assert on_demand.to_json(_Catalog(), visitor=True)["dataset"]["source"] == "https://data.example.org/p"
