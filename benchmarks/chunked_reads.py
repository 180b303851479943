"""Chunked imaging formats through the FUSE mount and directly, from one GCS emulator.

One command, one emulator (fake-gcs-server on 127.0.0.1), one run::

    python benchmarks/chunked_reads.py [--zarr-mb 1024] [--dicom-files 200] [--repeat 3]

* A Zarr array (Zarr format 2, float32, uncompressed chunks of 512 x 512 = 1 MiB, each
  scikit-image's ``camera`` image) read whole with zarr: through the mount (zarr's
  ``LocalStore`` on the mounted folder) and directly (zarr's ``FsspecStore`` on gcsfs).
* A DICOM series of ``--dicom-files`` CT slices (pydicom's ``CT_small.dcm``, 128 x 128,
  scaled to 512 x 512 int16: about 0.5 MB a file, an IDC CT slice's size), each file read
  and decoded with pydicom one after the other: ``dcmread(path)`` through the mount,
  ``dcmread(BytesIO(fs.cat_file(...)))`` directly.
* An OME-Zarr image (scikit-image's ``cell`` as a 3-level pyramid): on a fresh mount (the
  mounting itself not timed) or with a fresh gcsfs client, the time from opening it to the
  first pixel of its lowest level
  (``oggmhub.session.imaging.open_ome_zarr`` through the mount; zarr on gcsfs directly).

Every run is cold (a fresh mount, whose mounting is not timed; a fresh gcsfs client); each figure is the median of
``--repeat`` runs, the two ways alternating. Ratios are ``t_direct / t_mount`` (above 1:
the mount is faster). The last line is JSON: ``zarr_mount_vs_direct``,
``dicom_mount_vs_direct`` (target >= 0.8 each), the OME-Zarr times and the settings.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, os.path.join(HERE, ".."))
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

import numpy as np  # noqa: E402
import pydicom  # noqa: E402
import zarr  # noqa: E402
from support.gcs_emulator import GCSEmulator  # noqa: E402
from support.imaging_data import cell_image, ome_zarr_objects  # noqa: E402

from oggmhub.catalog import Dataset  # noqa: E402
from oggmhub.mounts import process as mounts  # noqa: E402
from oggmhub.session import imaging  # noqa: E402

BUCKET = "bench"
SIDE = 512  # a chunk is SIDE x SIDE float32 = 1 MiB


def fill_zarr(fs, megabytes):
    """``BUCKET/big.zarr``: about ``megabytes`` MiB in 1 MiB chunks; its shape."""
    from skimage import data

    per_side = max(1, int(round(megabytes ** 0.5)))
    shape = (per_side * SIDE, per_side * SIDE)
    with tempfile.TemporaryDirectory() as tmp:  # the metadata, written by zarr itself
        zarr.create_array(tmp, shape=shape, chunks=(SIDE, SIDE), dtype="float32", compressors=None,
                          fill_value=0, zarr_format=2)
        for name in os.listdir(tmp):
            fs.pipe(f"{BUCKET}/big.zarr/{name}", open(os.path.join(tmp, name), "rb").read())
    chunk = data.camera().astype("float32").tobytes()
    fs.pipe({f"{BUCKET}/big.zarr/{i}.{j}": chunk for i in range(per_side) for j in range(per_side)})
    return shape


def fill_dicom(fs, count):
    """``BUCKET/series/NNNN.dcm``: ``count`` CT slices of 512 x 512; bytes in all."""
    ds = pydicom.dcmread(os.path.join(os.path.dirname(pydicom.__file__), "data", "test_files", "CT_small.dcm"))
    pixels = np.kron(ds.pixel_array, np.ones((4, 4), dtype=ds.pixel_array.dtype))
    ds.Rows, ds.Columns, ds.PixelData = pixels.shape[0], pixels.shape[1], pixels.tobytes()
    total = 0
    for i in range(count):
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.ImagePositionPatient = [0, 0, float(i)]
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True)
        fs.pipe(f"{BUCKET}/series/{i:04d}.dcm", out.getvalue())
        total += len(out.getvalue())
    return total


def median(fn, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--zarr-mb", type=int, default=1024, help="the Zarr array's size in MiB (1 MiB chunks)")
    parser.add_argument("--dicom-files", type=int, default=200, help="slices in the DICOM series")
    parser.add_argument("--repeat", type=int, default=3, help="cold runs per figure (the median is reported)")
    args = parser.parse_args(argv)
    import gcsfs
    from zarr.storage import FsspecStore, LocalStore

    options = mounts.DatasetMounts()
    with GCSEmulator() as gcs, tempfile.TemporaryDirectory(prefix="oggmhub-bench-") as root:
        gcs.create_bucket(BUCKET)
        fs = gcs.filesystem()
        shape = fill_zarr(fs, args.zarr_mb)
        dicom_bytes = fill_dicom(fs, args.dicom_files)
        fs.pipe({f"{BUCKET}/cell.ome.zarr/{k}": v for k, v in ome_zarr_objects(cell_image()).items()})
        zarr_bytes = shape[0] * shape[1] * 4
        dataset = Dataset(name="bench", title="Benchmark", source=f"gs://{BUCKET}", mount_path="/data/bench",
                          endpoint=gcs.url)

        def direct_fs():
            return gcsfs.GCSFileSystem(endpoint_url=gcs.url, token="anon", skip_instance_cache=True)

        def on_mount(read):
            """The read's median time on fresh mounts (mounting and unmounting not timed)."""
            times = []
            for _ in range(args.repeat):
                live = mounts.mount_datasets([dataset], root, options)
                try:
                    start = time.perf_counter()
                    read(live[0].mountpoint)
                    times.append(time.perf_counter() - start)
                finally:
                    mounts.unmount_datasets(live)
            return statistics.median(times)

        def zarr_mount(top):
            assert zarr.open_array(LocalStore(f"{top}/big.zarr", read_only=True), mode="r")[...].shape == shape

        def zarr_direct():
            store = FsspecStore(_async(gcs), path=f"{BUCKET}/big.zarr", read_only=True)
            assert zarr.open_array(store, mode="r", zarr_format=2)[...].shape == shape

        def dicom_mount(top):
            folder = f"{top}/series"
            for name in sorted(os.listdir(folder)):
                assert pydicom.dcmread(os.path.join(folder, name)).pixel_array.shape == (512, 512)

        def dicom_direct():
            d = direct_fs()
            for path in sorted(d.ls(f"{BUCKET}/series", detail=False)):
                assert pydicom.dcmread(io.BytesIO(d.cat_file(path))).pixel_array.shape == (512, 512)

        def ome_mount(top):
            assert imaging.open_ome_zarr(f"{top}/cell.ome.zarr")[-1][0, 0] is not None

        def ome_direct():
            store = FsspecStore(_async(gcs), path=f"{BUCKET}/cell.ome.zarr", read_only=True)
            multiscales = zarr.open_group(store, mode="r", zarr_format=2).attrs["multiscales"][0]
            group = zarr.open_group(store, mode="r", zarr_format=2)
            assert group[multiscales["datasets"][-1]["path"]][0, 0] is not None

        figures = {}
        for label, mounted, direct in (("zarr", zarr_mount, zarr_direct), ("dicom", dicom_mount, dicom_direct),
                                       ("ome", ome_mount, ome_direct)):
            figures[label] = (on_mount(mounted), median(direct, args.repeat))
    zarr_ratio = figures["zarr"][1] / figures["zarr"][0]
    dicom_ratio = figures["dicom"][1] / figures["dicom"][0]
    mib = 1 << 20
    print(f"machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; median of {args.repeat} cold runs each")
    print(f"zarr  {zarr_bytes / mib:7.0f} MiB in 1 MiB chunks   mount {figures['zarr'][0]:7.2f} s "
          f"({zarr_bytes / mib / figures['zarr'][0]:6.0f} MiB/s)   direct {figures['zarr'][1]:7.2f} s "
          f"({zarr_bytes / mib / figures['zarr'][1]:6.0f} MiB/s)   mount/direct speed {zarr_ratio:.2f}")
    print(f"dicom {args.dicom_files:7d} files, {dicom_bytes / mib:5.0f} MiB      mount {figures['dicom'][0]:7.2f} s   "
          f"direct {figures['dicom'][1]:7.2f} s   mount/direct speed {dicom_ratio:.2f}")
    print(f"OME-Zarr lowest level, open to first pixel: mount {figures['ome'][0] * 1000:.0f} ms (on a live mount), "
          f"direct {figures['ome'][1] * 1000:.0f} ms")
    print(json.dumps({
        "zarr_mount_vs_direct": round(zarr_ratio, 3), "dicom_mount_vs_direct": round(dicom_ratio, 3),
        "zarr_mib": round(zarr_bytes / mib), "dicom_files": args.dicom_files,
        "ome_zarr_first_pixel_s": {"mount": round(figures["ome"][0], 3), "direct": round(figures["ome"][1], 3)},
        "repeat": args.repeat, "settings": options.as_dict(),
    }))
    return 0


def _async(gcs):
    """A fresh asynchronous gcsfs client on the emulator (what zarr's FsspecStore needs)."""
    import gcsfs

    return gcsfs.GCSFileSystem(endpoint_url=gcs.url, token="anon", skip_instance_cache=True, asynchronous=True)


if __name__ == "__main__":
    sys.exit(main())
