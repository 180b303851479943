"""Every ``OGGMHUB_*`` variable the hub hands a session, named once.

The hub side sets them (both backends, through
:func:`oggmhub.backends.session_env.session_environment`, the one recipe); the session
side reads them (:mod:`.datasets`, :mod:`.dask`, :mod:`.dask_limits`,
:mod:`.dask_kubernetes`, the mount process). Both import the names from here, so a
variable is renamed in one place. This module imports nothing.

Variables the hub's own process reads (``OGGMHUB_CATALOG``, ``OGGMHUB_DATA_DIR``, ...,
see :mod:`oggmhub.backends.local.hub`) and those an image's build or ``start`` script sets
for itself (``OGGMHUB_DOWNLOADS``, ``OGGMHUB_LOCAL_ENV``, ``OGGMHUB_XDG_DATA_DIRS``) are
not a session's input and are not listed here.
"""

# --- what the session is (from the validated choice: oggmhub.choice.SpawnChoice.session_env)
ENVIRONMENT = "OGGMHUB_ENVIRONMENT"  # the catalog environment's name
IMAGE = "OGGMHUB_IMAGE"  # the image that runs (a GPU variant's own build where it has one)
SIZE = "OGGMHUB_SIZE"  # the size's name
CPU_LIMIT = "OGGMHUB_CPU_LIMIT"  # the size's CPU limit, in cores
MEM_LIMIT = "OGGMHUB_MEM_LIMIT"  # the size's memory limit, in bytes
GPU = "OGGMHUB_GPU"  # the GPU variant's name, or "none"
GPU_COUNT = "OGGMHUB_GPU_COUNT"  # GPUs the session holds

# --- datasets (oggmhub.session.datasets)
DATASETS = "OGGMHUB_DATASETS"  # comma list of the session's dataset names
DATASETS_JSON = "OGGMHUB_DATASETS_JSON"  # their catalog entries as JSON (credentials as references)
DATASETS_CACHE = "OGGMHUB_DATASETS_CACHE"  # simplecache (default), blockcache or none
DATASETS_CACHE_DIR = "OGGMHUB_DATASETS_CACHE_DIR"  # where cached copies go
SCRATCH = "OGGMHUB_SCRATCH"  # the session's disposable space (local backend)
SCRATCH_TTL_DAYS = "OGGMHUB_SCRATCH_TTL_DAYS"  # days a scratch file lives unchanged (catalog storage.scratch_ttl_days)
HOME_RESCUE = "OGGMHUB_HOME_RESCUE"  # "1" in a rescue start's session (its home is full)
DATASET_CREDENTIALS_PREFIX = "OGGMHUB_DATASET_CREDENTIALS_"  # + dataset name: a secret, mount sidecar only
MOUNT_OPTIONS = "OGGMHUB_MOUNT_OPTIONS"  # JSON of DatasetMounts.as_dict(), for `oggmhub datasets mount`
TERMINATION_LOG = "OGGMHUB_TERMINATION_LOG"  # where the mount sidecar leaves its last sentence (default /dev/termination-log)

# --- Dask (oggmhub.session.dask, dask_limits, dask_kubernetes)
DASK_LIMITS = "OGGMHUB_DASK_LIMITS"  # JSON of DaskLimits.to_json()
DASK_BACKEND = "OGGMHUB_DASK_BACKEND"  # local (default) or kubernetes
DASK_REGISTRY = "OGGMHUB_DASK_REGISTRY"  # local backend: where the session's clusters are recorded
DASK_TEMPLATE = "OGGMHUB_DASK_TEMPLATE"  # Kubernetes: the worker template (JSON)
POD_NAME = "OGGMHUB_POD_NAME"  # Kubernetes: the session's pod (downward API)
POD_UID = "OGGMHUB_POD_UID"
NAMESPACE = "OGGMHUB_NAMESPACE"

# --- cohorts (oggmhub.cohorts.model.MemberPolicy.session_env)
COHORTS = "OGGMHUB_COHORTS"  # comma list of the member's cohorts
MAX_DASK_WORKERS = "OGGMHUB_MAX_DASK_WORKERS"  # the cohort's dask_workers limit
MAX_GPUS = "OGGMHUB_MAX_GPUS"  # the cohort's gpus limit

# --- tutorials (oggmhub.session.tutorials)
TUTORIALS = "OGGMHUB_TUTORIALS"  # "hub": the local hub merged them; else the image's start script does

# --- tool tasks (oggmhub.tasks, oggmhub.session.tasks)
TASKS_URL = "OGGMHUB_TASKS_URL"  # where a session reaches the tasks service (set by configure_hub)
TASK_RUN = "OGGMHUB_TASK_RUN"  # the run id, in a task run's own process

# --- local backend's process bookkeeping
LIMITS_ENFORCED = "OGGMHUB_LIMITS_ENFORCED"  # "cgroup v1", "cgroup v2" or "no": do the size's limits hold
SESSION = "OGGMHUB_SESSION"  # a value of its own per server start, on every process of it

ALL = tuple(value for name, value in sorted(globals().items())
            if name.isupper() and isinstance(value, str) and value.startswith("OGGMHUB_"))
