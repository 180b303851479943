"""What the hub hands a session: every OGGMHUB_* variable named once
(oggmhub.session.env), and one recipe assembling them for both backends
(oggmhub.backends.session_env), driven through the real spawners."""

import ast
import json
import os

import pytest

from oggmhub.backends.session_env import session_environment
from oggmhub.choice import resolve_choice
from oggmhub.session import env as session_vars
from support.kube_harness.oggmhub import oggmhub_spawner
from support.paths import REPO

# variables the hub's own process (or an image's build and start scripts) reads: not a
# session's input, so not in oggmhub.session.env
HUB_PROCESS = {"OGGMHUB_CATALOG", "OGGMHUB_IMAGES", "OGGMHUB_DATA_DIR", "OGGMHUB_ENV_CACHE",
               "OGGMHUB_DOWNLOADS", "OGGMHUB_LOCAL_ENV", "OGGMHUB_IP", "OGGMHUB_PORT",
               "OGGMHUB_HUB_PORT", "OGGMHUB_ADMIN", "OGGMHUB_IDLE_TIMEOUT",
               "OGGMHUB_COHORT_CHECK_INTERVAL", "OGGMHUB_TASKS_CONFIG",
               "OGGMHUB_CGROUP_ROOT",  # where the hub makes sessions' cgroups
               "OGGMHUB_TASKS_BIND",  # the tasks service's listening address
               "OGGMHUB_SHARED_ACCOUNT", "OGGMHUB_ACCOUNT_PREFIX",  # oggmhub hub --shared-account; accounts' prefix
               "OGGMHUB_STOP_SERVERS_ON_EXIT", "OGGMHUB_MACHINE",  # oggmhub hub's own settings
               "OGGMHUB_CONFIG_EXTRA",  # oggmhub hub --config-extra FILE
               "OGGMHUB_USAGE_DB"}  # the usage records' file (c.Usage.db_path), for the hub and the tasks service


