"""``oggmhub datasets mirror``: fill a bucket laid out as OGGM's download cache.

OGGM looks a URL up in its download cache (``OGGM_DOWNLOAD_CACHE``) at
``<host>/<path>`` (the host without its port: ``oggm.utils._downloads._get_url_cache_name``)
before it downloads anything, and never writes there when ``OGGM_DOWNLOAD_CACHE_RO=1``.
A bucket with that layout, mounted read-only, therefore serves OGGM's downloads with no
internet. This module copies a list of URLs (e.g. from OGGM's own server,
https://cluster.klima.uni-bremen.de/~oggm/), a local tree already in that layout (an
existing OGGM download cache), or OGGM's sample-data zip into such a bucket or folder. It writes with the operator's own
credentials; sessions only ever read.

Objects are written whole (a GCS/S3 object appears only when complete); a URL that fails
to download writes nothing. Objects already there with the same size are skipped unless
``overwrite``.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from urllib.parse import urlsplit

os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")


def cache_name(url):
    """Where OGGM looks for ``url`` in its download cache: ``<host>/<path>``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https", "ftp", "ftps") or not parts.netloc:
        raise ValueError(f"not a download URL: {url!r}")
    return parts.netloc.split(":", 1)[0] + parts.path


@dataclass
class MirrorReport:
    copied: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    failed: list = field(default_factory=list)  # (what, why)

    @property
    def ok(self):
        return not self.failed


def destination(dest, endpoint=None, token=None):
    """``(filesystem, root)`` to write to: ``gs://bucket[/prefix]``, ``s3://...`` or a folder."""
    if dest.startswith("gs://"):
        from gcsfs.core import GCSFileSystem

        kwargs = {"token": token} if token else {}
        if endpoint:
            kwargs["endpoint_url"] = endpoint
            kwargs.setdefault("token", "anon")
        return GCSFileSystem(**kwargs), dest[len("gs://"):].strip("/")
    if dest.startswith("s3://"):
        from s3fs import S3FileSystem

        return S3FileSystem(**({"endpoint_url": endpoint} if endpoint else {})), dest[len("s3://"):].strip("/")
    if "://" in dest and not dest.startswith("file://"):
        raise ValueError(f"cannot write to {dest!r}: use gs://, s3:// or a local folder")
    import fsspec

    root = os.path.abspath(dest[len("file://"):] if dest.startswith("file://") else dest)
    return fsspec.filesystem("file", auto_mkdir=True), root


def _same_size(fs, path, size):
    try:
        return fs.info(path)["size"] == size
    except (FileNotFoundError, OSError):
        return False


def mirror_urls(urls, fs, root, overwrite=False, log=print, **http_options):
    """Download each URL and store it at ``root/<host>/<path>`` on ``fs``."""
    import fsspec

    http = fsspec.filesystem("https", **http_options)
    report = MirrorReport()
    for url in urls:
        try:
            target = f"{root}/{cache_name(url)}" if root else cache_name(url)
        except ValueError as e:
            report.failed.append((url, str(e)))
            log(f"FAILED {url}: {e}")
            continue
        with tempfile.NamedTemporaryFile(prefix="oggmhub-mirror-") as tmp:
            try:
                http.get_file(url, tmp.name)
            except Exception as e:  # noqa: BLE001 - reported, the next URL goes on
                report.failed.append((url, f"download failed: {e}"))
                log(f"FAILED {url}: download failed: {e}")
                continue
            size = os.path.getsize(tmp.name)
            if not overwrite and _same_size(fs, target, size):
                report.skipped.append(target)
                log(f"exists  {target}")
                continue
            fs.put_file(tmp.name, target)
        report.copied.append(target)
        log(f"copied  {url} -> {target}")
    return report


LAYOUT_HELP = ("a folder laid out as OGGM's download cache, <host>/<path> (e.g. "
               "cluster.klima.uni-bremen.de/~oggm/..., github.com/OGGM/oggm-sample-data/archive/<commit>.zip), "
               "or OGGM's sample-data zip (oggm-sample-data-<commit>.zip)")


def _looks_like_host(name):
    return name == "localhost" or ("." in name.strip(".") and not name.startswith("."))


