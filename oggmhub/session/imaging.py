"""Imaging datasets from a notebook: a DICOM series as a volume, an OME-Zarr image lazily.

    from oggmhub.session import datasets, imaging

    volume = imaging.read_dicom_series(datasets.path("idc-nlst-ct"))   # SimpleITK image
    levels = imaging.open_ome_zarr(datasets.path("idr-nuclei-3d"))    # zarr arrays, largest first
    small = levels[-1][...]                                            # reads the lowest level only

Both read through the dataset's read-only mount (plain files), and a damaged object is a
clear error naming it, never a silent gap: a DICOM file cut short raises
:class:`ImagingError` naming the file; a Zarr chunk missing in the bucket raises
:class:`ImagingError` naming the chunk (zarr itself would fill it with zeros).
SimpleITK and zarr are imported when used (the Slicer and Fiji environments have them).
"""

from __future__ import annotations

import json
import os
import re

CHUNK_KEY = re.compile(r"(^|/)(c/)?[0-9]+([./][0-9]+)*$")  # Zarr 2 "0/1.2", Zarr 3 "0/c/1/2"


class ImagingError(Exception):
    """An image that cannot be read as asked; the message names the object."""


def dicom_files(folder):
    """The DICOM files of the one series in ``folder``, in slice order (GDCM's)."""
    import SimpleITK as sitk

    if not os.path.isdir(folder):
        raise ImagingError(f"{folder}: no such folder (is the dataset mounted in this session?)")
    ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(folder)
    if len(ids) != 1:
        raise ImagingError(f"{folder}: expected one DICOM series, found {len(ids)}")
    return list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(folder, ids[0]))


def read_dicom_series(folder):
    """The series in ``folder`` as one SimpleITK volume (spacing and origin from DICOM)."""
    import SimpleITK as sitk

    files = dicom_files(folder)
    for path in files:  # a file cut short: named, before the series reader's generic error
        try:
            reader = sitk.ImageFileReader()
            reader.SetFileName(path)
            reader.ReadImageInformation()
        except RuntimeError as e:
            raise ImagingError(f"{path}: not a readable DICOM file ({str(e).strip().splitlines()[-1][:200]})") from None
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        return reader.Execute()
    except RuntimeError as e:
        raise ImagingError(f"{folder}: the series cannot be read ({str(e).strip().splitlines()[-1][:200]})") from None


def _strict_store(root):
    """A read-only zarr store on ``root`` whose missing chunks raise :class:`ImagingError`."""
    from zarr.storage import LocalStore

    class StrictStore(LocalStore):
        async def get(self, key, prototype=None, byte_range=None):
            value = await super().get(key, prototype, byte_range)
            if value is None and CHUNK_KEY.search(key):
                raise ImagingError(f"{os.path.join(root, key)}: chunk missing (the image is incomplete)")
            return value

    return StrictStore(root, read_only=True)


def open_ome_zarr(path):
    """The multiscale levels of the OME-Zarr image at ``path`` (zarr arrays, largest
    first); nothing but metadata is read until an array is indexed."""
    import zarr

    try:
        with open(os.path.join(path, ".zattrs")) as f:
            multiscales = json.load(f)["multiscales"][0]
    except (OSError, ValueError, KeyError, IndexError) as e:
        raise ImagingError(f"{path}: not an OME-Zarr image (no readable multiscales in .zattrs: {e})") from None
    group = zarr.open_group(_strict_store(path), mode="r", zarr_format=2)
    return [group[d["path"]] for d in multiscales["datasets"]]
