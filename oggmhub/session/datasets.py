"""Datasets in a session: what the spawner passes in, and the notebook-side API.

In a notebook::

    import oggmhub.session.datasets as datasets

    datasets.list()                    # this session's datasets (catalog entries)
    fs = datasets.open("oggm-mirror")  # a read-only fsspec filesystem at the dataset's root
    fs.ls("")
    with fs.open("cluster.klima.uni-bremen.de/~oggm/README.txt") as f:
        f.read()
    datasets.path("oggm-mirror")       # "/data/oggm-mirror" where it is mounted, else None
    datasets.unavailable()             # {name: why} of datasets this session started without

``open()`` reads the source (``gs://``, ``s3://``, ``https://`` or a local path) with
fsspec, through a local cache on the session's scratch space (fsspec's ``simplecache``
by default; ``blockcache`` for large files read in parts, or none). Every write, delete,
rename or mkdir raises :class:`~oggmhub.session.readonly.DatasetReadOnlyError` (a
``PermissionError`` with ``errno.EROFS``).

The hub side: :func:`session_env` builds the datasets' variables a session gets and
:func:`localize_env` rewrites catalog mount paths for a backend that mounts under a
root directory (both called by :func:`oggmhub.backends.session_env.session_environment`), and :func:`source_filesystem` is shared with the FUSE mounts
(:mod:`oggmhub.mounts`) and the mirror tool (:mod:`oggmhub.cli.mirror`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
from builtins import open as builtins_open

# gcsfs >= 2026.10 probes every bucket over gRPC unless told not to; that hangs for a
# minute against emulators and buys nothing for reading. Must be set before gcsfs loads.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

from oggmhub.session import env as session_vars  # noqa: E402
from oggmhub.session.readonly import DatasetReadOnlyError, ReadOnlyFileSystem  # noqa: E402

__all__ = [
    "Dataset", "DatasetError", "DatasetReadOnlyError", "list", "get", "open", "path",
    "open_dataset", "unavailable", "session_env", "localize_env", "session_datasets", "source_filesystem", "source_folder",
]

# the variables (named in oggmhub.session.env); both backends set them through
# oggmhub.backends.session_env.session_environment, which calls session_env() below
ENV_NAMES = session_vars.DATASETS
ENV_JSON = session_vars.DATASETS_JSON
ENV_CACHE = session_vars.DATASETS_CACHE
ENV_CACHE_DIR = session_vars.DATASETS_CACHE_DIR
ENV_SCRATCH = session_vars.SCRATCH
# in the scratch space: {name: why} of the session's datasets (required: false) that could
# not be mounted; the spawner writes it, :func:`unavailable` reads it
UNAVAILABLE_FILE = "datasets-unavailable.json"
# on Kubernetes, the mount sidecar's notice beside the mount points (in the shared folder
# the user container sees read-only): {name: why} of the datasets it could not mount
UNAVAILABLE_NOTICE = ".oggmhub-unavailable.json"
UNAVAILABLE_NOTE = "DATASET-UNAVAILABLE.txt"  # in the sidecar's stand-in mount for a left-out dataset
CACHE_TYPES = ("simplecache", "blockcache", "none")
AMBIENT = object()  # credentials: the platform's own (Workload Identity, ADC, IAM role)


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A read-only dataset; :mod:`oggmhub.session.datasets` opens, mounts and describes it.

    ``credentials`` is a *reference* (``{"secret": NAME, "key": KEY}``, ``{"env": VAR}``
    or ``{"ambient": True}``), empty for public data; never the credentials themselves.
    """

    name: str
    title: str
    source: str
    mount_path: str
    description: str = ""
    licence: str = ""
    citation: str = ""
    doi: str = ""
    endpoint: str = ""
    credentials: dict = dataclasses.field(default_factory=dict)
    required: bool = True  # False: a session starts without it when its source cannot be reached
    size: str = ""  # as the catalog gives it (e.g. 120Gi), shown on the hub's datasets page
    aliases: tuple = ()  # other identifiers (DOIs, URLs, names) launch links resolve to it
    layout: str = "plain"  # or "download-cache": see source_folder()

    def __post_init__(self):
        object.__setattr__(self, "aliases", tuple(self.aliases))  # a list, when read back from JSON