def check_tree(folder):
    """Raise ``ValueError`` (saying what was expected) unless ``folder`` is laid out as
    OGGM's download cache: only ``<host>/`` folders at its top, at least one file below."""
    folder = os.path.abspath(folder)
    if not os.path.isdir(folder):
        raise ValueError(f"{folder} is not a folder; expected {LAYOUT_HELP}")
    entries = sorted(os.listdir(folder))
    wrong = [e for e in entries if not (os.path.isdir(os.path.join(folder, e)) and _looks_like_host(e))]
    if wrong or not entries:
        found = ", ".join(wrong[:5]) + (" ..." if len(wrong) > 5 else "") if wrong else "nothing"
        raise ValueError(f"{folder} is not laid out as OGGM's download cache (found at its top: {found}); "
                         f"expected {LAYOUT_HELP}. Nothing was copied.")
    if not any(files for _, _, files in os.walk(folder)):
        raise ValueError(f"{folder} holds no files; expected {LAYOUT_HELP}. Nothing was copied.")


SAMPLE_DATA_REPO = "github.com/OGGM/oggm-sample-data/archive"
_SAMPLE_ZIP = re.compile(r"^oggm-sample-data-([0-9a-f]{40})\.zip$")


def sample_data_target(path):
    """Where OGGM looks for its sample-data zip ``path`` in a download cache
    (``github.com/OGGM/oggm-sample-data/archive/<commit>.zip``); ``ValueError`` if the
    file is not OGGM's sample data as GitHub archives it."""
    import zipfile

    match = _SAMPLE_ZIP.match(os.path.basename(path))
    if not match:
        raise ValueError(f"{path} is not named oggm-sample-data-<40-hex commit>.zip; expected {LAYOUT_HELP}. "
                         "Nothing was copied.")
    commit = match.group(1)
    try:
        with zipfile.ZipFile(path) as z:
            tops = {n.split("/", 1)[0] for n in z.namelist()}
    except (OSError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path} is not a readable zip ({e}). Nothing was copied.") from None
    if tops != {f"oggm-sample-data-{commit}"}:
        raise ValueError(f"{path} does not hold the single folder oggm-sample-data-{commit}/ that OGGM "
                         f"expects (found: {', '.join(sorted(tops))[:200]}). Nothing was copied.")
    return f"{SAMPLE_DATA_REPO}/{commit}.zip"


def mirror_sample_zip(path, fs, root, overwrite=False, log=print):
    """Copy OGGM's sample-data zip to where OGGM's downloader looks for it."""
    rel = sample_data_target(path)
    target = f"{root}/{rel}" if root else rel
    report = MirrorReport()
    if not overwrite and _same_size(fs, target, os.path.getsize(path)):
        report.skipped.append(target)
        log(f"exists  {target}")
        return report
    fs.put_file(path, target)
    report.copied.append(target)
    log(f"copied  {os.path.basename(path)} -> {target}")
    return report


def mirror_tree(folder, fs, root, overwrite=False, log=print):
    """Copy every file under ``folder`` (already ``<host>/<path>``) to ``root`` on ``fs``.

    ``folder`` may also be OGGM's sample-data zip (:func:`mirror_sample_zip`). Anything
    else (a folder without that layout) raises ``ValueError`` before anything is copied.
    """
    if os.path.isfile(folder):
        return mirror_sample_zip(folder, fs, root, overwrite=overwrite, log=log)
    folder = os.path.abspath(folder)
    check_tree(folder)
    report = MirrorReport()
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in sorted(filenames):
            local = os.path.join(dirpath, name)
            rel = os.path.relpath(local, folder).replace(os.sep, "/")
            target = f"{root}/{rel}" if root else rel
            if not overwrite and _same_size(fs, target, os.path.getsize(local)):
                report.skipped.append(target)
                log(f"exists  {target}")
                continue
            try:
                fs.put_file(local, target)
            except Exception as e:  # noqa: BLE001
                report.failed.append((local, str(e)))
                log(f"FAILED {local}: {e}")
                continue
            report.copied.append(target)
            log(f"copied  {rel} -> {target}")
    return report
