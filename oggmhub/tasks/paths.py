"""Where a task may read and write, for one user (pure: no I/O but ``realpath``).

A file parameter's value is a *location*:

==========================  =================================================  =======  ========
location                    meaning                                            input    output
==========================  =================================================  =======  ========
``home:PATH`` or ``PATH``   a file in the user's home (relative, no ``..``)    yes      yes
``dataset:NAME/PATH``       an object of a catalog dataset (read-only)         yes      no
``gs://``, ``s3://``        a bucket object, through fsspec                    yes      only under the user's prefix
``https://``, ``http://``   a web resource, through fsspec                     yes      no
``input-str:NAME``          a file of the run's ``input-str`` texts            yes      no
==========================  =================================================  =======  ========

A URL input is fetched with the service's storage credentials (``storage_options``) only
where it lies under the user's own ``user_prefix`` or a source the admin marks public
(``public_sources``); any other URL is fetched anonymously (:func:`anonymous_options`: the
endpoint kept, no token, key or header), so a user reads through a task only what they
could read themselves.

Anything else (an absolute path, ``..``, ``file://``, another user's home, the hub's data
directory) is refused with a :class:`LocationError` naming the parameter and what is
allowed.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass

from oggmhub.user_folders import home_path

URL_SCHEMES = ("gs://", "s3://", "https://", "http://")
ALLOWED_INPUTS = ("home:PATH (a relative path in your home), dataset:NAME/PATH, gs://, s3:// or https:// URLs, "
                  "input-str:NAME")


class LocationError(ValueError):
    """A location a user may not use; ``parameter`` names the parameter."""

    def __init__(self, parameter, message):
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter


@dataclass(frozen=True)
class Location:
    kind: str  # "home", "dataset", "url" or "text"
    path: str  # home: absolute local path; dataset: path in the dataset; url: the URL; text: its file name
    dataset: str = ""
    text: str = ""  # what the user wrote
    trusted: bool = False  # a URL under the user's prefix or a public source: the service's credentials

    def to_plan(self, datasets, storage_options):
        """What a worker needs to reach it (JSON-able)."""
        if self.kind == "home":
            return {"kind": "local", "path": self.path}
        if self.kind == "text":
            return {"kind": "text", "name": self.path}
        if self.kind == "dataset":
            import dataclasses

            return {"kind": "dataset", "dataset": dataclasses.asdict(datasets[self.dataset]), "path": self.path}
        protocol = self.path.split("://", 1)[0]
        options = dict(storage_options.get(protocol, {}))
        return {"kind": "url", "url": self.path, "options": options if self.trusted else anonymous_options(protocol, options)}


_ENDPOINT_KEYS = ("endpoint_url", "region_name")


def anonymous_options(protocol, options):
    """fsspec options for reading ``protocol`` anonymously: where the service's ``options``
    point (endpoint, region), none of its credentials."""
    kept = {k: v for k, v in options.items() if k in _ENDPOINT_KEYS}
    client = {k: v for k, v in (options.get("client_kwargs") or {}).items() if k in _ENDPOINT_KEYS}
    if protocol in ("gs", "gcs"):
        return {**kept, "token": "anon"}
    if protocol in ("s3", "s3a"):
        return {**kept, "anon": True, **({"client_kwargs": client} if client else {})}
    return {}  # http(s): no headers, no auth, no cookies


class PathPolicy:
    """The readable and writable locations of ``username``.

    ``homes_dir``: the folder of every user's home (``<data dir>/homes``); ``data_dir``:
    the hub's data directory (never readable as such); ``datasets``: the catalog's
    datasets by name; ``user_prefix``: the bucket prefix the user may write to, with
    ``{username}`` (e.g. ``gs://results/users/{username}/``), or empty for none.
    """

    def __init__(self, username, homes_dir, datasets, user_prefix="", data_dir="", public_sources=()):
        self.username = username
        self.home = os.path.realpath(home_path(homes_dir, username))
        self.public_sources = tuple(public_sources)
        self.datasets = datasets
        self.user_prefix = user_prefix.format(username=username) if user_prefix else ""
        if self.user_prefix and not self.user_prefix.endswith("/"):
            self.user_prefix += "/"
        self.data_dir = os.path.realpath(data_dir) if data_dir else ""
        self.homes_dir = os.path.realpath(homes_dir)

    def allowed_outputs(self):
        where = "home:PATH (a relative path in your home)"
        return where + (f" or a URL under {self.user_prefix}" if self.user_prefix else "")

    def trusted_url(self, url):
        """Whether ``url`` is read with the service's credentials (see the module's docstring)."""
        prefixes = [p if p.endswith("/") else p + "/" for p in self.public_sources if p]
        if self.user_prefix:
            prefixes.append(self.user_prefix)
        return any(url.startswith(p) for p in prefixes)

    def _home_path(self, parameter, rel, allowed):
        rel = rel[2:] if rel.startswith("~/") else rel
        if not rel or rel.startswith("/") or "\\" in rel:
            raise LocationError(parameter, f"{rel or 'an empty path'!r} is not a relative path in your home; allowed: {allowed}")
        parts = rel.split("/")
        if ".." in parts:
            raise LocationError(parameter, f"{rel!r} leaves its folder with '..'; allowed: {allowed}")
        try:
            path = os.path.realpath(os.path.join(self.home, rel))
        except OSError as e:  # changed while it was resolved (a link swapped for a file)
            raise LocationError(parameter, f"{rel!r} changed while it was checked ({e.strerror}); try again") from None
        if path != self.home and not path.startswith(self.home + os.sep):
            raise LocationError(parameter, f"{rel!r} leads outside your home (through a link); allowed: {allowed}")
        return path

    def _check_url(self, parameter, url, allowed):
        scheme, rest = url.split("://", 1)
        if not rest or ".." in rest.split("/") or "//" in rest.strip("/"):
            raise LocationError(parameter, f"{url!r} is not a plain object URL; allowed: {allowed}")

    def input(self, parameter, text):
        """The :class:`Location` of an input, or :class:`LocationError`."""
        text = str(text).strip()
        if text.startswith(URL_SCHEMES):
            self._check_url(parameter, text, ALLOWED_INPUTS)
            return Location("url", text, text=text, trusted=self.trusted_url(text))
        if text.startswith("input-str:"):
            name = text[len("input-str:"):]
            if not name or "/" in name or ".." in name:
                raise LocationError(parameter, f"{text!r}: name a file of the run's input-str; allowed: {ALLOWED_INPUTS}")
            return Location("text", name, text=text)
        if text.startswith("dataset:"):
            name, _, rel = text[len("dataset:"):].partition("/")
            if name not in self.datasets:
                known = ", ".join(sorted(self.datasets)) or "none"
                raise LocationError(parameter, f"unknown dataset {name!r}; the catalog's datasets: {known}")
            rel = posixpath.normpath(rel) if rel else ""
            if rel.startswith(("..", "/")):
                raise LocationError(parameter, f"{text!r} leaves the dataset with '..'; allowed: {ALLOWED_INPUTS}")
            return Location("dataset", "" if rel == "." else rel, dataset=name, text=text)
        if text.startswith("file:") or "://" in text:
            raise LocationError(parameter, f"{text!r}: that kind of URL cannot be read; allowed: {ALLOWED_INPUTS}")
        rel = text[len("home:"):] if text.startswith("home:") else text
        if rel.startswith("/"):
            real = os.path.realpath(rel)
            if real == self.home or real.startswith(self.home + os.sep):
                what = "an absolute path (write it as home:PATH, relative to your home)"
            elif real.startswith(self.homes_dir + os.sep):
                what = "in another user's home"
            elif self.data_dir and (real == self.data_dir or real.startswith(self.data_dir + os.sep)):
                what = "in the hub's data directory"
            else:
                what = "an absolute path"
            raise LocationError(parameter, f"{text!r} is {what}, which tasks may not read; allowed: {ALLOWED_INPUTS}")
        return Location("home", self._home_path(parameter, rel, ALLOWED_INPUTS), text=text)

    def output(self, parameter, text):
        """The :class:`Location` of an output, or :class:`LocationError`."""
        text = str(text).strip()
        allowed = self.allowed_outputs()
        if text.startswith("input-str:"):
            raise LocationError(parameter, f"{text!r}: input-str files are inputs only; allowed: {allowed}")
        if text.startswith("dataset:"):
            raise LocationError(parameter, f"{text!r} is in a dataset, and datasets are read-only; allowed: {allowed}")
        if text.startswith(URL_SCHEMES):
            self._check_url(parameter, text, allowed)
            if not (self.user_prefix and text.startswith(self.user_prefix)):
                raise LocationError(parameter, f"{text!r} is outside your space; allowed: {allowed}")
            return Location("url", text, text=text, trusted=True)
        if text.startswith("file:") or "://" in text:
            raise LocationError(parameter, f"{text!r}: tasks cannot write there; allowed: {allowed}")
        rel = text[len("home:"):] if text.startswith("home:") else text
        if rel.startswith("/"):
            raise LocationError(parameter, f"{text!r} is an absolute path, outside your space; allowed: {allowed}")
        if rel.endswith("/"):
            raise LocationError(parameter, f"{text!r} is a folder; give a file name; allowed: {allowed}")
        return Location("home", self._home_path(parameter, rel, allowed), text=text)

    def output_folder(self, parameter, text):
        """A batch's output folder (home or the user's prefix), as a location ending in '/'."""
        text = str(text).strip()
        text = text if text.endswith("/") else text + "/"
        try:
            probe = self.output(parameter, text + "x")  # same rules as a file in it
        except LocationError as e:
            raise LocationError(parameter, str(e).split(": ", 1)[1].replace(repr(text + "x"), repr(text))) from None
        return text, probe