def source_folder(dataset):
    """Where ``dataset``'s source appears inside its mount ('' for the mount itself).

    ``layout: download-cache`` is a download cache's layout (OGGM's ``$OGGM_DOWNLOAD_CACHE``:
    a URL's file at ``<host>/<path>``): an http(s) source appears at the ``<host>/<path>``
    of its URL (the host without its port), so a server and a mirror of it are mounted
    at the same path; a bucket or folder (a mirror filled by ``oggmhub datasets mirror``)
    is laid out so already and appears at the mount itself.
    """
    if dataset.layout != "download-cache" or not dataset.source.startswith(("http://", "https://")):
        return ""
    from urllib.parse import urlsplit

    parts = urlsplit(dataset.source)
    return (parts.netloc.split(":", 1)[0] + parts.path).strip("/")


class DatasetError(Exception):
    """A dataset that cannot be used as asked; the message names it."""

    def __init__(self, dataset, message):
        self.dataset = dataset
        super().__init__(f"dataset {dataset!r}: {message}")


# --- the session's datasets, from the environment ---------------------------------


def session_env(datasets, mount_root=None):
    """Environment variables describing ``datasets`` (catalog ``Dataset`` objects).

    ``OGGMHUB_DATASETS`` is the comma list of names; ``OGGMHUB_DATASETS_JSON`` holds the
    catalog entries (credentials as references only) with ``mount_path`` where the
    session will find each mount (under ``mount_root`` for the local backend).
    """
    entries = []
    for dataset in datasets:
        entry = dataclasses.asdict(dataset)
        entry["mount_path"] = local_mount_path(dataset, mount_root)
        entries.append(entry)
    return {
        ENV_NAMES: ",".join(d.name for d in datasets),
        ENV_JSON: json.dumps(entries, separators=(",", ":")),
    }


def local_mount_path(dataset, mount_root=None):
    """Where ``dataset`` is mounted: its catalog mount path, under ``mount_root`` if given."""
    if mount_root is None:
        return dataset.mount_path
    return os.path.join(os.path.abspath(mount_root), dataset.mount_path.lstrip("/"))


def localize_env(env, datasets, mount_root):
    """Rewrite values in ``env`` that point into a catalog mount path to the local mount.

    E.g. ``OGGM_DOWNLOAD_CACHE=/data/oggm-mirror`` becomes
    ``<mount_root>/data/oggm-mirror`` when the local backend mounts under ``mount_root``.
    A value naming a folder above a mount path (``OGGM_DOWNLOAD_CACHE=/data/oggm-mirror``
    for a dataset mounted at ``/data/oggm-mirror/<host>/<path>``) moves under
    ``mount_root`` as well.
    """
    out = dict(env)
    root = os.path.abspath(mount_root)
    for dataset in datasets:
        old, new = dataset.mount_path, local_mount_path(dataset, mount_root)
        for key, value in out.items():
            if not isinstance(value, str) or value.startswith(root + "/"):
                continue
            if value == old or value.startswith(old + "/"):
                out[key] = new + value[len(old):]
            elif value.startswith("/") and old.startswith(value.rstrip("/") + "/") and value.count("/") >= 2:
                out[key] = os.path.join(root, value.lstrip("/"))
    return out


def session_datasets(environ=None):
    """The session's datasets (``Dataset`` objects) from ``OGGMHUB_DATASETS_JSON``."""
    environ = os.environ if environ is None else environ
    text = environ.get(ENV_JSON)
    if not text:
        return []
    known = {f.name for f in dataclasses.fields(Dataset)}
    return [Dataset(**{k: v for k, v in entry.items() if k in known}) for entry in json.loads(text)]


def list_datasets(environ=None):
    """This session's datasets, as catalog ``Dataset`` objects (``[]`` outside a session)."""
    return session_datasets(environ)


def get(name, environ=None):
    """The session's dataset called ``name``; :class:`DatasetError` if it has none such."""
    datasets = session_datasets(environ)
    for dataset in datasets:
        if dataset.name == name:
            return dataset
    known = ", ".join(d.name for d in datasets) or "none"
    raise DatasetError(name, f"not one of this session's datasets ({known})")


def unavailable(environ=None):
    """``{name: why}`` of this session's datasets that could not be reached at its start
    (the catalog let the session start without them); ``{}`` when all are there."""
    environ = os.environ if environ is None else environ
    scratch = environ.get(ENV_SCRATCH)
    found = _read_json(os.path.join(scratch, UNAVAILABLE_FILE)) if scratch else {}
    for dataset in session_datasets(environ):  # the Kubernetes mount sidecar's notices
        why = _read_json(os.path.join(os.path.dirname(dataset.mount_path), UNAVAILABLE_NOTICE)).get(dataset.name)
        stand_in = os.path.exists(os.path.join(dataset.mount_path, UNAVAILABLE_NOTE))
        if why and (stand_in or not _is_mounted(dataset.mount_path)):
            found[dataset.name] = why
    return found


