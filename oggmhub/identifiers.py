"""A dataset identifier in any common spelling: a catalog name, a DOI or a source URL.

DOIs are case-insensitive and are written many ways; all of these are the same one::

    10.5281/zenodo.123   doi:10.5281/zenodo.123   DOI: 10.5281/ZENODO.123
    https://doi.org/10.5281/zenodo.123   http://dx.doi.org/10.5281/zenodo.123
    info:doi/10.5281/zenodo.123   https://doi.org/10.5281%2Fzenodo.123

:func:`parse` turns any of them into one canonical :class:`Identifier`; refusals are
:class:`IdentifierError` with a sentence naming what was wrong and what is allowed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit, urlunsplit

# no real identifier is longer; longer parameters are refused before anything else
MAX_LENGTH = 2048
NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")
DOI_RE = re.compile(r"^10\.[0-9]{4,9}/[^\s]+$")
_DOI_PREFIX = re.compile(r"^(?:doi:\s*|info:doi/|(?:https?://)?(?:dx\.|www\.)?doi\.org/)", re.I)
URL_SCHEMES = ("https", "http", "gs", "s3")
ALLOWED = ("a catalog name (e.g. oggm-mirror), a DOI (10.5281/zenodo.123, doi:10.5281/..., "
           "https://doi.org/10.5281/...) or a dataset's source URL (https://..., gs://..., s3://...)")


class IdentifierError(ValueError):
    """An identifier that cannot be read; the message says what is allowed."""


@dataclass(frozen=True)
class Identifier:
    kind: str  # "name", "doi" or "url"
    value: str  # canonical: lower-case names and DOIs; URLs with lower-case scheme and host

    def __str__(self):
        return self.value


def check_length(field, value, limit=MAX_LENGTH):
    """Refuse a parameter longer than ``limit`` characters (naming it, never echoing it)."""
    if value is not None and len(value) > limit:
        raise IdentifierError(f"{field} is {len(value)} characters long; at most {limit} are allowed")


def normalize_url(text):
    """``text`` as a URL with a lower-case scheme and host and no trailing '/'; None if it is not one."""
    parts = urlsplit(text)
    if parts.scheme.lower() not in URL_SCHEMES or not parts.netloc or any(c.isspace() for c in text):
        return None
    path = parts.path.rstrip("/")
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), path, parts.query, ""))


def parse(text, field="dataset"):
    """The canonical :class:`Identifier` for ``text``; :class:`IdentifierError` if it is none."""
    if text is None or not str(text).strip():
        raise IdentifierError(f"{field} is missing: give {ALLOWED}")
    check_length(field, text)
    text = str(text).strip()
    stripped = _DOI_PREFIX.sub("", text, count=1)
    if stripped != text or text.startswith("10."):
        doi = unquote(stripped).strip().lower()
        if not DOI_RE.match(doi):
            raise IdentifierError(f"{field} {_show(text)} is not a valid DOI: a DOI looks like 10.5281/zenodo.123")
        return Identifier("doi", doi)
    if "://" in text:
        url = normalize_url(text)
        if url is None:
            raise IdentifierError(f"{field} {_show(text)} is not a URL oggmhub can mount: "
                                  f"use one of the schemes {', '.join(s + '://' for s in URL_SCHEMES)}")
        return Identifier("url", url)
    if NAME_RE.match(text.lower()):
        return Identifier("name", text.lower())
    raise IdentifierError(f"{field} {_show(text)} is not an identifier oggmhub knows: give {ALLOWED}")


def _show(text, limit=80):
    """``text`` quoted for a message, shortened."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def dataset_identifiers(dataset):
    """The canonical identifiers a catalog dataset answers to: its name, DOI, source and aliases."""
    found = [Identifier("name", dataset.name)]
    if dataset.doi:
        found.append(Identifier("doi", dataset.doi.lower()))
    url = normalize_url(dataset.source)
    if url:
        found.append(Identifier("url", url))
    for alias in getattr(dataset, "aliases", ()) or ():
        try:
            found.append(parse(alias, "alias"))
        except IdentifierError:
            continue  # the catalog's alias rule reports it
    return found


def alias_problems(datasets):
    """Catalog rule: each alias reads as an identifier and no two datasets share one.

    ``datasets`` is the catalog's raw ``{name: spec}``; returns ``[(where, message)]``.
    """
    problems, owners = [], {}
    for name, spec in (datasets or {}).items():
        if not isinstance(spec, dict):
            continue
        own = [Identifier("name", name)]
        if isinstance(spec.get("doi"), str):
            own.append(Identifier("doi", spec["doi"].lower()))
        if isinstance(spec.get("source"), str) and normalize_url(spec["source"]):
            own.append(Identifier("url", normalize_url(spec["source"])))
        for key in own:
            owners.setdefault(key, name)
    for name, spec in (datasets or {}).items():
        aliases = spec.get("aliases") if isinstance(spec, dict) else None
        for i, alias in enumerate(aliases if isinstance(aliases, list) else []):
            where = f"datasets.{name}.aliases[{i}]"
            try:
                key = parse(alias, "alias")
            except IdentifierError as e:
                problems.append((where, str(e)))
                continue
            other = owners.setdefault(key, name)
            if other != name:
                problems.append((where, f"{alias!r} already identifies dataset {other!r}; an alias names one dataset"))
    return problems
