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
