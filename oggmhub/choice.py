"""A user's choice of environment, size and GPU variant, validated against the catalog.

This is the one code path both backends use: the spawn form's data and the REST API's
JSON body both end up in :func:`resolve_choice`, and every refusal is a
:class:`ChoiceError` (HTTP 400) that names the field and what is allowed.

``user_options`` (what JupyterHub stores and reuses) always has the canonical shape::

    {"profile": "oggm", "size": "small", "gpu": "none", "datasets": []}

``datasets`` lists catalog datasets a user adds to the environment's own.

``profile`` is kubespawner's name for the environment, so that its picker template and
the REST API speak the same language.
"""

from __future__ import annotations

from dataclasses import dataclass

from oggmhub.errors import UserFacingError
from oggmhub.limits import MAX_OPTION_CHARS, TRUNCATED, quote
from oggmhub.session import env as session_vars

NO_GPU = "none"
# "project" is the usage project a session charges: checked against who belongs to it by the
# picker (oggmhub.usage.projects), passed over here, so that stored options resolve again
OPTION_FIELDS = ("profile", "size", "gpu", "datasets", "project")
# Form fields JupyterHub itself adds to a spawn form.
_HUB_FORM_FIELDS = {"_xsrf"}


class ChoiceError(UserFacingError):
    """A spawn request the catalog does not allow; names the field and what is allowed."""

    def __init__(self, field, message):
        super().__init__(400, message, reason="Invalid server options")
        self.field = field


@dataclass(frozen=True)
class SpawnChoice:
    """What a user asked for, resolved to catalog objects."""

    environment: object  # catalog.Environment
    size: object  # catalog.Size
    gpu: object = None  # catalog.GpuVariant or None
    extra_datasets: tuple = ()  # catalog.Dataset objects added beyond the environment's
    extra_names: tuple = ()  # how each was asked for (a name, or an on-demand source URL)
    default_datasets: tuple = ()  # the environment's own catalog.Dataset objects

    @property
    def datasets(self):
        """Every dataset this session mounts: the environment's, then the added ones."""
        return self.default_datasets + self.extra_datasets

    @property
    def user_options(self):
        """The canonical user_options JupyterHub stores for this choice."""
        return {
            "profile": self.environment.name,
            "size": self.size.name,
            "gpu": self.gpu.name if self.gpu else NO_GPU,
            "datasets": list(self.extra_names) or [d.name for d in self.extra_datasets],
        }

    def session_env(self):
        """Variables telling notebook-side helpers what this session is and may use."""
        env, size, gpu = self.environment, self.size, self.gpu
        return {
            session_vars.ENVIRONMENT: env.name,
            session_vars.IMAGE: env.image.ref,
            session_vars.SIZE: size.name,
            session_vars.CPU_LIMIT: f"{size.cpu_limit:g}",
            session_vars.MEM_LIMIT: str(size.mem_limit),
            session_vars.GPU: gpu.name if gpu else NO_GPU,
            session_vars.GPU_COUNT: str(gpu.count if gpu else 0),
        }

    def describe(self):
        """A one-line human description, e.g. ``OGGM, Small (1 CPU, 4 GB)``."""
        text = f"{self.environment.display_name}, {self.size.display_name}"
        return f"{text}, {self.gpu.display_name}" if self.gpu else text


def _one_of(names):
    return ", ".join(names) if names else "none are available"


def _allowed_sizes(env, allowed_environments):
    """The sizes of ``env`` allowed by ``allowed_environments`` (see resolve_choice)."""
    sizes = allowed_environments.get(env.name) if isinstance(allowed_environments, dict) else None
    return {n: s for n, s in env.sizes.items() if sizes is None or n in sizes}


def _allowed_gpus(env, max_gpus):
    return {n: g for n, g in env.gpus.items() if max_gpus is None or g.count <= max_gpus}


