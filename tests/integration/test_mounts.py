"""Read-only FUSE mounts of an emulated GCS bucket: real mounts, real processes.

Every test that mounts cleans up in a ``finally`` (or a fixture's teardown), and the
module's last fixture teardown unmounts anything left under its root, so a failing test
leaves no mount and no process behind.
"""

import errno
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from oggmhub.catalog import Dataset
from oggmhub.mounts import process as mounts
from oggmhub.session import datasets
from support.gcs_emulator import free_port
from support.paths import REPO

pytestmark = pytest.mark.skipif(
    not mounts.fuse_available()[0], reason=f"FUSE unavailable: {mounts.fuse_available()[1]}"
)

BIG = os.urandom(6 * 2**20 + 12345)  # over small_file_size below: read in blocks, ahead
FILES = {
    "mirror/cluster.klima.uni-bremen.de/~oggm/README.txt": b"OGGM mirror\n",
    "mirror/cluster.klima.uni-bremen.de/~oggm/rgi/outlines.csv": b"id,area\nRGI60-11.00897,8.0\n",
    "mirror/big/dem.tif": BIG,
    "mirror/many/" + "f000.txt": b"0",
}
FILES.update({f"mirror/many/f{i:03d}.txt": str(i).encode() for i in range(1, 40)})
WIDE = {f"series/{i:04d}-a-slice-of-a-long-series.dcm": b"d" * (i % 13) for i in range(1500)}
GCS_BUCKETS = {"oggm-data": FILES, "wide-data": WIDE, "changing-data": {"a.txt": b"first version\n", "b.txt": b"b"}}  # conftest's gcs fixture fills them
OPTIONS = mounts.DatasetMounts(block_size=2**20, small_file_size=2**20, readahead=2, timeout=10)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("mounts"))
    yield path
    mounts.cleanup_stale_mounts(path)  # whatever a failed test left


def dataset(gcs, name="mirror", source="gs://oggm-data/mirror", **kw):
    return Dataset(name=name, title=name.title(), source=source, mount_path=f"/data/{name}",
                   endpoint=gcs.url, **kw)


@pytest.fixture(scope="module")
def mounted(gcs, root):
    live = mounts.mount_datasets([dataset(gcs)], root, OPTIONS)
    try:
        yield live[0]
    finally:
        mounts.unmount_datasets(live)


def objects(gcs):
    return {k: v["md5Hash"] for k, v in gcs.filesystem().find("oggm-data", detail=True).items()}


def test_files_are_readable_with_plain_open(mounted):
    top = mounted.mountpoint
    assert mounted.mountpoint in mounts.mounted() and os.path.ismount(top)
    assert sorted(os.listdir(top)) == ["big", "cluster.klima.uni-bremen.de", "many"]
    with open(os.path.join(top, "cluster.klima.uni-bremen.de/~oggm/rgi/outlines.csv")) as f:
        assert f.read() == "id,area\nRGI60-11.00897,8.0\n"
    st = os.stat(os.path.join(top, "big/dem.tif"))
    assert st.st_size == len(BIG) and oct(st.st_mode & 0o777) == "0o444"
    assert st.st_mtime > time.time() - 3600  # the object's time, not 1970
    with open(os.path.join(top, "big/dem.tif"), "rb") as f:
        assert f.read() == BIG
        f.seek(3 * 2**20 - 7)  # across a block boundary, backwards
        assert f.read(20) == BIG[3 * 2**20 - 7:3 * 2**20 + 13]
        f.seek(100)
        assert f.read(5) == BIG[100:105]
    many = os.path.join(top, "many")
    assert [open(os.path.join(many, n), "rb").read() for n in sorted(os.listdir(many))] == [
        FILES[f"mirror/many/{n}"] for n in sorted(os.listdir(many))]
    with pytest.raises(FileNotFoundError):
        open(os.path.join(top, "no-such-file"))


def test_listing_is_served_from_the_listing_cache(mounted, gcs):
    folder = os.path.join(mounted.mountpoint, "many")
    os.listdir(folder)
    mark = gcs.mark()
    sizes = [os.stat(os.path.join(folder, n)).st_size for n in os.listdir(folder)]
    assert len(sizes) == 40 and gcs.requests(mark) == []


