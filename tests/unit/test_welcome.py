"""The welcome page's configuration (c.Welcome) takes effect, and JupyterHub's own login
page (any authenticator: the Kubernetes backend's) shows it too, rendered by JupyterHub's
template loader the way the hub sets it up."""


import jinja2
import pytest
import yaml
from traitlets.config import Config

from oggmhub import hub as oggmhub_hub
from oggmhub.catalog import CatalogError, load_catalog
from oggmhub.welcome import Welcome
from support.paths import CATALOG


def jupyterhub_env(c):
    from jupyterhub.app import JupyterHub

    base = JupyterHub()._template_paths_default()[0]
    loader = jinja2.ChoiceLoader([
        jinja2.PrefixLoader({"templates": jinja2.FileSystemLoader([base])}, "/"),
        jinja2.FileSystemLoader([*c.JupyterHub.template_paths, base]),
    ])
    return jinja2.Environment(loader=loader, autoescape=True)


def render(c, name, **ns):
    vars_ = {k: (v(None) if callable(v) else v) for k, v in c.JupyterHub.template_vars.items()}
    page = dict(base_url="/hub/", static_url=lambda p, **_: f"/hub/static/{p}", prefix="/", user=None,
                services=[], xsrf="x", authenticator_login_url="/hub/login", login_url="/hub/login",
                parsed_scopes={}, expanded_scopes=set(), version_hash="", announcement=None)
    return jupyterhub_env(c).get_template(name).render(**page, **vars_, **ns)


def test_every_option_takes_effect(tmp_path):
    c = Config()
    oggmhub_hub.configure_hub(c, window_check_interval=0)
    catalog = yaml.safe_load(CATALOG.read_text())
    catalog["environments"]["oggm"]["display_name"] = "OGGM (workshop build)"
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(catalog))
    c.Welcome.title = "Glacier Hub <Bremen>"
    c.Welcome.description = "For the glaciology group."
    c.Welcome.logo_url = "https://example.org/logo.png"
    c.Welcome.account_help = "Ask Fabien for an account."
    c.Welcome.contact = "hub@example.org"
    c.Welcome.links = [{"title": "Our wiki", "url": "https://wiki.example.org"}]
    c.Catalog.path = str(path)
    html = render(c, "login.html", authenticator={"request_otp": False})
    assert "<title>Glacier Hub &lt;Bremen&gt;</title>" in " ".join(html.split()).replace("<title> ", "<title>").replace(" </title>", "</title>")
    assert "Glacier Hub &lt;Bremen&gt;" in html and "For the glaciology group." in html
    assert 'src="https://example.org/logo.png"' in html
    assert "Ask Fabien for an account." in html and 'href="mailto:hub@example.org"' in html
    assert 'href="https://wiki.example.org">Our wiki<' in html and 'href="https://docs.oggm.org"' not in html
    assert "OGGM (workshop build)" in html  # from c.Catalog.path's catalog
    assert 'id="login-main"' in html  # JupyterHub's own sign-in form is still there


def test_defaults_list_the_shipped_catalog_without_sign_up_for_other_authenticators():
    c = Config()
    oggmhub_hub.configure_hub(c, window_check_interval=0)
    c.Catalog.path = str(CATALOG)
    html = render(c, "login.html", login_service="GitHub")
    catalog = load_catalog(str(CATALOG))
    for env in catalog.environments.values():
        assert f'data-environment="{env.name}"' in html
    assert 'href="https://doi.org/10.5194/gmd-12-909-2019"' in html
    assert "Accounts are given by the hub's administrators." in html  # no sign-up offered
    assert "Sign in with GitHub" in html


def test_a_broken_catalog_still_shows_the_login_page(tmp_path):
    path = tmp_path / "catalog.yaml"
    path.write_text("version: 1\nenvironments: nope\n")
    with pytest.raises(CatalogError):
        load_catalog(str(path))
    c = Config()
    c.Catalog.path = str(path)
    content = Welcome(config=c).content()
    assert content["environments"] == [] and "not available" in content["problem"]


def test_the_isolation_note_is_shown_when_set(tmp_path):
    c = Config()
    oggmhub_hub.configure_hub(c, window_check_interval=0)
    assert 'id="oggmhub-isolation-note"' not in render(c, "login.html", authenticator={"request_otp": False})
    c.Welcome.isolation_note = "Every user's server runs as the same system account."
    html = render(c, "login.html", authenticator={"request_otp": False})
    assert 'id="oggmhub-isolation-note"' in html and "runs as the same system account." in html
