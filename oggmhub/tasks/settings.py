"""The tasks service's settings (``c.TasksSettings.*`` in ``$OGGMHUB_TASKS_CONFIG``)."""

from __future__ import annotations

import os

from traitlets import Bool, Dict, Enum, Integer, List, TraitError, Unicode, default, validate
from traitlets.config import Application

from oggmhub.catalog_setting import catalog_path as configured_catalog_path


class TasksSettings(Application):
    """Settings of the hub-managed ``tasks`` service (REST API, forms, runs on Dask)."""

    name = "oggmhub-tasks"

    data_dir = Unicode(
        config=True,
        help="""The hub's data directory (homes under it; never readable by a task as such).
        Defaults to $OGGMHUB_DATA_DIR.""",
    )

    @default("data_dir")
    def _data_dir(self):
        return os.environ.get("OGGMHUB_DATA_DIR", os.path.abspath("data"))

    @property
    def catalog_path(self):
        """The catalog: ``c.Catalog.path`` in this service's config file, else what the hub
        that started it set (:func:`oggmhub.tasks.service.configure` passes it on)."""
        return configured_catalog_path(self.config)

    images_dir = Unicode(
        config=True,
        help="""The environments' build contexts; each one's tasks/ folder lists its tasks.
        Defaults to $OGGMHUB_IMAGES, else the repository's images/.""",
    )

    @default("images_dir")
    def _images(self):
        here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        return os.environ.get("OGGMHUB_IMAGES") or os.path.join(here, "images")

    homes_dir = Unicode(config=True, help="Users' homes, one folder each; defaults to <data_dir>/homes.")

    @default("homes_dir")
    def _homes(self):
        return os.path.join(self.data_dir, "homes")

    runs_dir = Unicode(config=True, help="Where run records and logs are kept; defaults to <data_dir>/tasks/runs.")

    @default("runs_dir")
    def _runs(self):
        return os.path.join(self.data_dir, "tasks", "runs")

    env_cache = Unicode(
        "", config=True,
        help="Where built environments are cached (as the local spawner's); empty: $OGGMHUB_ENV_CACHE or its default.",
    )

    environment_python = Dict(
        {}, config=True,
        help="""Environment name -> the Python to run its tasks with, instead of building the
        environment (build_local_env). A stand-in for environments this machine cannot build
        (Slicer needs its download): any Python with the tools' packages (SimpleITK, ctk-cli).""",
    )

    storage_options = Dict(
        {}, config=True,
        help="""Protocol -> fsspec options for gs://, s3:// and https:// locations, e.g.
        {"gs": {"endpoint_url": "http://127.0.0.1:4443", "token": "anon"}}.""",
    )

    public_sources = List(
        Unicode(), [], config=True,
        help="""URL prefixes (e.g. gs://public-scans/) whose objects any user's task may read with
        storage_options' credentials. Any other URL input is fetched anonymously (no token, key or
        header; the endpoint kept), except under the user's own user_prefix: a task reads only what
        its user could read themselves.""",
    )

    pids_max = Integer(
        512, config=True,
        help="""The most processes (and threads) one tool run may have at once on the local backend
        (its cgroup's pids.max); a fork loop stops there. 0: no limit.""",
    )

    user_prefix = Unicode(
        "", config=True,
        help="""The bucket prefix each user may write outputs to, with {username}, e.g.
        gs://results/users/{username}/. Empty: outputs go to users' homes only.""",
    )

    max_batch = Integer(1000, config=True, help="The most runs one batch may start (a larger batch is refused).")

    max_value_chars = Integer(10_000, config=True, help="The longest parameter value accepted, in characters.")

    run_timeout = Integer(3600, config=True, help="Seconds a run may take before it is stopped and marked failed.")

    max_workers = Integer(
        0, config=True,
        help="""At most this many runs at once per user on the local backend (0: as many as the user's
        Dask limits allow workers: one run a worker).""",
    )

    max_input_str_bytes = Integer(
        64 * 1024, config=True,
        help="""The most bytes (UTF-8) a run's ``input-str`` texts may hold together (fiji_cloudrun's
        small text inputs, written as files for the task); a run over it is refused naming the cap.""",
    )

    system_accounts = Bool(
        config=True,
        help="""With backend local: run each user's tools as their system account (the one the
        local spawner made on their first start, oggmhub.backends.local.system_users), so a
        run reads and writes only what the user could. Needs the service to run as root.
        Default: True when it runs as root and $OGGMHUB_SHARED_ACCOUNT is unset (as the
        spawner's c.LocalEnvSpawner.system_accounts).""",
    )

    @default("system_accounts")
    def _default_system_accounts(self):
        return os.geteuid() == 0 and not os.environ.get("OGGMHUB_SHARED_ACCOUNT")

    system_account_prefix = Unicode(
        config=True,
        help="""The start of users' system account names, as c.LocalEnvSpawner.system_account_prefix.
        Defaults to $OGGMHUB_ACCOUNT_PREFIX, else ``oggm-``.""",
    )

    @default("system_account_prefix")
    def _default_prefix(self):
        return os.environ.get("OGGMHUB_ACCOUNT_PREFIX") or "oggm-"

    @validate("system_account_prefix")
    def _check_prefix(self, proposal):
        from oggmhub.backends.local.system_users import check_prefix

        try:
            return check_prefix(proposal["value"])
        except ValueError as e:
            raise TraitError(str(e)) from None

    backend = Enum(
        ["local", "kubernetes"], "local", config=True,
        help="""Where runs execute. ``local``: on this machine, each run's tool as the user's account in a
        cgroup of its own, as many at once as the user's Dask limits allow workers
        (:mod:`oggmhub.tasks.local_runner`). ``kubernetes``: one Kubernetes Job per run in the
        user's namespace, with the environment's image, their home volume and the dataset
        mounts, counted by the namespace's ResourceQuota (:mod:`oggmhub.tasks.kubernetes_runner`).""",
    )

    kubeconfig = Unicode(
        "", config=True,
        help="""With backend kubernetes: the kubeconfig to reach the API with. Empty: the pod's
        service account when running in a cluster, else $KUBECONFIG or ~/.kube/config.""",
    )

    hub_namespace = Unicode(
        config=True,
        help="""With backend kubernetes: the hub's namespace, the {hubnamespace} of
        user_namespace_template. Defaults to $POD_NAMESPACE, else the namespace of this pod's
        service account, else ``default`` (which, as in kubespawner, names user namespaces ``user-*``).""",
    )

    @default("hub_namespace")
    def _hub_namespace(self):
        from oggmhub.backends.kubernetes.namespace import hub_namespace

        return hub_namespace()

    user_namespace_template = Unicode(
        "{hubnamespace}-{username}", config=True,
        help="""With backend kubernetes: each user's namespace, as the spawner's
        KubeSpawner.user_namespace_template (the same safe slugs of the username).""",
    )

    pvc_name_template = Unicode(
        "home-{username}", config=True,
        help="With backend kubernetes: the user's home volume claim, as the spawner's pvc_name_template.",
    )

    mounter_image = Unicode(
        "ghcr.io/oggmhub/mounter:0.1.0", config=True,
        help="With backend kubernetes: the dataset mount sidecar's image (the spawner's dataset_mounter_image).",
    )

    job_ttl = Integer(
        3600, config=True,
        help="""With backend kubernetes: seconds a finished run's Job (and its pod, with the log)
        stays before Kubernetes deletes it (ttlSecondsAfterFinished).""",
    )

    config_file = Unicode(
        config=True,
        help="A traitlets config file with c.TasksSettings.* settings; defaults to $OGGMHUB_TASKS_CONFIG.",
    )

    @default("config_file")
    def _config_file(self):
        return os.environ.get("OGGMHUB_TASKS_CONFIG", "")

    def initialize(self, argv=None):
        self.parse_command_line(argv)
        if self.config_file:
            self.load_config_file(self.config_file)
            self.parse_command_line(argv)  # the command line wins
