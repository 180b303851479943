"""Real small imaging data for offline tests, from packages installable here (provenance
and licences: docs/datasets.md, "Imaging data for tests").

* a CT series of 5 DICOM slices from pydicom's wheel (``dicomdirtests/98892001/CT5N``:
  pcir.org's freely available image sets, downsized to 16 x 16 by pydicom), laid out as the
  Imaging Data Commons lays out a series: ``<series folder>/<instance>.dcm``;
* pydicom's ``MR_truncated.dcm`` (a real file cut short), for the fault tests;
* scikit-image's ``cell`` image (660 x 550, uint8) written as OME-Zarr v0.4 (Zarr format 2,
  a pyramid of 3 levels), as the Image Data Resource serves its images.

``imaging_objects()`` gives them as ``{object path: bytes}``, ready for a GCS emulator
bucket (a test module's ``GCS_BUCKETS``).
"""

from __future__ import annotations

import json
import os
import tempfile

import pytest

SERIES = "ct5n-series"  # the series' folder, as IDC's <crdc_series_uuid>/
IMAGE = "cell.ome.zarr"  # the OME-Zarr image's folder
TRUNCATED = "faults/MR_truncated.dcm"
LEVELS = 3
CHUNK = 128


def _pydicom_files():
    try:
        import pydicom
    except ImportError:
        pytest.skip("pydicom is not installed (pip install -e '.[test]')")
    return os.path.join(os.path.dirname(pydicom.__file__), "data", "test_files")


def dicom_series():
    """``{name: bytes}`` of the CT series' slices, in the order of their position."""
    import pydicom

    folder = os.path.join(_pydicom_files(), "dicomdirtests", "98892001", "CT5N")
    slices = []
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), "rb") as f:
            data = f.read()
        ds = pydicom.dcmread(os.path.join(folder, name), stop_before_pixels=True)
        slices.append((float(ds.ImagePositionPatient[2]), ds.SOPInstanceUID, data))
    return {f"{uid}.dcm": data for _, uid, data in sorted(slices)}


def cell_image():
    try:
        from skimage import data
    except ImportError:
        pytest.skip("scikit-image is not installed (pip install -e '.[test]')")
    return data.cell()


def ome_zarr_objects(image, name="cell", levels=LEVELS, chunk=CHUNK):
    """``{key: bytes}`` of ``image`` (2-D) as an OME-Zarr v0.4 multiscale image."""
    try:
        import zarr
    except ImportError:
        pytest.skip("zarr is not installed (pip install -e '.[test]')")
    with tempfile.TemporaryDirectory() as folder:
        group = zarr.open_group(folder, mode="w", zarr_format=2)
        datasets = []
        level = image
        for i in range(levels):
            array = group.create_array(str(i), shape=level.shape, chunks=(chunk, chunk), dtype=level.dtype)
            array[...] = level
            datasets.append({"path": str(i), "coordinateTransformations": [{"type": "scale", "scale": [2.0 ** i] * 2}]})
            level = level[::2, ::2]
        group.attrs["multiscales"] = [{
            "version": "0.4", "name": name, "datasets": datasets,
            "axes": [{"name": "y", "type": "space", "unit": "micrometer"},
                     {"name": "x", "type": "space", "unit": "micrometer"}],
        }]
        out = {}
        for root, _, files in os.walk(folder):
            for f in files:
                path = os.path.join(root, f)
                with open(path, "rb") as fh:
                    out[os.path.relpath(path, folder).replace(os.sep, "/")] = fh.read()
    json.loads(out[".zattrs"])  # written, and JSON
    return out


def imaging_objects():
    """Everything above as ``{object path: bytes}``."""
    objects = {f"{SERIES}/{k}": v for k, v in dicom_series().items()}
    with open(os.path.join(_pydicom_files(), "MR_truncated.dcm"), "rb") as f:
        objects[TRUNCATED] = f.read()
    objects.update({f"{IMAGE}/{k}": v for k, v in ome_zarr_objects(cell_image()).items()})
    return objects


# --- the tutorials' code ---------------------------------------------------------------

NOTEBOOKS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "notebooks")
# what each tutorial's "tasks" cell leaves behind, made by the task's own tool (the hub's
# tasks service runs that same tool): for tests without a hub
TASK_TOOLS = {
    "slicer": ("import subprocess, sys\n"
               "subprocess.run([sys.executable, {otsu!r}, os.path.join(work, 'ct.nrrd'), os.path.join(work, 'ct-otsu.nrrd')], check=True)\n"),
    "fiji": ("import json, subprocess, sys\n"
             "subprocess.run([sys.executable, '-m', 'oggmhub.tasks.script_runner', {invert!r}, json.dumps({{'input': plane_path, "
             "'output': os.path.join(work, 'inverted.tif'), 'radius': 0, 'format': 'Tiff'}})], check=True)\n"),
}


def tutorial_script(env, tasks="service"):
    """The ``env`` tutorial as one script: its first code cell (imports; not Slicer's, which
    needs Slicer itself), then its cells tagged "dataset" and "tasks" in order. With
    ``tasks="tools"`` each "tasks" cell is replaced by a run of the task's own tool."""
    import nbformat

    repo = os.path.dirname(NOTEBOOKS)
    nb = nbformat.read(os.path.join(NOTEBOOKS, f"{env}-getting-started.ipynb"), 4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    parts = [] if env == "slicer" else [code[0].source]
    tools = {"otsu": os.path.join(repo, "images", "slicer", "tasks", "OtsuThreshold.py"),
             "invert": os.path.join(repo, "images", "fiji", "tasks", "InvertAndMeasure.ijm")}
    for cell in code:
        tags = set(cell.metadata.get("tags", []))
        if "dataset" in tags:
            parts.append(cell.source)
        elif "tasks" in tags:
            parts.append(cell.source if tasks == "service" else TASK_TOOLS[env].format(**tools))
    assert len(parts) >= 3, f"{env}: the tutorial lost its dataset cells"
    return "\n\n".join(parts)


def session_variables(archives, mounted):
    """``OGGMHUB_DATASETS*`` as a session gets them, with each archive's mount path where
    ``mounted`` (``{name: folder}``) says it is mounted."""
    from oggmhub.session import datasets

    session = datasets.session_env(archives)
    entries = json.loads(session["OGGMHUB_DATASETS_JSON"])
    for entry in entries:
        entry["mount_path"] = mounted[entry["name"]]
    return {"OGGMHUB_DATASETS": session["OGGMHUB_DATASETS"], "OGGMHUB_DATASETS_JSON": json.dumps(entries)}
