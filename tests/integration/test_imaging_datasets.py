"""Imaging datasets through the mounts, with real images (tests/support/imaging_data.py):
a DICOM CT series from pydicom's wheel and scikit-image's cell as OME-Zarr, in a GCS
emulator bucket laid out as IDC and IDR lay out theirs, mounted read-only with FUSE the
way a Slicer or Fiji session mounts the catalog's archives. The tutorials' code paths
(oggmhub.session.imaging, then the Otsu Threshold and InvertAndMeasure tasks' own tools)
run on the mounts (the tutorials' "tasks" cells go through the hub's tasks service in
tests/e2e/test_tasks_hub.py); damaged objects give errors naming them, within seconds;
archives out of reach are named and left out."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from oggmhub.catalog import load_catalog
from oggmhub.mounts import process as mounts
from oggmhub.session import datasets, imaging
from support.imaging_data import IMAGE, LEVELS, SERIES, TRUNCATED, cell_image, imaging_objects, session_variables, tutorial_script
from support.paths import CATALOG, REPO

pytestmark = pytest.mark.skipif(
    not mounts.fuse_available()[0], reason=f"FUSE unavailable: {mounts.fuse_available()[1]}"
)

GCS_BUCKETS = {"imaging": imaging_objects()}
OPTIONS = mounts.DatasetMounts(timeout=5)


def archive(gcs, name, prefix, **kw):
    """The shipped catalog's entry ``name``, its source replaced by the emulator's copy."""
    shipped = load_catalog(str(CATALOG)).datasets[name]
    return datasets.Dataset(**{**shipped.__dict__, "source": f"gs://imaging/{prefix}", "endpoint": gcs.url, **kw})


@pytest.fixture(scope="module")
def mounted(gcs, tmp_path_factory):
    root = str(tmp_path_factory.mktemp("imaging-mounts"))
    idc, idr = archive(gcs, "idc-nlst-ct", SERIES), archive(gcs, "idr-nuclei-3d", IMAGE)
    live = mounts.mount_datasets([idc, idr], root, OPTIONS)
    try:
        yield {m.dataset: m.mountpoint for m in live}
    finally:
        mounts.unmount_datasets(live)
        mounts.cleanup_stale_mounts(root)


def test_the_dicom_series_reads_as_a_volume_and_otsu_segments_it(mounted, tmp_path):
    import SimpleITK as sitk

    folder = mounted["idc-nlst-ct"]
    assert len(os.listdir(folder)) == 5 and all(n.endswith(".dcm") for n in os.listdir(folder))
    volume = imaging.read_dicom_series(folder)  # the Slicer tutorial's first step
    assert volume.GetSize() == (16, 16, 5)
    assert volume.GetSpacing()[2] == pytest.approx(2.5, abs=0.01)  # the slices' real positions
    voxels = sitk.GetArrayFromImage(volume)
    assert voxels.std() > 10  # a real CT, not a constant
    # the Otsu Threshold task's own tool (what the tasks service runs), on the volume
    source = tmp_path / "ct.nrrd"
    sitk.WriteImage(volume, str(source))
    labels = tmp_path / "labels.nrrd"
    out = subprocess.run([sys.executable, os.path.join(REPO, "images", "slicer", "tasks", "OtsuThreshold.py"),
                          str(source), str(labels)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(labels)))
    assert set(np.unique(mask)) == {0, 1} and 0.05 < mask.mean() < 0.95
    assert voxels[mask == 1].mean() > voxels[mask == 0].mean()  # the foreground is the brighter part


def test_the_ome_zarr_opens_lazily_and_fiji_inverts_and_measures_it(mounted, gcs, tmp_path):
    import tifffile

    path = mounted["idr-nuclei-3d"]
    mark = gcs.mark()
    levels = imaging.open_ome_zarr(path)  # the Fiji tutorial's first step: metadata only
    assert [a.shape for a in levels] == [(660, 550), (330, 275), (165, 138)] and len(levels) == LEVELS
    smallest = levels[-1][...]
    np.testing.assert_array_equal(smallest, cell_image()[::4, ::4])
    from urllib.parse import unquote

    paths = [unquote(p) for _, p, _ in gcs.requests(mark)]
    assert any(f"{IMAGE}/2/" in p for p in paths), paths  # the lowest level's chunks came from the bucket
    assert not [p for p in paths if f"{IMAGE}/0/" in p and ".z" not in p], paths  # level 0's never did
    # the InvertAndMeasure task's own tool, on ImageJ (Debian's stands in for Fiji here)
    if not os.path.exists("/usr/bin/imagej"):
        pytest.skip("Debian's imagej (the stand-in for Fiji's download) is not installed")
    tif, result = tmp_path / "cell-small.tif", tmp_path / "inverted.tif"
    tifffile.imwrite(tif, smallest)
    values = {"input": str(tif), "output": str(result), "radius": 0, "format": "Tiff"}
    out = subprocess.run([sys.executable, "-m", "oggmhub.tasks.script_runner",
                          os.path.join(REPO, "images", "fiji", "tasks", "InvertAndMeasure.ijm"), json.dumps(values)],
                         capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    assert out.returncode == 0, (out.stdout + out.stderr)[-2000:]
    mean = float(out.stdout.split("mean after invert:")[1].split()[0])
    assert mean == pytest.approx(255 - smallest.mean(), abs=1.0)
    np.testing.assert_array_equal(tifffile.imread(result), 255 - smallest)


def test_a_truncated_dicom_file_is_named(gcs, tmp_path):
    dataset = datasets.Dataset(name="damaged", title="Damaged", source="gs://imaging/faults",
                               mount_path="/data/damaged", endpoint=gcs.url)
    live = mounts.mount_datasets([dataset], str(tmp_path), OPTIONS)
    try:
        start = time.monotonic()
        with pytest.raises(imaging.ImagingError) as info:
            imaging.read_dicom_series(live[0].mountpoint)
        assert time.monotonic() - start < 30
        assert os.path.basename(TRUNCATED) in str(info.value) or "DICOM series" in str(info.value)
    finally:
        mounts.unmount_datasets(live)
    with pytest.raises(imaging.ImagingError, match="no such folder"):
        imaging.read_dicom_series(str(tmp_path / "not-there"))


def test_a_missing_zarr_chunk_is_named_not_filled_with_zeros(gcs, tmp_path):
    fs = gcs.filesystem()
    fs.copy(f"imaging/{IMAGE}", "imaging/gappy.ome.zarr", recursive=True)
    fs.rm("imaging/gappy.ome.zarr/2/0.0")
    dataset = datasets.Dataset(name="gappy", title="Gappy", source="gs://imaging/gappy.ome.zarr",
                               mount_path="/data/gappy", endpoint=gcs.url)
    live = mounts.mount_datasets([dataset], str(tmp_path), OPTIONS)
    try:
        levels = imaging.open_ome_zarr(live[0].mountpoint)
        start = time.monotonic()
        with pytest.raises(imaging.ImagingError, match=r"gappy/2/0\.0: chunk missing"):
            levels[-1][...]
        assert time.monotonic() - start < 30
        with pytest.raises(imaging.ImagingError, match="not an OME-Zarr image"):
            imaging.open_ome_zarr(os.path.join(live[0].mountpoint, "2"))
    finally:
        mounts.unmount_datasets(live)


# --- the tutorials' own code, on the mounts ------------------------------------------

@pytest.mark.parametrize("env, name, expect", [
    ("slicer", "idc-nlst-ct", r"5 DICOM files -> \(16, 16, 5\) voxels[\s\S]*foreground: [0-9.]+% of the voxels; mean (-?\d+) inside, (-?\d+) outside"),
    ("fiji", "idr-nuclei-3d", r"levels: \[\(660, 550\), \(330, 275\), \(165, 138\)\][\s\S]*objects: [1-9]"),
])
def test_the_tutorials_dataset_cells_run_on_the_mounted_archive(mounted, gcs, tmp_path, env, name, expect):
    import re

    if env == "fiji" and not os.path.exists("/usr/bin/imagej"):
        pytest.skip("Debian's imagej (the stand-in for Fiji's download) is not installed")
    archives = [archive(gcs, "idc-nlst-ct", SERIES), archive(gcs, "idr-nuclei-3d", IMAGE)]
    env_vars = {**os.environ, "HOME": str(tmp_path), "MPLBACKEND": "Agg", "PYTHONPATH": str(REPO),
                **session_variables(archives, mounted)}
    out = subprocess.run([sys.executable, "-c", tutorial_script(env, tasks="tools")], capture_output=True, text=True,
                         env=env_vars, cwd=str(tmp_path), timeout=600)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    match = re.search(expect, out.stdout)
    assert match, out.stdout[-3000:]
    if env == "slicer":
        assert int(match.group(1)) > int(match.group(2))  # Otsu's foreground is the brighter part


# --- archives out of reach --------------------------------------------------------------


def test_the_shipped_archives_out_of_reach_are_left_out_and_named(tmp_path):
    import socket

    shipped = load_catalog(str(CATALOG)).datasets
    archives = [shipped["idc-nlst-ct"], shipped["idr-nuclei-3d"]]
    try:
        socket.getaddrinfo("storage.googleapis.com", 443)
        pytest.skip("this machine reaches the internet: the archives would be mounted, not left out")
    except OSError:
        pass
    assert all(not d.required for d in archives)  # a session starts without them
    missing = {}
    start = time.monotonic()
    live = mounts.mount_datasets(archives, str(tmp_path), OPTIONS, unavailable=lambda d, e: missing.update({d.name: str(e)}))
    assert time.monotonic() - start < 15
    assert live == [] and sorted(missing) == ["idc-nlst-ct", "idr-nuclei-3d"]
    assert missing["idc-nlst-ct"].startswith("dataset 'idc-nlst-ct': gs://idc-open-data/54f72056")
    assert "s3://idr/zarr/v0.4/idr0062A/6001240.zarr at https://uk1s3.embassy.ebi.ac.uk" in missing["idr-nuclei-3d"]
    assert not [p for p in mounts.mounted() if p.startswith(str(tmp_path))]


def test_an_s3_endpoint_that_never_answers_is_bounded_by_the_mount_timeout(tmp_path):
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)  # accepts, never answers: an S3-compatible service that hangs
    try:
        endpoint = f"http://127.0.0.1:{sock.getsockname()[1]}"
        slow = datasets.Dataset(name="slow-idr", title="Slow", source="s3://idr/zarr/v0.4/idr0062A/6001240.zarr",
                                mount_path="/data/slow-idr", endpoint=endpoint)
        start = time.monotonic()
        with pytest.raises(mounts.MountError, match=r"dataset 'slow-idr': s3://idr/.* did not answer within 5 s"):
            mounts.mount_datasets([slow], str(tmp_path), OPTIONS)
        assert time.monotonic() - start < 15  # the timeout holds, retries included
        assert not [p for p in mounts.mounted() if p.startswith(str(tmp_path))]
    finally:
        sock.close()
