"""Does a dataset's mount show its files where the environment's download cache looks?

OGGM looks a URL up in its download cache (``$OGGM_DOWNLOAD_CACHE``) at ``<host>/<path>``
(:func:`oggmhub.cli.mirror.cache_name`). A mirror filled by ``oggmhub datasets mirror``
(a bucket or folder) holds ``<host>/`` folders at its top, so it must be mounted at the
cache folder itself; an https server appears there at its URL's ``<host>/<path>`` with
``layout: download-cache`` (:func:`oggmhub.session.datasets.source_folder`). A mount path
below the cache folder hides part of a mirror: OGGM's sample data
(``github.com/OGGM/...``) would sit under the mount, not where OGGM looks.

:func:`catalog_warnings` says so for ``oggmhub catalog check``; :func:`mirror_mismatch`
lets ``oggmhub datasets mirror`` refuse to fill a mirror its catalog entry would hide.
"""

from __future__ import annotations

import os
import posixpath
from urllib.parse import urlsplit

from oggmhub.session.datasets import source_folder, split_source

# environment variables naming a download cache looked up at <host>/<path>
CACHE_VARIABLES = ("OGGM_DOWNLOAD_CACHE",)


def _url_folder(url):
    parts = urlsplit(url)
    return (parts.netloc.split(":", 1)[0] + parts.path).strip("/")


def caches(catalog, dataset):
    """``[(environment, variable, folder)]``: the download caches of the environments
    mounting ``dataset`` that lie at or above its mount path."""
    found = []
    for env in catalog.environments.values():
        if dataset.name not in env.datasets:
            continue
        for var in CACHE_VARIABLES:
            folder = (env.env.get(var) or "").rstrip("/")
            if folder.startswith("/") and (dataset.mount_path == folder or dataset.mount_path.startswith(folder + "/")):
                found.append((env.name, var, folder))
    return found


def _is_mirror(dataset):
    return not dataset.source.startswith(("http://", "https://"))


def _hosts(dataset):
    """The top folders of a local mirror (what OGGM would look for), else ()."""
    protocol, root = split_source(dataset.source)
    if protocol != "file" or not os.path.isdir(root):
        return ()
    return tuple(sorted(e for e in os.listdir(root) if os.path.isdir(os.path.join(root, e))))


def dataset_warnings(catalog, dataset):
    """Sentences (one per environment) saying where ``dataset``'s mount hides files from
    the download cache; ``[]`` when every cache finds what it looks for."""
    out = []
    for env, var, folder in caches(catalog, dataset):
        where = f"environment {env!r} looks up downloads at <host>/<path> under {var}={folder}"
        if _is_mirror(dataset):
            if dataset.mount_path == folder:
                continue
            hosts = _hosts(dataset)
            held = f" (it holds {', '.join(h + '/' for h in hosts)})" if hosts else ""
            out.append(
                f"the mount path {dataset.mount_path} hides part of the mirror {dataset.source}{held}: "
                f"{where}, but a mirror filled by `oggmhub datasets mirror` holds <host>/ folders at its top, "
                f"which this mount shows under {dataset.mount_path}/ instead (OGGM's sample data, "
                f"github.com/OGGM/..., would not be found); set mount_path: {folder}")
            continue
        shown = posixpath.join(dataset.mount_path, source_folder(dataset)).rstrip("/")
        wanted = posixpath.join(folder, _url_folder(dataset.source)).rstrip("/")
        if shown != wanted:
            fix = "layout: download-cache" if dataset.mount_path == folder else f"mount_path: {folder} and layout: download-cache"
            out.append(f"{dataset.source} is shown at {shown}, but {where}, i.e. {wanted}; set {fix}")
    return out


def catalog_warnings(catalog):
    """``[(where, sentence)]`` for every dataset whose mount hides files from a cache
    (``where`` is ``datasets.NAME.mount_path``)."""
    return [(f"datasets.{d.name}.mount_path", w) for d in catalog.datasets.values() for w in dataset_warnings(catalog, d)]


def _same_source(dest, source):
    try:
        return split_source(dest) == split_source(source)
    except ValueError:
        return False


def target_dataset(catalog, dest):
    """The catalog dataset a mirror destination fills (its name or its source), or None."""
    if dest in catalog.datasets:
        return catalog.datasets[dest]
    if not dest.startswith(("gs://", "s3://", "file://")):
        dest = os.path.abspath(dest)
    return next((d for d in catalog.datasets.values() if _is_mirror(d) and _same_source(dest, d.source)), None)


def mirror_mismatch(catalog, dataset, example=None):
    """Why filling ``dataset``'s source as a download-cache mirror would not serve the
    environments mounting it (a sentence naming the mismatch), or None."""
    for env, var, folder in caches(catalog, dataset):
        if dataset.mount_path != folder:
            rel = example or "<host>/<path>"
            return (f"catalog {catalog.path}: dataset {dataset.name!r} is mounted at {dataset.mount_path}, "
                    f"but environment {env!r} looks up downloads at {var}={folder}: {rel} written here would "
                    f"appear at {dataset.mount_path}/{rel}, not at {folder}/{rel}, where OGGM looks. "
                    f"Set the dataset's mount_path: {folder} (or mirror elsewhere). Nothing was copied.")
    return None