def _read_json(path):
    try:
        with builtins_open(path, encoding="utf-8") as f:
            return dict(json.load(f))
    except (OSError, ValueError, TypeError):
        return {}


def write_unavailable_notices(datasets, reasons, root="/"):
    """The mount sidecar's side: ``{name: why}`` of ``datasets`` it could not mount,
    written beside their mount points (under ``root``), where the session's
    :func:`unavailable` finds them; a folder with nothing to
    report has no notice (a restarted sidecar's earlier one goes). The files written."""
    by_folder = {}
    for dataset in datasets:
        entries = by_folder.setdefault(os.path.dirname(local_mount_path(dataset, root)), {})
        if dataset.name in reasons:
            entries[dataset.name] = reasons[dataset.name]
    written = []
    for folder, entries in sorted(by_folder.items()):
        path = os.path.join(folder, UNAVAILABLE_NOTICE)
        if not entries:
            if os.path.exists(path):
                os.remove(path)
            continue
        os.makedirs(folder, exist_ok=True)
        with builtins_open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(entries, f, indent=1)
        os.replace(path + ".tmp", path)
        written.append(path)
    return written


def dataset_path(name, environ=None):
    """The POSIX path where the dataset is mounted in this session, or None if it is not."""
    mount = get(name, environ).mount_path
    return mount if _is_mounted(mount) else None


def _is_mounted(path):
    try:
        return os.path.ismount(path)
    except OSError:
        return False


# --- reaching a dataset's source ------------------------------------------------------


def credentials_env_var(name):
    """The variable a ``{secret: ...}`` reference is delivered in (mount sidecar only)."""
    return session_vars.DATASET_CREDENTIALS_PREFIX + re.sub(r"[^A-Z0-9]", "_", name.upper())


def resolve_credentials(dataset, environ=None):
    """The credentials ``dataset`` refers to: None (public), ``AMBIENT``, or a string.

    ``{env: VAR}`` is read from ``VAR``; ``{secret: NAME}`` from the variable
    :func:`credentials_env_var` names, which the Kubernetes mount sidecar gets from the
    secret (the user's container never does). Raises :class:`DatasetError` if missing.
    """
    environ = os.environ if environ is None else environ
    ref = dataset.credentials or {}
    if not ref:
        return None
    if ref.get("ambient"):
        return AMBIENT
    if "env" in ref:
        var, what = ref["env"], f"${ref['env']}"
    else:
        var = credentials_env_var(dataset.name)
        what = f"Kubernetes secret {ref.get('secret')!r} (delivered as ${var})"
    value = environ.get(var)
    if not value:
        raise DatasetError(dataset.name, f"its credentials, {what}, are not set in this environment")
    return value


def _json_or_path(value):
    text = value.strip()
    if text.startswith("{"):
        try:
            return json.loads(text)
        except ValueError:
            pass
    return value


def split_source(source):
    """``(protocol, root)`` of a source URL: ``gs://b/p`` -> ``("gs", "b/p")``."""
    if source.startswith("file://"):
        return "file", source[len("file://"):].rstrip("/") or "/"
    if source.startswith("/"):
        return "file", source.rstrip("/") or "/"
    protocol, _, rest = source.partition("://")
    if protocol in ("http", "https"):
        return protocol, source.rstrip("/")
    return protocol, rest.strip("/")