def _literals(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("OGGMHUB_") \
                and node.value.rstrip("_").replace("_", "").isalnum() and node.value.isupper():
            yield node.lineno, node.value
        if isinstance(node, ast.keyword) and node.arg and node.arg.startswith("OGGMHUB_"):
            yield node.lineno, node.arg  # dict(OGGMHUB_PORT=...)


def test_every_session_variable_is_spelled_only_in_session_env():
    env_py = REPO / "oggmhub" / "session" / "env.py"
    named = set(session_vars.ALL)
    assert {"OGGMHUB_DATASETS_JSON", "OGGMHUB_DASK_LIMITS", "OGGMHUB_SESSION", "OGGMHUB_MOUNT_OPTIONS",
            "OGGMHUB_POD_NAME", "OGGMHUB_MAX_DASK_WORKERS", "OGGMHUB_IMAGE"} <= named
    assert not named & HUB_PROCESS
    elsewhere = []
    for path in sorted((REPO / "oggmhub").rglob("*.py")):
        if path == env_py:
            continue
        for line, value in _literals(path):
            if value not in HUB_PROCESS:
                elsewhere.append(f"{path.relative_to(REPO)}:{line}: {value}")
    assert not elsewhere, "name these in oggmhub/session/env.py and import them:\n" + "\n".join(elsewhere)


@pytest.fixture
def choice(catalog):
    return resolve_choice(catalog, {"profile": "oggm", "size": "medium"})


def test_the_recipe_is_pure_and_backend_differences_are_parameters(choice, tmp_path):
    pod = session_environment(choice)
    local = session_environment(choice, mount_root=str(tmp_path), scratch_dir="/scratch/u",
                                dask_registry="/scratch/u/dask")
    assert pod == session_environment(choice)  # pure: same input, same output
    mirror = choice.datasets[0]
    # in a pod the catalog paths are real; locally they live under the user's mount root
    # (OGGM's cache is the mount: the server appears in it at cluster.klima.uni-bremen.de/~oggm)
    cache = choice.environment.env["OGGM_DOWNLOAD_CACHE"]
    assert mirror.mount_path == cache
    assert pod["OGGM_DOWNLOAD_CACHE"] == cache
    assert local["OGGM_DOWNLOAD_CACHE"] == str(tmp_path) + cache
    assert json.loads(local[session_vars.DATASETS_JSON])[0]["mount_path"] == str(tmp_path) + mirror.mount_path
    assert (local[session_vars.SCRATCH], local[session_vars.DASK_REGISTRY]) == ("/scratch/u", "/scratch/u/dask")
    assert session_vars.SCRATCH not in pod and session_vars.DASK_REGISTRY not in pod
    # everything else is the same recipe
    differing = {k for k in pod.keys() | local.keys() if pod.get(k) != local.get(k)}
    assert differing == {"OGGM_DOWNLOAD_CACHE", session_vars.DATASETS_JSON, session_vars.SCRATCH,
                         session_vars.DASK_REGISTRY}
    on_k8s = session_environment(choice, dask_backend="kubernetes")
    assert on_k8s[session_vars.DASK_BACKEND] == "kubernetes"
    assert on_k8s[session_vars.POD_NAME] == {"valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
    assert "{host}:{port}" in on_k8s["DASK_DISTRIBUTED__DASHBOARD__LINK"]
    assert session_environment(choice, image="x/cuda:1")[session_vars.IMAGE] == "x/cuda:1"
    with pytest.raises(ValueError, match="dask_backend 'yarn': use one of local, kubernetes"):
        session_environment(choice, dask_backend="yarn")


def _unescape(value):
    """What kubespawner's {placeholder} expansion makes of a literal value."""
    return value.replace("{{", "{").replace("}}", "}") if isinstance(value, str) else value


async def test_both_spawners_hand_a_session_the_same_variables(api, choice, local_spawner):
    local = local_spawner("ada")
    kube = oggmhub_spawner("ada")
    local.apply_choice(choice)
    kube.apply_choice(choice)
    local_env = dict(local.environment)
    kube_env = {k: _unescape(v) for k, v in kube.environment.items()}
    assert local_env == session_environment(choice, mount_root=local.mount_root, scratch_dir=local.scratch_dir,
                                            dask_registry=local.dask_registry, tutorials_by_hub=True,
                                            tmp_dir=local.tmp_dir)
    # a private TMPDIR per server, and the catalog's /tmp paths (OGGM's extract folder) in it
    assert local.tmp_dir == os.path.join(local.scratch_dir, "tmp", "default")
    assert {local_env[v] for v in ("TMPDIR", "TEMP", "TMP")} == {local.tmp_dir}
    assert choice.environment.env["OGGM_EXTRACT_DIR"] == "/tmp/oggm-extract"
    assert local_env["OGGM_EXTRACT_DIR"] == os.path.join(local.tmp_dir, "oggm-extract")
    assert kube_env["OGGM_EXTRACT_DIR"] == "/tmp/oggm-extract" and "TMPDIR" not in kube_env  # a pod's /tmp is its own
    assert session_vars.TUTORIALS not in kube_env  # the image's start script merges them
    assert kube_env == session_environment(choice)
    for name in (session_vars.ENVIRONMENT, session_vars.SIZE, session_vars.CPU_LIMIT, session_vars.MEM_LIMIT,
                 session_vars.GPU, session_vars.DATASETS, session_vars.DASK_LIMITS):
        assert local_env[name] == kube_env[name], name
    assert local_env[session_vars.DATASETS] == "oggm-mirror"


def test_both_spawners_declare_the_backend_interface_and_implement_it():
    from oggmhub.backends.base import REQUIRED, SessionBackend, missing_methods
    from oggmhub.backends.local.spawner import LocalEnvSpawner
    from oggmhub.picker import CatalogPickerMixin
    from oggmhub.spawner import OGGMHubSpawner

    for cls in (LocalEnvSpawner, OGGMHubSpawner):
        assert issubclass(cls, SessionBackend) and issubclass(cls, CatalogPickerMixin)
        assert missing_methods(cls) == [], cls
        for name in REQUIRED:
            assert getattr(cls, name).__doc__, f"{cls.__name__}.{name} says what it does"

    class Half(CatalogPickerMixin, SessionBackend):
        def apply_choice(self, choice):
            pass

    assert missing_methods(Half) == ["session_environment"]
    assert missing_methods(type("Nothing", (CatalogPickerMixin, SessionBackend), {})) == list(REQUIRED)


async def test_every_start_applies_the_validated_choice_first(catalog_path):
    """The shared base keeps the start contract: a backend's start body sees the choice
    applied, though nothing called apply_user_options, and a refused choice starts nothing."""
    from traitlets.config import Config

    from oggmhub.backends.base import SessionBackend
    from oggmhub.choice import ChoiceError
    from oggmhub.picker import CatalogPickerMixin

    seen = []

    class Backend(CatalogPickerMixin, SessionBackend):
        user_options = {}

        def apply_choice(self, choice):
            self.applied = choice.environment.name

        def session_environment(self, choice):
            return {}

        async def start(self):
            seen.append(self.applied)
            return "127.0.0.1", 1

    class Kube(Backend):
        async def _start(self):
            seen.append(("_start", self.applied))

    config = Config({"Catalog": {"path": catalog_path}})
    backend = Backend(config=config)
    backend.user_options = {"profile": "oggm"}
    assert await backend.start() == ("127.0.0.1", 1) and seen == ["oggm"]
    kube = Kube(config=config)
    kube.user_options = {"profile": "fiji"}
    await kube._start()
    assert seen[-1] == ("_start", "fiji")
    refused = Backend(config=config)
    refused.user_options = {"profile": "no-such-environment"}
    with pytest.raises(ChoiceError):
        await refused.start()
    assert len(seen) == 2  # the body never ran
