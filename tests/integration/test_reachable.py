"""Unreachable data fails fast and clearly: a typo'd host, an HTTP 404, no permission and
a server that never answers are each reported in one sentence naming the dataset and its
source, within 10 s, with nothing left mounted (real FUSE mounts, a real HTTP server)."""

import http.server
import os
import socket
import threading
import time

import pytest

from oggmhub.catalog import Dataset
from oggmhub.mounts import process as mounts

pytestmark = pytest.mark.skipif(not mounts.fuse_available()[0], reason=f"no FUSE here: {mounts.fuse_available()[1]}")


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        if self.path.startswith("/slow"):
            return self.slow()
        if self.path.startswith("/private"):
            self.send_error(403)
        elif self.path == "/data":  # as Apache does for a folder
            self.send_response(301)
            self.send_header("Location", "/data/")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/data/":
            body = b'<html><a href="a.txt">a.txt</a></html>'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path == "/data/a.txt":
            body = b"RGI60-11.00897,8.036\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_error(404)

    do_HEAD = do_GET

    def slow(self):
        """``/slow/``: a listing and a fast file, and a file whose contents take 30 s."""
        if self.path == "/slow":  # a folder without its '/', as a web server redirects it
            self.send_response(301)
            self.send_header("Location", "/slow/")
            self.send_header("Content-Length", "0")
            return self.end_headers()
        files = {"/slow/early.txt": b"first\n", "/slow/fast.txt": b"quick\n", "/slow/hangs.txt": b"x" * 100}
        body = b'<html><a href="early.txt">early.txt</a><a href="fast.txt">fast.txt</a>' \
               b'<a href="hangs.txt">hangs.txt</a></html>' \
            if self.path == "/slow/" else files.get(self.path)
        if body is None:
            return self.send_error(404)
        if self.command == "GET" and self.path == "/slow/hangs.txt":
            time.sleep(30)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def silent():
    """A server that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


def refused(tmp_path, source, match, **fields):
    dataset = Dataset(name="glaciers", title="Glaciers", source=source, mount_path="/data/glaciers", **fields)
    root = tmp_path / "mounts"
    start = time.monotonic()
    with pytest.raises(mounts.MountError) as info:
        mounts.mount_datasets([dataset], str(root), mounts.DatasetMounts())
    took = time.monotonic() - start
    message = str(info.value)
    assert message.startswith(f"dataset 'glaciers': {source}"), message
    assert match in message, message
    assert "\n" not in message and "Traceback" not in message
    assert took < 10, f"{took:.1f} s: {message}"
    assert not [p for p in mounts.mounted() if p.startswith(str(root))]
    assert not (root / "data").exists()  # no folder left behind either
    return message


def test_a_host_that_does_not_resolve(tmp_path):
    refused(tmp_path, "https://cluster.klima.uni-bremen.invalid/~oggm/", "the host cluster.klima.uni-bremen.invalid does not resolve")


def test_an_http_404(tmp_path, server):
    refused(tmp_path, f"{server}/~ogm/", "does not exist")


def test_no_permission(tmp_path, server):
    refused(tmp_path, f"{server}/private/", "refused access")


def test_a_bucket_endpoint_that_refuses_connections(tmp_path):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    refused(tmp_path, "gs://oggm-mirror", "refused the connection", endpoint=f"http://127.0.0.1:{port}")


def test_a_server_that_never_answers(tmp_path, silent):
    refused(tmp_path, f"{silent}/data/", "did not answer within 5 s")


def test_a_local_folder_that_is_missing(tmp_path):
    refused(tmp_path, str(tmp_path / "nowhere"), "no such folder")


def test_an_http_source_mounts_with_file_sizes(tmp_path, server):
    dataset = Dataset(name="web", title="Web", source=f"{server}/data/", mount_path="/data/web")
    live = mounts.mount_datasets([dataset], str(tmp_path / "m"), mounts.DatasetMounts())
    try:
        path = os.path.join(live[0].mountpoint, "a.txt")
        assert os.listdir(live[0].mountpoint) == ["a.txt"]
        assert os.path.getsize(path) == 21  # an index page gives no sizes: asked for
        assert open(path).read() == "RGI60-11.00897,8.036\n"
    finally:
        mounts.unmount_datasets(live)


def test_a_source_that_hangs_on_a_read_fails_that_read_in_read_timeout_and_the_mount_goes_on(tmp_path, server):
    import errno

    dataset = Dataset(name="slow", title="Slow", source=f"{server}/slow/", mount_path="/data/slow")
    live = mounts.mount_datasets([dataset], str(tmp_path / "mounts"), mounts.DatasetMounts(read_timeout=2))
    try:
        top = live[0].mountpoint
        assert sorted(os.listdir(top)) == ["early.txt", "fast.txt", "hangs.txt"]
        start = time.monotonic()
        with pytest.raises(OSError) as info:
            with open(os.path.join(top, "hangs.txt"), "rb") as f:
                f.read()
        took = time.monotonic() - start
        assert info.value.errno == errno.ETIMEDOUT and 1.5 < took < 10, (info.value, took)
        with open(os.path.join(top, "fast.txt"), "rb") as f:  # the mount is not frozen
            assert f.read() == b"quick\n"
    finally:
        mounts.unmount_datasets(live)


def test_a_prefetched_file_whose_source_hangs_fails_in_read_timeout_too(tmp_path, server):
    """Small files opened in listing order are fetched ahead (prefetch_files); a prefetch
    that hangs fails the read in read_timeout as a fetch does, never waits for ever."""
    import errno

    dataset = Dataset(name="slow", title="Slow", source=f"{server}/slow/", mount_path="/data/slow")
    live = mounts.mount_datasets([dataset], str(tmp_path / "mounts"), mounts.DatasetMounts(read_timeout=2))
    try:
        top = live[0].mountpoint
        names = sorted(os.listdir(top))
        assert [os.path.getsize(os.path.join(top, n)) for n in names] == [6, 6, 100]  # sizes known: prefetched
        assert open(os.path.join(top, "early.txt"), "rb").read() == b"first\n"
        start = time.monotonic()
        assert open(os.path.join(top, "fast.txt"), "rb").read() == b"quick\n"  # the next one: hangs.txt, ahead
        with pytest.raises(OSError) as info:
            with open(os.path.join(top, "hangs.txt"), "rb") as f:
                f.read()
        took = time.monotonic() - start
        assert info.value.errno == errno.ETIMEDOUT and 1.5 < took < 10, (info.value, took)
        assert open(os.path.join(top, "fast.txt"), "rb").read() == b"quick\n"  # the mount goes on
    finally:
        mounts.unmount_datasets(live)