def source_filesystem(dataset, environ=None, **options):
    """The fsspec filesystem of ``dataset``'s source and the dataset's root on it.

    No cache and no read-only guard: callers add those (:func:`open_dataset`, the FUSE
    operations). ``options`` are passed to the filesystem (e.g. ``listings_expiry_time``).
    """
    protocol, root = split_source(dataset.source)
    value = resolve_credentials(dataset, environ)
    if protocol == "gs":
        from gcsfs.core import GCSFileSystem  # the core class: no HNS/gRPC probing

        if value is None:
            token = "anon"
        elif value is AMBIENT:
            token = "google_default"
        else:
            token = _json_or_path(value)
        kwargs = {"token": token, **options}
        if dataset.endpoint:
            kwargs["endpoint_url"] = dataset.endpoint
        return GCSFileSystem(**kwargs), root
    if protocol == "s3":
        try:
            from s3fs import S3FileSystem
        except ImportError:
            raise DatasetError(dataset.name, "reading s3:// sources needs s3fs (pip install s3fs)") from None
        kwargs = dict(options)
        if value is None:
            kwargs["anon"] = True
        elif value is not AMBIENT:
            creds = _json_or_path(value)
            if not isinstance(creds, dict):
                raise DatasetError(dataset.name, 's3 credentials are a JSON object {"key": ..., "secret": ...}')
            kwargs.update(creds)
        if dataset.endpoint:
            kwargs["endpoint_url"] = dataset.endpoint
        return S3FileSystem(**kwargs), root
    import fsspec

    if protocol in ("http", "https"):
        kwargs = dict(options)
        if value not in (None, AMBIENT):
            headers = _json_or_path(value)
            if not isinstance(headers, dict):
                raise DatasetError(dataset.name, "https credentials are a JSON object of request headers")
            kwargs["headers"] = headers
        return fsspec.filesystem(protocol, **kwargs), root
    if protocol == "file":
        return fsspec.filesystem("file", **options), root
    raise DatasetError(dataset.name, f"unsupported source {dataset.source!r}")


def default_cache_dir(environ=None):
    """``$OGGMHUB_DATASETS_CACHE_DIR``, else ``$OGGMHUB_SCRATCH/datasets-cache``, else a
    per-user folder in the system's temporary directory (never the persistent home)."""
    environ = os.environ if environ is None else environ
    if environ.get(ENV_CACHE_DIR):
        return environ[ENV_CACHE_DIR]
    if environ.get(ENV_SCRATCH):
        return os.path.join(environ[ENV_SCRATCH], "datasets-cache")
    return os.path.join(tempfile.gettempdir(), f"oggmhub-{os.getuid()}", "datasets-cache")


def open_dataset(dataset, cache=None, cache_dir=None, environ=None, **options):
    """A read-only fsspec filesystem rooted at ``dataset`` (a catalog ``Dataset``).

    ``cache`` is ``"simplecache"`` (whole files, the default: right for many small
    files), ``"blockcache"`` (the blocks read, for large files read in parts) or
    ``"none"``; the default comes from ``$OGGMHUB_DATASETS_CACHE``. Cached copies go to
    ``cache_dir`` (default :func:`default_cache_dir`), one folder per dataset. If the
    session cannot reach the source (credentials held only by the mount sidecar) but the
    dataset is mounted, the mount is used instead.
    """
    environ = os.environ if environ is None else environ
    why = unavailable(environ).get(dataset.name)
    if why:
        raise DatasetError(dataset.name, f"not available in this session: {why}")
    cache = cache or environ.get(ENV_CACHE) or "simplecache"
    if cache not in CACHE_TYPES:
        raise DatasetError(dataset.name, f"unknown cache {cache!r}; choose from: {', '.join(CACHE_TYPES)}")
    try:
        fs, root = source_filesystem(dataset, environ, **options)
    except DatasetError:
        if not _is_mounted(dataset.mount_path):
            raise
        import fsspec

        fs, root, cache = fsspec.filesystem("file"), dataset.mount_path, "none"
    from fsspec.implementations.local import LocalFileSystem

    if isinstance(fs, LocalFileSystem):
        cache = "none"  # a local copy of a local file buys nothing
    if cache != "none":
        from fsspec.implementations.cached import CachingFileSystem, SimpleCacheFileSystem

        storage = os.path.join(cache_dir or default_cache_dir(environ), dataset.name)
        os.makedirs(storage, exist_ok=True)
        layer = SimpleCacheFileSystem if cache == "simplecache" else CachingFileSystem
        fs = layer(fs=fs, cache_storage=storage, check_files=False, expiry_time=False)
    return ReadOnlyFileSystem(dataset.name, root, fs)


def open_name(name, cache=None, cache_dir=None, **options):
    """``open(name)``: this session's dataset ``name`` as a read-only fsspec filesystem.

    See :func:`open_dataset` for ``cache`` and ``cache_dir``.
    """
    return open_dataset(get(name), cache=cache, cache_dir=cache_dir, **options)


# The notebook API's short names. Defined last: inside this module, the builtins
# ``list`` and ``open`` are not used after this point.
list = list_datasets  # noqa: A001
open = open_name  # noqa: A001
path = dataset_path