def test_a_listed_folders_attributes_come_with_the_listing(gcs, tmp_path):
    """A folder of 1,500 files lists whole (libfuse asks in many calls); sizes, modes and
    the I/O size come with the listing (READDIRPLUS): with the mount process stopped,
    every file of the listed folder still stats, with no round trip to it."""
    live = mounts.mount_datasets([dataset(gcs, name="wide", source="gs://wide-data")], str(tmp_path), OPTIONS)
    top = os.path.join(live[0].mountpoint, "series")
    try:
        names = os.listdir(top)
        assert sorted(names) == sorted(n.split("/")[1] for n in WIDE) and len(names) == 1500
        stats = {}

        def stat_all():
            for name in names:
                stats[name] = os.stat(os.path.join(top, name))

        os.kill(live[0].pid, signal.SIGSTOP)
        try:
            probe = threading.Thread(target=stat_all, daemon=True)
            probe.start()
            probe.join(10)
            answered = len(stats)
        finally:
            os.kill(live[0].pid, signal.SIGCONT)
        probe.join(30)
        assert answered == 1500, f"{answered} stat calls answered: the others waited for a LOOKUP by the mount process"
        assert {n: st.st_size for n, st in stats.items()} == {n.split("/")[1]: len(v) for n, v in WIDE.items()}
        st = stats[names[0]]
        assert oct(st.st_mode & 0o777) == "0o444" and st.st_mtime > time.time() - 3600
        assert st.st_blksize == 2**20  # programs read 1 MiB at a time (libfuse3's largest read)
        ls = subprocess.run(["ls", "-l", top], capture_output=True, text=True, check=True).stdout.splitlines()
        assert len(ls) == 1501 and all(line.startswith("-r--r--r--") for line in ls[1:])
    finally:
        mounts.unmount_datasets(live)


def test_an_object_changed_since_listed_fails_clearly_then_is_served_anew(gcs, tmp_path):
    """An object replaced by one of another size while its listing is kept: the read fails
    with ESTALE ("Stale file handle", the mount's log names the object), not a silently
    cut or mixed file; once the kernel's attributes expire, the new object is served. One
    deleted since listed: FileNotFoundError."""
    fs = gcs.filesystem()
    options = mounts.DatasetMounts(timeout=10, kernel_ttl=0.5, listings_ttl=600)
    live = mounts.mount_datasets([dataset(gcs, name="changing", source="gs://changing-data")],
                                 str(tmp_path), options)
    path = os.path.join(live[0].mountpoint, "a.txt")
    try:
        assert os.path.getsize(path) == 14
        fs.pipe("changing-data/a.txt", b"v2\n")
        with pytest.raises(OSError) as info:
            with open(path, "rb") as f:
                f.read()
        assert info.value.errno == errno.ESTALE, info.value
        time.sleep(1)  # the kernel's attributes expire; the mount lists the folder again
        with open(path, "rb") as f:
            assert f.read() == b"v2\n"
        fs.rm("changing-data/b.txt")  # listed, never read, then deleted
        with pytest.raises(FileNotFoundError):
            with open(os.path.join(live[0].mountpoint, "b.txt"), "rb") as f:
                f.read()
    finally:
        mounts.unmount_datasets(live)


