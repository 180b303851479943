"""Is a dataset's source there? Answered in seconds, in one sentence naming the dataset.

Used before a dataset is mounted (:mod:`oggmhub.mounts.process`): a host that does
not resolve or refuses connections is found in the hub's process before any mount
process starts; a source that
answers "no" (HTTP 404, a bucket that does not exist, no permission) or does not answer
within the mount timeout is found by the mount process, which lists the dataset's root.
Either way the spawn gets one sentence, e.g. ``dataset 'era5': https://typo.example/era5
cannot be reached: the host typo.example does not resolve``, never a traceback.
"""

from __future__ import annotations

import concurrent.futures
import os
import socket
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}


class Unreachable(RuntimeError):
    """The source cannot be reached; the message says why (without the dataset's name)."""


def where(dataset):
    return dataset.source + (f" at {dataset.endpoint}" if dataset.endpoint else "")


def host_of(dataset):
    """The host the source is read from: the endpoint's, an http(s) source's, or the
    cloud's (None for gs:// and s3:// without an endpoint: resolving those says nothing)."""
    url = dataset.endpoint or dataset.source
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and parts.hostname:
        return parts.hostname, parts.port or DEFAULT_PORTS[parts.scheme]
    return None


def precheck(dataset, timeout=5.0):
    """Raise :class:`Unreachable` if a local source is missing or the host does not resolve."""
    source = dataset.source
    if source.startswith(("/", "file://")):
        path = source[len("file://"):] if source.startswith("file://") else source
        if not os.path.isdir(path):
            raise Unreachable(f"{source} cannot be reached: no such folder on this machine")
        return
    target = host_of(dataset)
    if target is None:
        return
    host, port = target
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        pool.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM).result(timeout)
    except concurrent.futures.TimeoutError:
        raise Unreachable(f"{where(dataset)} cannot be reached: looking up the host {host} "
                          f"took over {timeout:g} s") from None
    except OSError:
        raise Unreachable(f"{where(dataset)} cannot be reached: the host {host} does not resolve") from None
    finally:
        pool.shutdown(wait=False)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except ConnectionRefusedError:
        raise Unreachable(f"{where(dataset)} cannot be reached: {host} port {port} refused the connection") from None
    except OSError:
        pass  # a slow or filtered network: the listing, with its own timeout, decides


def check_listing(fs, root, dataset, timeout):
    """List the dataset's root within ``timeout`` seconds or raise :class:`Unreachable`."""
    from fsspec.asyn import AsyncFileSystem, sync

    try:
        if isinstance(fs, AsyncFileSystem):
            sync(fs.loop, fs._ls, root, timeout=timeout)
        else:
            fs.ls(root)
    except FileNotFoundError:
        raise Unreachable(f"{where(dataset)} does not exist (no such bucket, folder or page: "
                          "a typo in the catalog's source?)") from None
    except PermissionError:
        raise Unreachable(f"{where(dataset)} refused access (no permission: public data needs "
                          "no credentials, private data a credentials reference)") from None
    except Exception as e:  # noqa: BLE001
        name = type(e).__name__
        if name in ("FSTimeoutError", "TimeoutError"):
            raise Unreachable(f"{where(dataset)} did not answer within {timeout:g} s") from None
        status = getattr(e, "code", None) or getattr(e, "status", None)
        if status in (401, 403):
            raise Unreachable(f"{where(dataset)} refused access (HTTP {status}: no permission)") from None
        if status == 404:
            raise Unreachable(f"{where(dataset)} does not exist (HTTP 404)") from None
        text = " ".join(str(e).split())[:200] or name
        raise Unreachable(f"{where(dataset)} cannot be listed: {text}") from None
