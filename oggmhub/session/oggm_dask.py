"""OGGM on Dask: entity tasks, an ensemble of real glacier runs (Hintereisferner under
many climate realisations, :func:`run_glacier_ensemble`) or of idealized flowline runs,
across the workers of a session's cluster (:func:`oggmhub.session.dask.cluster`).

Each worker is set up once with the notebook's OGGM configuration (:func:`setup_workers`:
OGGM's own ``cfg.pack_config()``, unpacked on every worker, also on workers that join
later) and shares one download lock across the cluster, as OGGM's multiprocessing pool
does across its processes::

    from oggm import cfg, tasks
    import oggmhub.session.dask, oggmhub.session.oggm_dask as od

    cfg.initialize_minimal()
    cluster, client = oggmhub.session.dask.cluster(workers=2)
    gdir = oggmhub.session.oggm_glacier.prepare("/tmp/hef")          # the hub's data mount
    runs = od.run_glacier_ensemble(client, gdir, od.glacier_members(16))
    runs = od.run_ensemble(client, od.ensemble_members(16))       # no data needed
    od.run_entity_tasks(client, tasks.define_glacier_region, gdirs)  # like execute_entity_task

Entity tasks read and write glacier directories: every worker must see the working
directory (true on the local backend; on Kubernetes, use shared storage).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
from distributed import Lock, WorkerPlugin

PLUGIN = "oggmhub-oggm-config"
LOCK = "oggmhub-oggm-downloads"


class OGGMSetup(WorkerPlugin):
    """A Dask worker plugin: the client's OGGM configuration on every worker."""

    name = PLUGIN

    def __init__(self, packed):
        self.packed = packed

    def setup(self, worker):
        from oggm import cfg
        from oggm.utils import _downloads

        cfg.unpack_config(self.packed)
        _downloads.lock = _ClusterLock(LOCK)


class _ClusterLock:
    """OGGM's download lock, held across the cluster (a ``distributed.Lock``)."""

    def __init__(self, name):
        self.name = name

    def __enter__(self):
        self._lock = Lock(self.name)
        self._lock.acquire()
        return self

    def __exit__(self, *exc):
        self._lock.release()


def setup_workers(client, params=None):
    """Give every worker of ``client`` the notebook's OGGM configuration.

    Initializes OGGM here first (``cfg.initialize_minimal``) if that was not done;
    ``params`` then override OGGM's defaults. Returns the packed configuration.
    """
    from oggm import cfg

    if not cfg.IS_INITIALIZED:
        cfg.initialize_minimal(logging_level="WARNING", params=params)
    elif params:
        cfg.PARAMS.update(params)
    packed = cfg.pack_config()
    packed["PARAMS"]["use_multiprocessing"] = False  # Dask is the parallelism
    client.register_plugin(OGGMSetup(packed), name=PLUGIN)
    return packed


# --- entity tasks ------------------------------------------------------------------------


def _run_tasks(gdir, tasks, kwargs):
    result = None
    for task, task_kwargs in tasks:
        result = task(gdir, **{**kwargs, **task_kwargs})
    return result


def run_entity_tasks(client, task, gdirs, **kwargs):
    """Run OGGM entity ``task`` (or a list of them, optionally ``(task, kwargs)`` tuples)
    on ``gdirs``, one Dask task per glacier; the results in order, as
    ``oggm.workflow.execute_entity_task`` returns them."""
    setup_workers(client)
    tasks = [t if isinstance(t, tuple) else (t, {}) for t in (task if isinstance(task, (list, tuple)) and not callable(task) else [task])]
    for t, _ in tasks:
        if getattr(t, "__dict__", {}).get("is_global_task", False):
            raise ValueError(f"{t.__name__} is a global task: run it in the notebook, not per glacier")
    gdirs = list(gdirs)
    futures = client.map(_run_tasks, gdirs, tasks=tasks, kwargs=kwargs, pure=False)
    return client.gather(futures)


# --- idealized flowline ensembles ----------------------------------------------------------


