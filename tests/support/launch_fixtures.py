"""A catalog for launch-link tests: the repository's, offline (its imaging archives kept,
unreachable here), with another dataset that only the Fiji environment mounts, DOIs and aliases. Data are small local folders."""

from __future__ import annotations

import os

import yaml

from support.paths import CATALOG

OGGM_DOI = "10.5194/gmd-12-909-2019"
CELLS_DOI = "10.5281/zenodo.4711"


def launch_catalog(folder):
    """Write the catalog and its datasets' folders under ``folder``; return its path."""
    folder = os.fspath(folder)
    catalog = yaml.safe_load(CATALOG.read_text())
    mirror = os.path.join(folder, "oggm-mirror")
    cells = os.path.join(folder, "cell-images")
    os.makedirs(os.path.join(mirror, "rgi"), exist_ok=True)
    with open(os.path.join(mirror, "rgi", "outlines.csv"), "w") as f:
        f.write("rgi_id,area\nRGI60-11.00897,7.96\n")
    with open(os.path.join(mirror, "README.txt"), "w") as f:
        f.write("the OGGM mirror, for launch tests\n")
    os.makedirs(cells, exist_ok=True)
    with open(os.path.join(cells, "cells-001.tif"), "wb") as f:
        f.write(b"II*\x00")
    catalog["datasets"]["oggm-mirror"].update(
        source=mirror, aliases=["https://zenodo.org/records/3585097", "oggm-data"])
    catalog["datasets"]["cell-images"] = {
        "title": "Cell images", "source": cells, "doi": CELLS_DOI, "licence": "CC-BY-4.0", "size": "12Mi",
        "description": "Fluorescence microscopy images of cells.",
        "citation": "Someone, A. (2024): Cells. Zenodo.",
    }
    catalog["environments"]["fiji"]["datasets"] = [*catalog["environments"]["fiji"].get("datasets", []), "cell-images"]
    path = os.path.join(folder, "catalog.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(catalog, f, sort_keys=False)
    return path