def test_every_write_fails_with_erofs_and_the_bucket_is_unchanged(mounted, gcs):
    top = mounted.mountpoint
    readme = os.path.join(top, "cluster.klima.uni-bremen.de/~oggm/README.txt")
    before, mark = objects(gcs), gcs.mark()
    attempts = {
        "write": lambda: open(readme, "w"),
        "append": lambda: open(readme, "a"),
        "read-write": lambda: open(readme, "r+"),
        "create": lambda: open(os.path.join(top, "new.txt"), "w"),
        "exclusive create": lambda: os.open(os.path.join(top, "new.txt"), os.O_CREAT | os.O_EXCL | os.O_WRONLY),
        "delete": lambda: os.remove(readme),
        "rename": lambda: os.rename(readme, readme + ".old"),
        "rename folder": lambda: os.rename(os.path.join(top, "many"), os.path.join(top, "few")),
        "chmod": lambda: os.chmod(readme, 0o666),
        "chown": lambda: os.chown(readme, 1000, 1000),
        "truncate": lambda: os.truncate(readme, 0),
        "utime": lambda: os.utime(readme, (0, 0)),
        "mkdir": lambda: os.mkdir(os.path.join(top, "new-folder")),
        "rmdir": lambda: os.rmdir(os.path.join(top, "many")),
        "symlink": lambda: os.symlink(readme, os.path.join(top, "link")),
        "hard link": lambda: os.link(readme, os.path.join(top, "link")),
        "mknod": lambda: os.mkfifo(os.path.join(top, "fifo")),
        "setxattr": lambda: os.setxattr(readme, "user.note", b"x"),
    }
    for name, attempt in attempts.items():
        with pytest.raises(OSError) as info:
            attempt()
        assert info.value.errno == errno.EROFS, f"{name}: {info.value}"
    assert not os.access(readme, os.W_OK)
    assert gcs.writes(mark) == [] and objects(gcs) == before  # no empty objects either
    assert open(readme, "rb").read() == b"OGGM mirror\n"


def test_the_api_gives_the_mount_path_and_falls_back_to_the_mount(mounted, gcs, root, monkeypatch):
    # a session whose dataset needs credentials only the mounter holds (a k8s secret)
    held = Dataset(name="mirror", title="Mirror", source="gs://oggm-data/mirror", mount_path="/data/mirror",
                   endpoint=gcs.url, credentials={"secret": "mirror-reader"})
    for key, value in datasets.session_env([held], mount_root=root).items():
        monkeypatch.setenv(key, value)
    assert datasets.path("mirror") == mounted.mountpoint
    fs = datasets.open("mirror")
    assert fs.cat("cluster.klima.uni-bremen.de/~oggm/README.txt") == b"OGGM mirror\n"
    with pytest.raises(PermissionError, match="dataset 'mirror' is read-only"):
        fs.pipe("x.txt", b"x")


def assert_nothing_left(root, before_pids=()):
    assert not [p for p in mounts.mounted() if p.startswith(root)]
    assert not os.path.exists(os.path.join(root, "data")), os.listdir(root)
    left = subprocess.run(["pgrep", "-f", f"oggmhub.mounts.process serve .*{root}"], capture_output=True, text=True)
    assert left.stdout.strip() == "", left.stdout


def test_an_unreachable_bucket_fails_naming_the_dataset_and_leaves_nothing(gcs, tmp_path):
    root = str(tmp_path / "fail")
    os.makedirs(root)
    good = dataset(gcs)
    missing = dataset(gcs, name="rgi7", source="gs://no-such-bucket/rgi7")
    with pytest.raises(mounts.MountError, match=r"dataset 'rgi7': gs://no-such-bucket/rgi7 at http://127.0.0.1:\d+ does not exist"):
        mounts.mount_datasets([good, missing], root, OPTIONS)  # the good one is undone too
    assert_nothing_left(root)

    closed = Dataset(name="era5", title="ERA5", source="gs://era5", mount_path="/data/era5",
                     endpoint=f"http://127.0.0.1:{free_port()}")
    start = time.monotonic()
    with pytest.raises(mounts.MountError, match=r"dataset 'era5': gs://era5 at http://127.0.0.1:\d+ cannot be reached: 127.0.0.1 port \d+ refused the connection"):
        mounts.mount_datasets([closed], root, mounts.DatasetMounts(timeout=2))
    assert time.monotonic() - start < 10
    assert_nothing_left(root)


def test_a_busy_or_non_empty_mount_point_is_refused(gcs, mounted, tmp_path):
    with pytest.raises(mounts.MountError, match="is already mounted"):
        mounts.mount_dataset(dataset(gcs), mounted.mountpoint, OPTIONS)
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "file").write_text("x")
    with pytest.raises(mounts.MountError, match="dataset 'mirror': mount point .* is not empty"):
        mounts.mount_dataset(dataset(gcs), str(occupied), OPTIONS)


