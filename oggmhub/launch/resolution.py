"""An identifier resolved to a dataset, the environments that may mount it, and where.

Catalog datasets answer to their name, DOI, source URL and aliases. A URL outside the
catalog is refused, naming what is available, unless it matches one of the admin's
``c.Launch.allowed_sources`` patterns: then it becomes an on-demand dataset, mounted
read-only like any other (:func:`on_demand_dataset`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from oggmhub.errors import UserFacingError
from oggmhub.identifiers import IdentifierError, dataset_identifiers, normalize_url, parse
from oggmhub.session.datasets import Dataset

ON_DEMAND_PREFIX = "src-"


class LaunchError(UserFacingError):
    """A launch refused: ``field`` is the parameter, ``allowed`` what would be accepted."""

    def __init__(self, status, field, message, allowed=()):
        super().__init__(status, message, reason="Launch refused")
        self.field = field
        self.allowed = list(allowed)


@dataclass(frozen=True)
class Resolution:
    dataset: Dataset
    environments: tuple  # names of the environments this user may start that can mount it
    default_environments: tuple  # those of them that mount it by default
    on_demand: bool = False

    def to_json(self, catalog, visitor=False):
        """The API's answer. A logged-out ``visitor`` gets the public catalog facts only: no
        source (a catalog dataset's may be a path on the hub's machine or a private bucket),
        no mount path, and only those aliases that are not paths."""
        body = self._json(catalog)
        if visitor:
            d = body["dataset"]
            if not self.on_demand:  # an on-demand source is the public URL the visitor gave
                del d["source"]
            d["aliases"] = [a for a in d["aliases"] if not _looks_local(a)]
            del body["mount_path"]
        return body

    def _json(self, catalog):
        d = self.dataset
        return {
            "dataset": {
                "name": d.name, "title": d.title, "description": d.description,
                "licence": d.licence, "citation": d.citation, "doi": d.doi,
                "source": d.source, "aliases": list(d.aliases), "size": d.size,
            },
            "mount_path": d.mount_path,
            "folder": f"datasets/{d.name}",
            "environments": [
                {"name": n, "display_name": catalog.environments[n].display_name,
                 "mounts_by_default": n in self.default_environments}
                for n in self.environments
            ],
            "on_demand": self.on_demand,
        }


def _looks_local(alias):
    """An alias that names a place on a machine (``/srv/...``, ``file://...``), not a public identifier."""
    text = alias.strip().lower()
    return text.startswith(("/", "file:", "~", "./", "../"))


def source_allowed(url, patterns):
    """Whether ``url`` (canonical) is a public URL matching one of the admin's ``patterns``."""
    parts = urlsplit(url)
    if parts.username or parts.password or "," in url:
        return False
    return any(re.fullmatch(p, url) for p in patterns or ())


def on_demand_dataset(url):
    """A read-only dataset for an allowed public source URL, named for its hash."""
    name = ON_DEMAND_PREFIX + hashlib.sha256(url.encode()).hexdigest()[:12]
    return Dataset(name=name, title=url, source=url, mount_path=f"/data/{name}",
                   description="Mounted on demand from a source the hub's admin allows.")


def find_dataset(catalog, identifier):
    """The catalog dataset ``identifier`` names, or None."""
    for dataset in catalog.datasets.values():
        if identifier in dataset_identifiers(dataset):
            return dataset
    return None


def on_demand_resolver(patterns):
    """For resolve_choice: a dataset for a requested source URL the patterns allow, else None."""
    def resolve(text):
        url = normalize_url(text) if isinstance(text, str) else None
        return on_demand_dataset(url) if url and source_allowed(url, patterns) else None
    return resolve


def environments_for(catalog, dataset, allowed_environments=None):
    """(environments that may mount ``dataset``, those that mount it by default).

    Environments that list the dataset mount it; a dataset no environment lists (or an
    on-demand one) may be added to any. ``allowed_environments`` narrows to a cohort's.
    """
    allowed = [n for n in catalog.environments if allowed_environments is None or n in allowed_environments]
    defaults = tuple(n for n in allowed if dataset.name in catalog.environments[n].datasets)
    listed_anywhere = any(dataset.name in e.datasets for e in catalog.environments.values())
    return (defaults if listed_anywhere else tuple(allowed)), defaults


def visible_datasets(catalog, allowed_environments=None):
    """The catalog datasets some environment this user may start can mount."""
    return [d for d in catalog.datasets.values() if environments_for(catalog, d, allowed_environments)[0]]


def resolve(catalog, text, allowed_environments=None, allowed_sources=()):
    """Resolve ``text`` (any identifier) for a user allowed ``allowed_environments``.

    Raises :class:`LaunchError`: 400 for a malformed identifier, 404 for one that names
    nothing available (listing what is), 403 when the user's cohort allows no
    environment that mounts it.
    """
    available = [d.name for d in visible_datasets(catalog, allowed_environments)]
    try:
        identifier = parse(text)
    except IdentifierError as e:
        raise LaunchError(400, "dataset", str(e), available) from None
    dataset, on_demand = find_dataset(catalog, identifier), False
    if dataset is None and identifier.kind == "url" and source_allowed(identifier.value, allowed_sources):
        dataset, on_demand = on_demand_dataset(identifier.value), True
    if dataset is None:
        listing = ", ".join(available) or "none"
        raise LaunchError(404, "dataset", f"no dataset available here is identified by {identifier.kind} "
                          f"{identifier.value!r}; available datasets: {listing}", available)
    environments, defaults = environments_for(catalog, dataset, allowed_environments)
    if not environments:
        raise LaunchError(403, "dataset", f"dataset {dataset.name!r} is mounted by no environment you may "
                          f"start; available datasets: {', '.join(available) or 'none'}", available)
    return Resolution(dataset=dataset, environments=environments, default_environments=defaults,
                      on_demand=on_demand)
