"""The hub's welcome: what a visitor sees at ``/`` and on the login page, on both backends.

The hub's name, a short description, the environments offered and the datasets (from
the catalog, ``c.Catalog.path``), how to get an account, and links: text, logo and links
are configured the JupyterHub way, never by editing templates::

    c.Welcome.title = "OGGM Hub"
    c.Welcome.description = "JupyterLab with OGGM and its data, for glaciologists."
    c.Welcome.logo_url = "https://oggm.org/img/logo.png"
    c.Welcome.links = [{"title": "OGGM docs", "url": "https://docs.oggm.org"}]

:func:`configure` (called by :func:`oggmhub.hub.configure_hub`) passes the page's content
to JupyterHub's templates as ``oggmhub_welcome``; ``templates/login.html`` (JupyterHub's
login, any authenticator) and ``templates/oggmhub-native-login.html`` (NativeAuthenticator's)
show it beside the sign-in form.
"""

from __future__ import annotations

from traitlets import Dict, List, Unicode
from traitlets.config import LoggingConfigurable

from oggmhub.catalog import CatalogError, cached_catalog
from oggmhub.catalog_setting import catalog_path

DEFAULT_LINKS = [
    {"title": "OGGM documentation", "url": "https://docs.oggm.org"},
    {"title": "OGGM tutorials", "url": "https://tutorials.oggm.org"},
    {"title": "About JupyterLab", "url": "https://jupyterlab.readthedocs.io"},
]


class Welcome(LoggingConfigurable):
    """What the welcome and login pages say about this hub."""

    title = Unicode(
        "OGGM Hub", config=True,
        help="The hub's name, the welcome page's heading (and the browser tab's title).",
    )
    description = Unicode(
        "A JupyterHub for glacier modelling and image analysis: pick a ready-made "
        "environment, get a persistent JupyterLab with the project's datasets mounted "
        "read-only, and scale out with Dask.", config=True,
        help="A short description of the hub, under its name (plain text).",
    )
    logo_url = Unicode(
        "", config=True,
        help="URL of a logo shown beside the hub's name (empty: none).",
    )
    account_help = Unicode(
        "", config=True,
        help="How to get an account, in plain text. Empty: said from the authenticator "
             "(sign-up with approval by an administrator, and join codes for courses, where "
             "the hub offers sign-up).",
    )
    contact = Unicode(
        "", config=True,
        help="Whom to ask (an e-mail address or a URL); shown with the account help.",
    )
    isolation_note = Unicode(
        "", config=True,
        help="A warning about how users are kept apart, shown under the description (plain "
             "text; empty: none). The local hub sets it when every user's server runs as the "
             "same system account (--shared-account): users can then read each other's files.",
    )
    links = List(
        Dict(), default_value=DEFAULT_LINKS, config=True,
        help="Links to documentation, each {'title': ..., 'url': ...}, in order.",
    )
    def content(self, signup=None):
        """The page's content as plain values (for the templates)."""
        environments, datasets, problem = [], [], ""
        try:
            catalog = cached_catalog(catalog_path(self.config))
        except (CatalogError, OSError) as e:  # the login page must still work
            self.log.error("welcome page: cannot read the catalog: %s", e)
            problem = "The list of environments is not available just now."
        else:
            for env in catalog.environments.values():
                environments.append({
                    "name": env.name, "title": env.display_name, "description": env.description,
                    "datasets": [catalog.datasets[d].title for d in env.datasets if d in catalog.datasets],
                    "sizes": [s.display_name for s in env.sizes.values()],
                    "gpus": bool(env.gpus),
                })
            for d in catalog.datasets.values():
                datasets.append({
                    "name": d.name, "title": d.title, "description": d.description,
                    "licence": d.licence, "citation": d.citation,
                    "doi": d.doi, "doi_url": f"https://doi.org/{d.doi}" if d.doi else "",
                })
        links = [dict(title=str(link.get("title") or link.get("url")), url=str(link["url"]))
                 for link in self.links if link.get("url")]
        return {
            "title": self.title, "description": self.description, "logo_url": self.logo_url,
            "account_help": self.account_help, "contact": self.contact, "isolation_note": self.isolation_note,
            "contact_url": self.contact if "://" in self.contact else (f"mailto:{self.contact}" if "@" in self.contact else ""),
            "links": links, "environments": environments, "datasets": datasets, "problem": problem,
        }


def configure(c):
    """Pass the welcome page's content to JupyterHub's templates (``oggmhub_welcome``),
    read from ``c.Welcome`` and the catalog each time a page is shown."""

    def welcome(user):
        return Welcome(config=c).content()

    c.JupyterHub.template_vars = {**c.JupyterHub.get("template_vars", {}), "oggmhub_welcome": welcome}
