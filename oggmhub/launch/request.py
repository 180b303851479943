"""A launch URL's parameters, checked, and where the launch lands.

``/hub/launch?dataset=ID[&env=&size=&path=&repo=&branch=&urlpath=]``: every parameter is
checked before anything else happens, and each refusal is a :class:`LaunchError` naming
the parameter and what is allowed. :meth:`LaunchRequest.options` is the spawner's own
options format (``{"profile", "size", "datasets"}``), validated by the spawner's
:func:`~oggmhub.choice.resolve_choice` like every other start.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from oggmhub.identifiers import MAX_LENGTH, IdentifierError, check_length
from oggmhub.launch.resolution import LaunchError

PARAMETERS = ("dataset", "env", "size", "path", "repo", "branch", "urlpath")
# what a form on the hub's own page adds
_FORM_FIELDS = {"_xsrf", "action"}
_SLUG = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")
_BRANCH = re.compile(r"^(?!.*\.\.)(?!/)[A-Za-z0-9._/-]{1,255}$")
_REPO_SCHEMES = ("https://", "http://", "file://")
DATASETS_FOLDER = "datasets"  # where a session's datasets are, relative to the server root


def _relative_path(field, value, example):
    """``value`` as a clean relative path inside its folder, or LaunchError."""
    if "\\" in value or "\x00" in value or value.startswith(("/", "~")) or re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", value):
        raise LaunchError(400, field, f"{field} must be a relative path inside {example}, "
                          f"not {value[:80]!r} (no absolute paths, URLs or '\\')")
    parts = [p for p in value.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise LaunchError(400, field, f"{field} {value[:80]!r} leaves {example}: '..' is not allowed")
    return "/".join(parts)


@dataclass(frozen=True)
class LaunchRequest:
    dataset: str
    env: str | None = None
    size: str | None = None
    path: str = ""
    repo: str | None = None
    branch: str | None = None
    urlpath: str | None = None

    @classmethod
    def from_arguments(cls, arguments):
        """From tornado's ``{name: [bytes, ...]}`` (query or form); LaunchError if not allowed."""
        values = {}
        for name, items in arguments.items():
            if name in _FORM_FIELDS:
                continue
            if name not in PARAMETERS:
                raise LaunchError(400, name[:40], f"unknown parameter {name[:40]!r}; allowed: {', '.join(PARAMETERS)}",
                                  PARAMETERS)
            if len(items) != 1:
                raise LaunchError(400, name, f"parameter {name!r} was given {len(items)} times; give it once")
            value = items[0].decode("utf-8", "replace") if isinstance(items[0], bytes) else items[0]
            try:
                check_length(name, value)
            except IdentifierError as e:
                raise LaunchError(400, name, str(e)) from None
            values[name] = value.strip()
        if not values.get("dataset"):
            raise LaunchError(400, "dataset", "parameter 'dataset' is missing: give a catalog name, a DOI or "
                              "a source URL, e.g. /hub/launch?dataset=10.5281/zenodo.123")
        for name in ("env", "size"):
            if values.get(name) and not _SLUG.match(values[name]):
                raise LaunchError(400, name, f"{name} {values[name][:80]!r} is not a catalog name "
                                  "(lower-case letters, digits and '-')")
        path = _relative_path("path", values["path"], "the dataset") if values.get("path") else ""
        urlpath = values.get("urlpath") or None
        if urlpath is not None:
            urlpath = _relative_path("urlpath", urlpath, "your own server (e.g. lab/tree/notebook.ipynb)")
        repo = values.get("repo") or None
        if repo is not None and (not repo.startswith(_REPO_SCHEMES) or any(c.isspace() for c in repo)):
            raise LaunchError(400, "repo", f"repo must be a git URL starting with {', '.join(_REPO_SCHEMES)}")
        branch = values.get("branch") or None
        if branch is not None:
            if repo is None:
                raise LaunchError(400, "branch", "branch needs repo: the branch of which repository?")
            if not _BRANCH.match(branch):
                raise LaunchError(400, "branch", f"branch {branch[:80]!r} is not a git branch name "
                                  "(letters, digits, '.', '_', '-', '/')")
        return cls(dataset=values["dataset"], env=values.get("env") or None, size=values.get("size") or None,
                   path=path, repo=repo, branch=branch, urlpath=urlpath)

    def query(self, **changes):
        """This request as a launch URL's query string (with ``changes``)."""
        fields = {name: getattr(self, name) for name in PARAMETERS}
        fields.update(changes)
        return urlencode({k: v for k, v in fields.items() if v})

    def options(self, resolution, environment):
        """The spawner options that start ``environment`` with the dataset mounted."""
        dataset = resolution.dataset
        options = {"profile": environment.name}
        if self.size:
            options["size"] = self.size
        if dataset.name not in environment.datasets:
            options["datasets"] = [dataset.source if resolution.on_demand else dataset.name]
        return options

    def server_path(self, dataset):
        """Where JupyterLab opens, relative to the user's server URL."""
        if self.urlpath:
            target = self.urlpath
        else:
            folder = posixpath.join(DATASETS_FOLDER, dataset.name, self.path) if self.path else \
                posixpath.join(DATASETS_FOLDER, dataset.name)
            target = "lab/tree/" + folder
        if self.repo:
            query = {"repo": self.repo, "urlpath": target}
            if self.branch:
                query["branch"] = self.branch
            return "git-pull?" + urlencode(query)
        return quote(target, safe="/?=&")

    def target_url(self, server_url, dataset):
        """The URL (on the user's own server, ``server_url`` = ``/user/NAME/``) a launch lands on."""
        return server_url.rstrip("/") + "/" + self.server_path(dataset)


__all__ = ["LaunchRequest", "PARAMETERS", "MAX_LENGTH", "DATASETS_FOLDER"]
