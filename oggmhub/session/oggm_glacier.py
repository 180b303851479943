"""A real glacier run with OGGM: Hintereisferner (RGI60-11.00897) from OGGM's sample data.

The sample data (outlines, DEM, HISTALP climate) comes through OGGM's own downloader, so
with ``OGGM_DOWNLOAD_CACHE`` on the hub's mirror (``oggmhub datasets mirror`` fills it,
from OGGM's servers or the sample-data zip) it runs with no internet::

    from oggmhub.session import oggm_glacier
    gdir = oggm_glacier.prepare("/tmp/hef")          # glacier directory, calibrated, inverted
    run = oggm_glacier.run(gdir, years=100, seed=1)  # 100 years of random climate
    run.area_km2, run.volume_km3[0], run.volume_km3[-1]

:func:`run` takes a climate realisation (``seed``) and a temperature bias: the members
of an ensemble (:mod:`oggmhub.session.oggm_dask`). Settings follow OGGM's own test of
this glacier: no intersects file in the sample, the calibration period inside the
HISTALP file (1802-2002), and the FluxBased model (the default implicit model refuses
tributaries).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

RGI_ID = "RGI60-11.00897"
NAME = "Hintereisferner"
REF_PERIOD = "1980-01-01_2000-01-01"  # inside the HISTALP sample (1802-2002)


@dataclass
class GlacierRun:
    glacier: str
    rgi_id: str
    seed: int
    temperature_bias: float
    years: int
    area_km2: float
    volume_km3: list = field(default_factory=list)  # one value a year, years + 1 of them

    def as_dict(self):
        return asdict(self)


def configure(working_dir, logging_level="WARNING"):
    """``cfg.initialize()`` for a Hintereisferner run in ``working_dir`` (OGGM's own
    configuration; the download cache from ``$OGGM_DOWNLOAD_CACHE``)."""
    from oggm import cfg

    try:  # cfg.initialize() reads OGGM's sample data (through the download cache) too
        cfg.initialize(logging_level=logging_level)
    except Exception as e:  # noqa: BLE001 - OGGM fails in many ways offline
        raise FileNotFoundError(
            f"OGGM's sample data is neither in the download cache "
            f"{os.environ.get('OGGM_DOWNLOAD_CACHE') or '(none)'} nor downloadable here "
            f"({type(e).__name__}: {e})") from None
    cfg.PATHS["working_dir"] = str(working_dir)
    cfg.PARAMS["use_intersects"] = False
    cfg.PARAMS["use_multiprocessing"] = False
    cfg.PARAMS["border"] = 10
    cfg.PARAMS["baseline_climate"] = ""  # the custom HISTALP file (no W5E5 checks)
    cfg.PARAMS["evolution_model"] = "FluxBased"
    cfg.PARAMS["store_model_geometry"] = False
    cfg.PARAMS["downstream_line_shape"] = "parabola"
    cfg.PARAMS["prcp_fac"] = 2.5  # OGGM's own HEF test: a constant factor (the winter-precipitation
    cfg.PARAMS["temp_bias_min"] = -10  # rule needs W5E5's 1979-2019)
    cfg.PARAMS["temp_bias_max"] = 10
    cfg.PATHS["climate_file"] = demo_file("histalp_merged_hef.nc")
    cfg.PATHS["dem_file"] = demo_file("hef_srtm.tif")
    return cfg


def demo_file(name):
    """A file of OGGM's sample data (fetched through its download cache)."""
    from oggm import cfg, utils

    try:
        path = utils.get_demo_file(name)
    except Exception as e:  # noqa: BLE001 - OGGM fails in many ways offline (NoInternetException, ...)
        raise FileNotFoundError(
            f"OGGM's sample data ({name}) is neither in the download cache "
            f"{cfg.PATHS.get('dl_cache_dir') or '(none)'} nor downloadable here "
            f"({type(e).__name__}: {e})") from None
    if not path or not os.path.exists(path):
        raise FileNotFoundError(f"OGGM's sample data has no {name!r} (is $OGGM_DOWNLOAD_CACHE the hub's mirror?)")
    return path


def prepare(working_dir, logging_level="WARNING"):
    """Hintereisferner's glacier directory: outlines, DEM, flowlines, HISTALP climate,
    calibration on 1980-2000 (its observed mass balance), inversion; ready for :func:`run`."""
    import geopandas as gpd
    from oggm import GlacierDirectory
    from oggm.core import centerlines, climate, flowline, gis, inversion, massbalance

    configure(working_dir, logging_level)
    entity = gpd.read_file(demo_file("Hintereisferner_RGI5.shp")).iloc[0]
    gdir = GlacierDirectory(entity, reset=True)
    gis.define_glacier_region(gdir)
    gis.glacier_masks(gdir)
    centerlines.compute_centerlines(gdir)
    centerlines.initialize_flowlines(gdir)
    centerlines.catchment_area(gdir)
    centerlines.catchment_intersections(gdir)
    centerlines.catchment_width_geom(gdir)
    centerlines.catchment_width_correction(gdir)
    centerlines.compute_downstream_line(gdir)
    centerlines.compute_downstream_bedshape(gdir)
    climate.process_custom_climate_data(gdir)
    observed = gdir.get_ref_mb_data()["ANNUAL_BALANCE"].loc[1980:1999]
    massbalance.mb_calibration_from_scalar_mb(gdir, ref_mb=float(observed.mean()), ref_period=REF_PERIOD)
    massbalance.apparent_mb_from_any_mb(gdir, mb_years=(1980, 2000))
    inversion.prepare_for_inversion(gdir)
    inversion.mass_conservation_inversion(gdir, write=True)
    inversion.filter_inversion_output(gdir)
    flowline.init_present_time_glacier(gdir)
    return gdir


def run(gdir, years=100, seed=0, temperature_bias=0.0, halfsize=15):
    """``years`` of random climate (realisation ``seed``, centred on 1985 ± ``halfsize``,
    shifted by ``temperature_bias`` K); a :class:`GlacierRun` with the yearly volume."""
    from oggm.core.flowline import FluxBasedModel
    from oggm.core.massbalance import MultipleFlowlineMassBalance, RandomMassBalance

    mb = MultipleFlowlineMassBalance(gdir, mb_model_class=RandomMassBalance, y0=1985, halfsize=halfsize, seed=seed)
    if temperature_bias:
        mb.temp_bias = temperature_bias

    flowlines = gdir.read_pickle("model_flowlines")
    model = FluxBasedModel(flowlines, mb_model=mb, y0=0.0)
    volume = [model.volume_km3]
    for year in range(1, years + 1):
        model.run_until(year)
        volume.append(model.volume_km3)
    return GlacierRun(glacier=NAME, rgi_id=RGI_ID, seed=int(seed), temperature_bias=float(temperature_bias),
                      years=int(years), area_km2=float(gdir.rgi_area_km2), volume_km3=[float(v) for v in volume])
