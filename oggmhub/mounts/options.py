"""Mount options, declared once: :class:`DatasetMounts`."""

from __future__ import annotations

import json
import os

from traitlets import Bool, Float, Integer
from traitlets.config import LoggingConfigurable

from oggmhub.session import env as session_vars

MiB = 2**20
ENV_OPTIONS = session_vars.MOUNT_OPTIONS  # JSON of DatasetMounts.as_dict(), for `oggmhub datasets mount`


class DatasetMounts(LoggingConfigurable):
    """How datasets are mounted, the one place these options are declared.

    Configured the JupyterHub way (``c.DatasetMounts.block_size = 32 * 2**20``); the local
    spawner reads them as ``DatasetMounts(parent=spawner)``, the Kubernetes spawner hands
    them to the mount sidecar (``$OGGMHUB_MOUNT_OPTIONS``), and code and tests construct
    one directly (``DatasetMounts(timeout=5)``).
    """

    block_size = Integer(
        16 * MiB, config=True,
        help="Bytes fetched per request when reading a large file through a mount.",
    )
    readahead = Integer(
        2, config=True,
        help="Blocks fetched ahead, in the background, while a large file is read forward "
             "through a mount (each takes block_size bytes of memory while in flight).",
    )
    kernel_readahead_kb = Integer(
        1024, config=True,
        help="KiB the kernel reads ahead on each mount (its backing device's read_ahead_kb; "
             "the kernel's default is 128). With libfuse3 the kernel then asks for up to "
             "1 MiB per read, an eighth of the calls into the mount. Needs root (the hub as "
             "root, the Kubernetes sidecar); otherwise the kernel's default stays. 0: leave it.",
    )
    small_file_size = Integer(
        4 * MiB, config=True,
        help="Files up to this many bytes are fetched whole, in one request, on first read.",
    )
    prefetch_files = Integer(
        8, config=True,
        help="When small files of a folder are opened one after the other, in listing "
             "order, fetch this many of the next ones concurrently (0: never).",
    )
    listings_ttl = Float(
        600.0, config=True,
        help="Seconds a directory listing (and the attributes of its files) is reused "
             "before the store is asked again; new objects in a bucket show up after this.",
    )
    kernel_ttl = Float(
        60.0, config=True,
        help="Seconds the kernel caches attributes, names and missing names of a mount.",
    )
    timeout = Float(
        5.0, config=True,
        help="Seconds to wait for a dataset's source to answer before the mount fails with "
             "an error naming the dataset (and the spawn with it, unless the catalog says "
             "required: false). Mount process start-up comes on top (about 1-2 s).",
    )
    read_timeout = Float(
        60.0, config=True,
        help="Seconds a read through a mounted dataset waits for its source; then it fails "
             "with ETIMEDOUT ('Connection timed out') and the mount serves the next read: a "
             "source that hangs holds a notebook's read this long, never for ever.",
    )
    threads = Bool(
        False, config=True,
        help="Run libfuse's multi-threaded loop. Single-threaded (the default) measured "
             "faster here: the Python operations share one interpreter lock anyway.",
    )
    allow_other = Bool(
        None, allow_none=True, config=True,
        help="Let users other than the mounting one read the mount (FUSE allow_other). "
             "None: yes when the hub runs as root; otherwise /etc/fuse.conf must have "
             "user_allow_other.",
    )

    def as_dict(self):
        """The options as plain values (what the mount process is started with)."""
        return {name: getattr(self, name) for name in self.trait_names(config=True)}


def from_env(environ=None, **overrides):
    """:class:`DatasetMounts` from ``$OGGMHUB_MOUNT_OPTIONS`` (set by the Kubernetes spawner
    on the mount sidecar), with ``overrides`` on top; defaults where it is unset."""
    environ = os.environ if environ is None else environ
    text = environ.get(ENV_OPTIONS, "")
    try:
        values = json.loads(text) if text else {}
    except ValueError:
        raise ValueError(f"${ENV_OPTIONS} is not JSON: {text[:80]!r}") from None
    known = set(DatasetMounts.class_trait_names(config=True))
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"${ENV_OPTIONS}: unknown option {unknown[0]!r}; allowed: {', '.join(sorted(known))}")
    return DatasetMounts(**{**values, **{k: v for k, v in overrides.items() if v is not None}})