def test_stale_mounts_after_a_crash_or_restart_are_cleaned_up(gcs, tmp_path):
    root = str(tmp_path / "hub")
    crashed, alive = (mounts.mount_datasets([dataset(gcs, name=n)], root, OPTIONS)[0] for n in ("crashed", "alive"))
    try:
        os.kill(crashed.pid, signal.SIGKILL)  # the FUSE process dies: a dead mount stays
        crashed.process.wait(10)
        with pytest.raises(OSError) as info:
            os.listdir(crashed.mountpoint)
        assert info.value.errno == errno.ENOTCONN
        # a restarted hub knows nothing of these mounts; it cleans up under its root
        kept = mounts.cleanup_stale_mounts(root, keep=[alive.mountpoint])
        assert kept == [crashed.mountpoint] and alive.mountpoint in mounts.mounted()
        assert sorted(mounts.cleanup_stale_mounts(root)) == [alive.mountpoint]
        alive.process.wait(10)  # its process ends with its mount
        assert not [p for p in mounts.mounted() if p.startswith(root)]
    finally:
        mounts.cleanup_stale_mounts(root)
        for m in (crashed, alive):
            if m.process.poll() is None:
                m.process.kill()
                m.process.wait()


def test_cli_mounts_and_unmounts(gcs, tmp_path):
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(
        "environments:\n  e:\n    display_name: E\n    description: E\n    image: {name: e, tag: '1'}\n"
        "    sizes: {s: {display_name: S, cpu: {guarantee: 1, limit: 1}, memory: {guarantee: 1G, limit: 1G}}}\n"
        f"datasets:\n  mirror: {{title: M, source: gs://oggm-data/mirror, endpoint: '{gcs.url}'}}\n")
    root = str(tmp_path / "cli")
    cli = [sys.executable, "-m", "oggmhub", "datasets"]
    result = subprocess.run([*cli, "mount", "mirror", "--root", root, "--catalog", str(catalog)],
                            capture_output=True, text=True, cwd=REPO, timeout=60)
    try:
        assert result.returncode == 0, result.stderr
        assert f"mounted mirror at {root}/data/mirror" in result.stdout
        assert os.listdir(f"{root}/data/mirror/many")
        result = subprocess.run([*cli, "unmount", "--root", root], capture_output=True, text=True, timeout=60)
        assert f"unmounted {root}/data/mirror" in result.stdout
    finally:
        mounts.cleanup_stale_mounts(root)
    assert not [p for p in mounts.mounted() if p.startswith(root)]
    result = subprocess.run([*cli, "mount", "nope", "--root", root, "--catalog", str(catalog)],
                            capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 2 and "unknown dataset(s) nope; the catalog has: mirror" in result.stderr


def test_cli_wait_mode_unmounts_on_sigterm(gcs, tmp_path):
    """The Kubernetes sidecar's command: datasets from the environment, until SIGTERM."""
    root = str(tmp_path / "sidecar")
    env = {**os.environ, **datasets.session_env([dataset(gcs)])}
    proc = subprocess.Popen([sys.executable, "-m", "oggmhub", "datasets", "mount", "--from-env", "--root", root, "--wait"],
                            stdout=subprocess.PIPE, text=True, env=env, cwd=REPO)
    try:
        assert proc.stdout.readline().startswith(f"mounted mirror at {root}/data/mirror")
        assert f"{root}/data/mirror" in mounts.mounted()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert f"{root}/data/mirror" not in mounts.mounted()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        mounts.cleanup_stale_mounts(root)


# --- L07: links out of a local folder are not served ----------------------------------


@pytest.mark.skipif(os.geteuid() != 0, reason="a root-run mount read by another account needs root")
def test_a_link_out_of_a_local_folder_dataset_is_not_served_to_another_account(capfd):
    """A local-folder dataset holds links to a root-only file outside it (a file link, a
    folder link, a relative ``..`` link); the root-run mount, read by the account
    ``nobody``, serves none of them, serves the links that stay inside, and the admin's
    log names each link skipped. The root-only file is unchanged."""
    from support.local_hub import accounts_folder

    nobody = 65534
    with accounts_folder("oggmhub-l07-") as top:
        secret_dir = os.path.join(top, "private")
        os.makedirs(secret_dir, mode=0o700)
        secret = os.path.join(secret_dir, "shadow")
        with open(secret, "w") as f:
            f.write("root-only secret\n")
        os.chmod(secret, 0o600)
        source = os.path.join(top, "source")
        os.makedirs(os.path.join(source, "sub"))
        with open(os.path.join(source, "sub", "data.txt"), "w") as f:
            f.write("dataset data\n")
        os.symlink(secret, os.path.join(source, "link-to-secret"))
        os.symlink("../private", os.path.join(source, "link-to-folder"))
        os.symlink("../../private/shadow", os.path.join(source, "sub", "relative-link"))
        os.symlink("sub/data.txt", os.path.join(source, "inside-link"))  # stays inside: served
        before = os.stat(secret)
        mountpoint = os.path.join(top, "mnt")
        mount = mounts.mount_dataset(Dataset(name="local-l07", title="L07", source=source, mount_path="/data/l07"),
                                     mountpoint, OPTIONS)
        try:
            def as_nobody(*command):
                return subprocess.run(command, user=nobody, group=nobody, capture_output=True, text=True, timeout=30)

            assert as_nobody("cat", os.path.join(mountpoint, "sub", "data.txt")).stdout == "dataset data\n"
            assert as_nobody("cat", os.path.join(mountpoint, "inside-link")).stdout == "dataset data\n"
            listing = as_nobody("ls", "-a", mountpoint, os.path.join(mountpoint, "sub")).stdout
            assert "inside-link" in listing and "data.txt" in listing
            for name in ("link-to-secret", "link-to-folder", "relative-link"):
                assert name not in listing
            for path in ("link-to-secret", "link-to-folder/shadow", "sub/relative-link"):
                done = as_nobody("cat", os.path.join(mountpoint, path))
                assert done.returncode != 0 and "root-only secret" not in done.stdout, path
                assert "No such file or directory" in done.stderr, done.stderr
            # root itself, through the mount: not served either
            assert not os.path.exists(os.path.join(mountpoint, "link-to-secret"))
        finally:
            mounts.unmount(mount)
        after = os.stat(secret)
        assert (after.st_mode, after.st_uid, after.st_size, after.st_mtime_ns) == (
            before.st_mode, before.st_uid, before.st_size, before.st_mtime_ns)
        with open(secret) as f:
            assert f.read() == "root-only secret\n"
    err = capfd.readouterr().err
    for name in ("link-to-secret", "link-to-folder", "sub/relative-link"):
        assert f"dataset local-l07: not serving {os.path.join(source, name)}: it is a link that leads out" in err, err


def test_local_source_reads_refuse_a_link_swapped_in_after_the_check(tmp_path):
    """A folder of the dataset replaced by a link to the outside after the mount started
    is not read through (the read resolves and checks the path, then opens it folder by
    folder with O_NOFOLLOW, so a link swapped in between fails too)."""
    from oggmhub.mounts.source_links import LocalSource

    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "f.txt").write_text("outside")
    (tmp_path / "ds" / "sub").mkdir(parents=True)
    (tmp_path / "ds" / "sub" / "f.txt").write_text("inside")
    source = LocalSource(str(tmp_path / "ds"), "ds")
    assert source.read(str(tmp_path / "ds" / "sub" / "f.txt"), 0, 100) == b"inside"
    assert source.read(str(tmp_path / "ds" / "sub" / "f.txt"), 2, 4) == b"si"
    os.rename(tmp_path / "ds" / "sub", tmp_path / "ds" / "old")
    os.symlink(tmp_path / "outside", tmp_path / "ds" / "sub")
    with pytest.raises(FileNotFoundError):
        source.read(str(tmp_path / "ds" / "sub" / "f.txt"), 0, 100)
