import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
CATALOG = REPO / "hub_config" / "catalog.yaml"
SHARED = pathlib.Path(os.environ.get("OGGMHUB_SHARED", REPO.parent / "shared"))


@pytest.fixture
def catalog_path():
    return str(CATALOG)


@pytest.fixture
def catalog():
    from oggmhub.catalog import load_catalog

    return load_catalog(str(CATALOG))