def resolve_choice(catalog, user_options, allowed_environments=None, max_gpus=None, on_demand=None):
    """Validate ``user_options`` (a dict, e.g. a REST API body) and resolve it.

    Missing keys take the catalog's defaults (an empty body starts the default
    environment at its default size, as JupyterHub's admin "start" button does).
    ``allowed_environments`` narrows the catalog (e.g. to a cohort's environments): a
    collection of environment names, or a dict of environment name to the allowed size
    names (None: all of them). ``max_gpus`` drops GPU variants with more GPUs.
    ``on_demand`` maps a requested dataset that is not in the catalog (a source URL the
    admin allows, see oggmhub.launch) to a Dataset, or to None to refuse it.
    Raises :class:`ChoiceError`.
    """
    if user_options is None:
        user_options = {}
    if not isinstance(user_options, dict):
        raise ChoiceError(
            "options",
            "server options must be a JSON object such as "
            '{"profile": "oggm", "size": "small"}',
        )
    unknown = sorted(set(user_options) - set(OPTION_FIELDS))
    if unknown:
        raise ChoiceError(
            unknown[0][:40],
            f"unknown server option {quote(unknown[0])}; allowed options: {', '.join(OPTION_FIELDS)}",
        )
    for key, value in user_options.items():
        if key == "datasets":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ChoiceError(key, "server option 'datasets' must be a list of dataset names")
        elif value is not None and not isinstance(value, str):
            raise ChoiceError(key, f"server option {key!r} must be a string, not {type(value).__name__}")
        if isinstance(value, str) and (len(value) > MAX_OPTION_CHARS or TRUNCATED in value):
            raise ChoiceError(key, f"server option {key!r} is too long (it starts {value[:40]!r}); "
                                   f"at most {MAX_OPTION_CHARS} characters")

    environments = {
        name: env
        for name, env in catalog.environments.items()
        if allowed_environments is None or name in allowed_environments
    }
    env_name = user_options.get("profile")
    if env_name == "":
        raise ChoiceError("profile", f"the environment is empty; choose one of: {_one_of(list(environments))}")
    if env_name is None:
        default = catalog.default_environment
        env_name = default.name if default.name in environments else next(iter(environments), None)
    environment = environments.get(env_name)
    if environment is None:
        raise ChoiceError(
            "profile",
            f"unknown environment {quote(env_name)}; choose one of: {_one_of(list(environments))}",
        )

    sizes = _allowed_sizes(environment, allowed_environments)
    default_size = environment.default_size.name
    size_name = user_options.get("size") or (default_size if default_size in sizes else next(iter(sizes)))
    size = sizes.get(size_name)
    if size is None:
        raise ChoiceError(
            "size",
            f"size {quote(size_name)} is not offered for {environment.display_name}; "
            f"choose one of: {_one_of(list(sizes))}",
        )

    gpu_name = user_options.get("gpu") or NO_GPU
    gpu = None
    if gpu_name != NO_GPU:
        gpus = _allowed_gpus(environment, max_gpus)
        gpu = gpus.get(gpu_name)
        if gpu is None:
            raise ChoiceError(
                "gpu",
                f"GPU variant {quote(gpu_name)} is not offered for {environment.display_name}; "
                f"choose one of: {_one_of([NO_GPU, *gpus])}",
            )
    extra, names = [], []
    for name in user_options.get("datasets") or []:
        dataset = catalog.datasets.get(name) or (on_demand(name) if on_demand else None)
        if dataset is None:
            raise ChoiceError(
                "datasets",
                f"unknown dataset {quote(name)}; choose from: {_one_of(list(catalog.datasets))}",
            )
        if dataset.name not in environment.datasets and dataset not in extra:
            extra.append(dataset)
            names.append(name)
    return SpawnChoice(
        environment=environment, size=size, gpu=gpu, extra_datasets=tuple(extra), extra_names=tuple(names),
        default_datasets=tuple(catalog.datasets[name] for name in environment.datasets),
    )


def options_from_form(catalog, formdata, allowed_environments=None, max_gpus=None):
    """Turn the picker's form data (``{field: [values]}``) into canonical user_options.

    Stricter than the API: the form always sends the environment and each of its
    options, so a missing, repeated or unknown field means the form was tampered with.
    """
    fields = {k: v for k, v in formdata.items() if k not in _HUB_FORM_FIELDS}
    extra_datasets = fields.pop("datasets", [])
    for key, values in fields.items():
        if len(values) != 1:
            raise ChoiceError(key, f"the form sent {len(values)} values for {quote(key)}; expected one")
    env_names = list(catalog.environments)
    prefixes = tuple(f"profile-option-{name}--" for name in env_names)
    for key in fields:
        if key == "profile":
            continue
        option = key.split("--", 1)[-1] if key.startswith(prefixes) else None
        if option not in ("size", "gpu"):
            raise ChoiceError(key, f"unexpected form field {quote(key)}")

    if "profile" not in fields or not fields["profile"][0]:
        raise ChoiceError("profile", f"choose an environment: one of {_one_of(env_names)}")
    env_name = fields["profile"][0]
    user_options = {"profile": env_name}
    environment = catalog.environments.get(env_name)
    if environment is not None:
        expected = ["size"] + (["gpu"] if _allowed_gpus(environment, max_gpus) else [])
        for key in fields:
            option = key[len(f"profile-option-{env_name}--"):] if key.startswith(f"profile-option-{env_name}--") else None
            if option is not None and option not in expected:
                raise ChoiceError(option, f"{environment.display_name} offers no {option} option; "
                                          f"its options: {', '.join(expected)}")
        for option in expected:
            key = f"profile-option-{env_name}--{option}"
            if key not in fields:
                raise ChoiceError(option, f"the form sent no {option} for {environment.display_name}")
            user_options[option] = fields[key][0]
    user_options["datasets"] = list(extra_datasets)
    return resolve_choice(catalog, user_options, allowed_environments, max_gpus).user_options


def profile_list(catalog, allowed_environments=None, max_gpus=None):
    """The catalog as kubespawner's ``profile_list``, for its picker template.

    Carries no ``kubespawner_override``: settings are applied by the spawner from the
    resolved :class:`SpawnChoice`, merged into the base configuration.
    """
    profiles = []
    shown = [e for e in catalog.environments.values()
             if allowed_environments is None or e.name in allowed_environments]
    default_env = catalog.default_environment if catalog.default_environment in shown else (shown or [None])[0]
    for env in shown:
        sizes = _allowed_sizes(env, allowed_environments)
        default_size = env.default_size.name if env.default_size.name in sizes else next(iter(sizes))
        options = {
            "size": {
                "display_name": "Size",
                "choices": {
                    size.name: {"display_name": size.display_name, "default": size.name == default_size}
                    for size in sizes.values()
                },
            }
        }
        gpus = _allowed_gpus(env, max_gpus)
        if gpus:
            choices = {NO_GPU: {"display_name": "No GPU", "default": True}}
            choices.update({g.name: {"display_name": g.display_name} for g in gpus.values()})
            options["gpu"] = {"display_name": "GPU", "choices": choices}
        profiles.append(
            {
                "slug": env.name,
                "display_name": env.display_name,
                "description": env.description,
                "default": env is default_env,
                "profile_options": options,
            }
        )
    return profiles
