"""``c.Catalog.path``: the one setting naming the catalog, read by every part of a hub.

The spawners' picker, the cohort pages and API, the welcome page and the launch links
all call :func:`catalog_path` with the hub's (or spawner's) traitlets config, so one
line in ``jupyterhub_config.py`` (or the Helm values' ``hub.config``) sets it for all::

    c.Catalog.path = "/usr/local/etc/oggmhub/catalog.yaml"
"""

from __future__ import annotations

from traitlets import Unicode, default
from traitlets.config import Configurable

from oggmhub.catalog import default_catalog_path


class Catalog(Configurable):
    """Where the catalog is (``c.Catalog.*``)."""

    path = Unicode(
        config=True,
        help="""Path of the catalog YAML file (environments, sizes, GPU variants, datasets,
        cohorts), for every part of the hub: spawners, cohorts, the welcome page, launch links.

        Defaults to $OGGMHUB_CATALOG, else the repository's hub_config/catalog.yaml (not
        one relative to the working directory). The file is validated when first read and
        re-read when it changes; a broken edit refuses spawns with the catalog's errors
        rather than starting something half-configured.""",
    )

    @default("path")
    def _default_path(self):
        return default_catalog_path()


def catalog_path(config=None):
    """The catalog's path in a traitlets ``config`` (``c.Catalog.path``, else its default)."""
    return Catalog(config=config).path
