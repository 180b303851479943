"""Where the tests find the repository, its shipped catalog and ``../shared``."""

import os
import pathlib

REPO = pathlib.Path(__file__).resolve().parents[2]
CATALOG = REPO / "hub_config" / "catalog.yaml"
SHARED = pathlib.Path(os.environ.get("OGGMHUB_SHARED", REPO.parent / "shared"))
