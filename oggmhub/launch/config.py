"""``c.Launch.*``: the hub's settings for launch links."""

from __future__ import annotations

import re

from traitlets import List, Unicode, validate
from traitlets.config import LoggingConfigurable

from oggmhub.catalog_setting import catalog_path


class Launch(LoggingConfigurable):
    """Settings of ``/hub/launch``, ``/hub/datasets`` and ``/hub/api/datasets/resolve``."""

    allowed_sources = List(
        Unicode(),
        config=True,
        help="""Regular expressions of public dataset URLs that may be launched although the
        catalog does not list them (as kubespawner's ``unlisted_choice.validation_regex``).

        A launch link or spawn request naming a source URL that matches one of these
        (the whole URL, e.g. ``https://zenodo\\.org/records/[0-9]+/files/.*``) mounts it
        read-only on demand, with the same rules as catalog datasets, in any environment
        the user may start. Only public http(s)://, gs:// and s3:// URLs without
        credentials qualify. Empty (the default): only catalog datasets can be launched.
        """,
    )

    @validate("allowed_sources")
    def _check_patterns(self, proposal):
        for pattern in proposal["value"]:
            try:
                re.compile(pattern)
            except re.error as e:
                raise ValueError(f"c.Launch.allowed_sources: {pattern!r} is not a regular expression: {e}") from None
        return proposal["value"]

    @property
    def catalog_path(self):
        """The catalog whose datasets launch links resolve for logged-out visitors
        (logged-in users see their spawner's, narrowed by their cohort): ``c.Catalog.path``."""
        return catalog_path(self.config)


def launch_settings(config):
    """The :class:`Launch` settings of a hub's (or spawner's) traitlets ``config``."""
    return Launch(config=config)