@dataclass(frozen=True)
class IdealizedRun:
    """One member: OGGM's idealized rectangular-bed glacier under a linear mass balance."""

    ela: float = 3000.0  # equilibrium line altitude (m)
    mb_grad: float = 4.0  # mass-balance gradient (mm w.e. m-1)
    years: int = 300
    glen_a: float | None = None  # None: OGGM's default
    top: float = 3400.0  # bed altitude at the top and bottom (m)
    bottom: float = 1400.0
    nx: int = 200
    map_dx: float = 100.0  # grid spacing (m)
    width: float = 3.0  # in grid units (x map_dx)


def ensemble_members(n, ela=(2800.0, 3200.0), years=300, **common):
    """``n`` members spread evenly over the ELA range ``ela``."""
    elas = np.linspace(ela[0], ela[1], n) if n > 1 else [float(np.mean(ela))]
    return [IdealizedRun(ela=float(e), years=years, **common) for e in elas]


def idealized_run(member):
    """Run one :class:`IdealizedRun`; its final state (a dict)."""
    from oggm import cfg
    from oggm.core.flowline import FluxBasedModel, RectangularBedFlowline
    from oggm.core.massbalance import LinearMassBalance

    if not cfg.IS_INITIALIZED:
        cfg.initialize_minimal(logging_level="WARNING")
    started = time.perf_counter()
    bed = np.linspace(member.top, member.bottom, member.nx)
    line = RectangularBedFlowline(surface_h=bed, bed_h=bed, widths=np.zeros(member.nx) + member.width,
                                  map_dx=member.map_dx)
    kwargs = {} if member.glen_a is None else {"glen_a": member.glen_a}
    model = FluxBasedModel(line, mb_model=LinearMassBalance(member.ela, grad=member.mb_grad), y0=0.0, **kwargs)
    model.run_until(member.years)
    return {**asdict(member), "volume_km3": float(model.volume_km3), "area_km2": float(model.area_km2),
            "length_m": float(model.length_m), "seconds": time.perf_counter() - started}


def run_ensemble(client, members):
    """Run ``members`` (:class:`IdealizedRun`), one Dask task each (serially here when
    ``client`` is None); the results in order."""
    members = list(members)
    if client is None:
        return [idealized_run(m) for m in members]
    setup_workers(client)
    return client.gather(client.map(idealized_run, members, pure=False))


# --- real glacier ensembles ----------------------------------------------------------------


@dataclass(frozen=True)
class GlacierMember:
    """One member of a real-glacier ensemble: a climate realisation (``seed`` of OGGM's
    random mass balance) and a temperature bias, on the glacier of
    :mod:`oggmhub.session.oggm_glacier` (Hintereisferner)."""

    seed: int
    temperature_bias: float = 0.0
    years: int = 100


def glacier_members(n, years=100, temperature_biases=(0.0,)):
    """``n`` members: climate realisations 1..k under each temperature bias in turn."""
    biases = list(temperature_biases) or [0.0]
    return [GlacierMember(seed=1 + i // len(biases), temperature_bias=float(biases[i % len(biases)]), years=years)
            for i in range(n)]


def glacier_run(member, gdir):
    """Run one :class:`GlacierMember` on the prepared glacier directory ``gdir``; a dict
    (:class:`~oggmhub.session.oggm_glacier.GlacierRun` fields, plus ``seconds``)."""
    from oggmhub.session import oggm_glacier

    started = time.perf_counter()
    run = oggm_glacier.run(gdir, years=member.years, seed=member.seed, temperature_bias=member.temperature_bias)
    return {**run.as_dict(), "seconds": time.perf_counter() - started}


def run_glacier_ensemble(client, gdir, members):
    """Run ``members`` on ``gdir`` (prepared by :func:`oggmhub.session.oggm_glacier.prepare`
    in the notebook, in a working directory every worker sees), one Dask task each
    (serially here when ``client`` is None); the results in order."""
    members = list(members)
    if client is None:
        return [glacier_run(m, gdir) for m in members]
    setup_workers(client)
    return client.gather(client.map(glacier_run, members, gdir=gdir, pure=False))
