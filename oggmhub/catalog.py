"""The catalog: environments, their sizes and GPU variants, datasets and cohorts.

One YAML file (``c.Catalog.path``, see :mod:`oggmhub.catalog_setting`) is validated once, when it is
loaded, against ``catalog_schema.yaml`` plus the rules a schema cannot express. Every
problem is reported, each on one line naming the file, the line, the entry and the field::

    hub_config/catalog.yaml:14: environments.oggm.sizes.small.memory.limit: 'lots' is ...

Everything else (spawners, the image tool, notebook helpers) reads the resulting
:class:`Catalog` and never re-declares what it holds.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

import jsonschema
import yaml

from oggmhub.identifiers import alias_problems
from oggmhub.session.datasets import Dataset
from oggmhub.session.quantities import parse_memory
from oggmhub.times import TimeError, parse_time

DEFAULT_CATALOG_ENV = "OGGMHUB_CATALOG"


class CatalogError(Exception):
    """A catalog that cannot be used; ``problems`` holds one line per error."""

    def __init__(self, path, problems):
        self.path = path
        self.problems = list(problems)
        count = len(self.problems)
        super().__init__(
            f"{path}: {count} problem{'s' if count != 1 else ''}:\n  "
            + "\n  ".join(self.problems)
        )


@dataclass(frozen=True)
class Image:
    name: str
    tag: str

    @property
    def ref(self):
        """The image reference a container runtime pulls, ``name:tag``."""
        return f"{self.name}:{self.tag}"


@dataclass(frozen=True)
class Size:
    name: str
    display_name: str
    cpu_guarantee: float
    cpu_limit: float
    mem_guarantee: int
    mem_limit: int
    default: bool = False
    dask: dict = field(default_factory=dict)  # Dask limits over the environment's (dask_limits.py)


@dataclass(frozen=True)
class GpuVariant:
    name: str
    display_name: str
    count: int
    type: str
    resource: str = "nvidia.com/gpu"
    node_selector: dict = field(default_factory=dict)
    tolerations: tuple = ()
    image: Image | None = None  # a CUDA-capable build of the environment, if it has one


@dataclass(frozen=True)
class Environment:
    name: str
    display_name: str
    description: str
    image: Image
    sizes: dict
    gpus: dict
    datasets: tuple
    env: dict
    default: bool = False
    dask: dict = field(default_factory=dict)  # per-user Dask limits (see dask_limits.py)

    @property
    def default_size(self):
        return next(s for s in self.sizes.values() if s.default)


@dataclass(frozen=True)
class Catalog:
    path: str
    environments: dict
    datasets: dict
    cohorts: dict
    storage: dict = field(default_factory=dict)  # home quotas, as written (oggmhub.storage.quotas)
    projects: dict = field(default_factory=dict)  # name -> {title, members} (oggmhub.usage.projects)
    budgets: dict = field(default_factory=dict)  # name -> spec (oggmhub.usage.budgets)

    @property
    def default_environment(self):
        return next(e for e in self.environments.values() if e.default)


# the repository's own catalog (beside the package), whatever the working directory
REPOSITORY_CATALOG = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "hub_config", "catalog.yaml")


def default_catalog_path():
    """``$OGGMHUB_CATALOG`` if set, else the repository's ``hub_config/catalog.yaml``.

    A hub's parts read :func:`oggmhub.catalog_setting.catalog_path` (``c.Catalog.path``),
    whose default this is; command-line tools use it when given no catalog.
    """
    return os.environ.get(DEFAULT_CATALOG_ENV) or REPOSITORY_CATALOG


@lru_cache(maxsize=1)
def _schema():
    text = resources.files("oggmhub").joinpath("catalog_schema.yaml").read_text()
    schema = yaml.safe_load(text)
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


def load_catalog(path=None):
    """Load and validate the catalog at ``path``; raise :class:`CatalogError` if unusable."""
    path = path or default_catalog_path()
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise CatalogError(path, [f"{path}: cannot read the catalog: {e.strerror}"]) from None
    data, lines, problems = _parse_yaml(path, text)
    if data is not None:
        problems += _schema_problems(data)
        problems += _rule_problems(data)
    if problems:
        raise CatalogError(path, [_locate(path, lines, where, msg) for where, msg in problems])
    return _build(path, data)


def cached_catalog(path=None):
    """:func:`load_catalog`, re-read only when the file changes (for per-spawn use)."""
    path = os.path.abspath(path or default_catalog_path())
    try:
        st = os.stat(path)
        stamp = (st.st_mtime_ns, st.st_size)
    except OSError:
        stamp = None
    return _cached(path, stamp)


@lru_cache(maxsize=8)
def _cached(path, stamp):
    return load_catalog(path)


# --- parsing -------------------------------------------------------------------------


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that records the line of every mapping key and refuses duplicates."""


def _construct_mapping(loader, node, deep=False):
    seen = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            loader.duplicates.append((key_node.start_mark.line + 1, key))
        seen[key] = key_node.start_mark.line + 1
    mapping = yaml.SafeLoader.construct_mapping(loader, node, deep=deep)
    loader.key_lines[id(mapping)] = seen
    return mapping


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping
)


def _parse_yaml(path, text):
    """Return (data, line map, problems). The line map is {dotted path: line}."""
    loader = _UniqueKeyLoader(text)
    loader.duplicates, loader.key_lines = [], {}
    try:
        data = loader.get_single_data()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "the file"
        return None, {}, [("", f"not valid YAML at {where}: {getattr(e, 'problem', e)}")]
    finally:
        loader.dispose()
    lines = {}

    def walk(obj, prefix):
        if isinstance(obj, dict):
            for key, line in loader.key_lines.get(id(obj), {}).items():
                dotted = f"{prefix}.{key}" if prefix else str(key)
                lines[dotted] = line
                walk(obj.get(key), dotted)
        elif isinstance(obj, list):
            for i, item in enumerate(obj):
                walk(item, f"{prefix}[{i}]")

    walk(data, "")
    problems = [
        ("", f"line {line}: duplicate key {key!r} (the second would silently replace the first)")
        for line, key in loader.duplicates
    ]
    if data is None:
        problems.append(("", "the catalog is empty"))
    elif not isinstance(data, dict):
        problems.append(("", "the catalog must be a mapping with an 'environments' section"))
        data = None
    return data, lines, problems


def _locate(path, lines, where, message):
    line, parent = lines.get(where), where
    while line is None and "." in parent:  # a missing field: point at its parent
        parent = parent.rsplit(".", 1)[0]
        line = lines.get(parent)
    prefix = f"{path}:{line}" if line else path
    return f"{prefix}: {where}: {message}" if where else f"{prefix}: {message}"


def _dotted(parts):
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _schema_problems(data):
    validator = jsonschema.Draft202012Validator(_schema())
    problems = []
    for error in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.path))):
        where = _dotted(error.absolute_path)
        schema = error.schema if isinstance(error.schema, dict) else {}
        if error.validator == "additionalProperties":
            allowed = sorted(schema.get("properties", {}))
            for key in sorted(set(error.instance) - set(allowed)):
                hint = difflib.get_close_matches(key, allowed, n=1)
                did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
                problems.append(
                    (_dotted([*error.absolute_path, key]),
                     f"unknown field {key!r}{did_you_mean}; allowed: {', '.join(allowed)}")
                )
        elif error.validator == "required":
            missing = error.message.split("'")[1]
            problems.append((where, f"missing required field {missing!r}"))
        elif "propertyNames" in error.absolute_schema_path:
            problems.append((_dotted([*error.absolute_path, error.instance]),
                             f"invalid name {error.instance!r}: {schema.get('x-message', error.message)}"))
        elif "x-message" in schema:
            problems.append((where, f"{error.instance!r} is invalid: {schema['x-message']}"))
        elif error.validator in ("minProperties",) and error.instance == {}:
            problems.append((where, "must not be empty"))
        else:
            problems.append((where, error.message))
    return problems


def _rule_problems(data):
    """The rules a JSON schema cannot express.

    Parts that do not match the schema are skipped here: the schema already named them.
    """
    problems = []
    environments = _mapping(data.get("environments"))
    datasets = _mapping(data.get("datasets"))
    problems += alias_problems(datasets)
    defaults = [name for name, env in environments.items() if _mapping(env).get("default")]
    if len(defaults) > 1:
        problems.append(("environments", f"only one environment may be the default; found {', '.join(defaults)}"))
    for name, env in environments.items():
        where, env = f"environments.{name}", _mapping(env)
        sizes = _mapping(env.get("sizes"))
        default_sizes = [s for s, spec in sizes.items() if _mapping(spec).get("default")]
        if len(sizes) > 1 and len(default_sizes) != 1:
            found = ", ".join(default_sizes) or "none"
            problems.append((f"{where}.sizes", f"mark exactly one size 'default: true' (found: {found})"))
        for size_name, size in sizes.items():
            for resource, parse in (("cpu", float), ("memory", parse_memory)):
                spec = _mapping(_mapping(size).get(resource))
                try:
                    too_big = parse(spec["guarantee"]) > parse(spec["limit"])
                except (KeyError, TypeError, ValueError):
                    continue  # malformed: reported by the schema
                if too_big:
                    problems.append((f"{where}.sizes.{size_name}.{resource}", "the guarantee is larger than the limit"))
        for path, dask in [("", env.get("dask")), *((f".sizes.{n}", _mapping(s).get("dask")) for n, s in sizes.items())]:
            if isinstance(_mapping(dask).get("gpus"), int) and dask["gpus"] > 0 and not env.get("gpus"):
                problems.append((f"{where}{path}.dask.gpus", "GPU workers need a GPU variant: add one under this environment's gpus, or set 0"))
        refs = env.get("datasets")
        for i, dataset in enumerate(refs if isinstance(refs, list) else []):
            if isinstance(dataset, str) and dataset not in datasets:
                known = ", ".join(sorted(datasets)) or "none are declared"
                problems.append((f"{where}.datasets[{i}]", f"unknown dataset {dataset!r}; the catalog's datasets: {known}"))
    problems += _dataset_problems(datasets)
    problems += _quota_problems(_mapping(data.get("storage")))
    for name, cohort in _mapping(data.get("cohorts")).items():
        refs = _mapping(cohort).get("environments")
        for i, ref in enumerate(refs if isinstance(refs, list) else []):
            env, _, sizes = ref.partition("=") if isinstance(ref, str) else ("", "", "")
            if env and env not in environments:
                problems.append((f"cohorts.{name}.environments[{i}]", f"unknown environment {env!r}; choose from: {', '.join(environments)}"))
            offered = list(_mapping(_mapping(environments.get(env)).get("sizes")))
            for size in filter(None, sizes.split(",")):
                if env in environments and size not in offered:
                    problems.append((f"cohorts.{name}.environments[{i}]", f"size {size!r} is not offered for {env}; choose from: {', '.join(offered)}"))
        start, end = _mapping(cohort).get("start"), _mapping(cohort).get("end")
        if isinstance(start, str) and isinstance(end, str):
            try:
                if parse_time(end, "end") <= parse_time(start, "start"):
                    problems.append((f"cohorts.{name}.end", f"the window ends ({end}) before it starts ({start})"))
            except TimeError:
                pass  # malformed: reported by the schema
    return problems


QUOTA_MIN, QUOTA_MAX = 16 * 1024**2, 1024**5  # a home image below 16Mi holds little but ext4's own


def _quota_problems(storage):
    """Home quotas out of bounds (16Mi to 1Pi); a cohort named may be one created on the hub alone."""
    problems = []
    entries = [("storage.home_quota", storage.get("home_quota"))]
    for section in ("cohorts", "users"):
        entries += [(f"storage.{section}.{k}", v) for k, v in _mapping(storage.get(section)).items()]
    for where, value in entries:
        if isinstance(value, float):  # 1e100 passes the schema's integer type
            problems.append((where, f"{value!r} is invalid: a home quota is a whole number of bytes or a size such as 10Gi"))
            continue
        try:
            size = parse_memory(value)
        except (TypeError, ValueError):
            continue  # missing or malformed: reported by the schema
        if not QUOTA_MIN <= size <= QUOTA_MAX:
            problems.append((where, f"{value!r} is out of bounds: a home quota is from 16Mi to 1Pi"))
    return problems


_CREDENTIAL_HELP = (
    "credentials are referenced, never written in the catalog: use credentials: "
    "{secret: NAME} (a Kubernetes secret, optionally with key: KEY), {env: VAR} or {ambient: true}"
)
_CREDENTIAL_REFS = ("secret", "env", "ambient")


def default_mount_path(name):
    return f"/data/{name}"


def _dataset_problems(datasets):
    """Inline credentials, ambiguous credential references, clashing mount paths."""
    problems, mounts = [], {}
    # the schema lets fields that look like inline secrets through, for this message
    inline = re.compile(next(iter(_schema()["$defs"]["dataset"]["patternProperties"])))
    for name, spec in datasets.items():
        where, spec = f"datasets.{name}", _mapping(spec)
        for key in spec:
            if isinstance(key, str) and inline.search(key):
                problems.append((f"{where}.{key}", f"not allowed: {_CREDENTIAL_HELP}"))
        creds = spec.get("credentials")
        if isinstance(creds, dict):
            for key in creds:
                if key not in (*_CREDENTIAL_REFS, "key"):
                    problems.append((f"{where}.credentials.{key}", f"not allowed: {_CREDENTIAL_HELP}"))
            refs = [ref for ref in _CREDENTIAL_REFS if ref in creds]
            if len(refs) != 1:
                found = ", ".join(refs) or "none"
                problems.append((f"{where}.credentials", f"give exactly one of secret, env or ambient (found: {found})"))
            if "key" in creds and "secret" not in creds:
                problems.append((f"{where}.credentials.key", "key names an entry of a Kubernetes secret: give secret: NAME too"))
            source = spec.get("source")
            if isinstance(source, str) and source.startswith(("/", "file://")):
                problems.append((f"{where}.credentials", "a local source needs no credentials"))
        source, endpoint = spec.get("source"), spec.get("endpoint")
        if isinstance(source, str) and endpoint is not None and not source.startswith(("gs://", "s3://")):
            problems.append((f"{where}.endpoint", "an endpoint applies to gs:// and s3:// sources only"))
        path = spec.get("mount_path", default_mount_path(name))
        if isinstance(path, str):
            for other, other_path in mounts.items():
                if path == other_path or path.startswith(other_path + "/") or other_path.startswith(path + "/"):
                    problems.append((f"{where}.mount_path", f"{path} clashes with dataset {other!r} mounted at {other_path}; mount paths must not be equal or nested"))
            mounts[name] = path
    return problems


def _mapping(value):
    return value if isinstance(value, dict) else {}


def _build(path, data):
    environments = {}
    has_default = any(env.get("default") for env in data["environments"].values())
    for index, (name, spec) in enumerate(data["environments"].items()):
        sizes = {}
        single = len(spec["sizes"]) == 1
        for size_name, size in spec["sizes"].items():
            sizes[size_name] = Size(
                name=size_name,
                display_name=size["display_name"],
                cpu_guarantee=float(size["cpu"]["guarantee"]),
                cpu_limit=float(size["cpu"]["limit"]),
                mem_guarantee=parse_memory(size["memory"]["guarantee"]),
                mem_limit=parse_memory(size["memory"]["limit"]),
                default=bool(size.get("default")) or single,
                dask=dict(size.get("dask") or {}),
            )
        gpus = {
            gpu_name: GpuVariant(
                name=gpu_name,
                display_name=gpu["display_name"],
                count=gpu["count"],
                type=gpu["type"],
                resource=gpu.get("resource", "nvidia.com/gpu"),
                node_selector=dict(gpu.get("node_selector", {})),
                tolerations=tuple(dict(t) for t in gpu.get("tolerations", [])),
                image=Image(**gpu["image"]) if gpu.get("image") else None,
            )
            for gpu_name, gpu in (spec.get("gpus") or {}).items()
        }
        environments[name] = Environment(
            name=name,
            display_name=spec["display_name"],
            description=spec["description"].strip(),
            image=Image(**spec["image"]),
            sizes=sizes,
            gpus=gpus,
            datasets=tuple(spec.get("datasets", [])),
            env={k: str(v) if not isinstance(v, bool) else str(v).lower() for k, v in (spec.get("env") or {}).items()},
            default=bool(spec.get("default")) or (not has_default and index == 0),
            dask=dict(spec.get("dask") or {}),
        )
    return Catalog(
        path=path,
        environments=environments,
        datasets={
            name: Dataset(
                name=name,
                title=spec["title"],
                source=spec["source"],
                mount_path=spec.get("mount_path") or default_mount_path(name),
                description=str(spec.get("description", "")).strip(),
                licence=spec.get("licence", ""),
                citation=str(spec.get("citation", "")).strip(),
                doi=spec.get("doi", ""),
                endpoint=spec.get("endpoint", "").rstrip("/"),
                credentials=dict(spec.get("credentials") or {}),
                required=bool(spec.get("required", True)),
                aliases=tuple(spec.get("aliases") or ()),
                size=str(spec.get("size", "")),
                layout=spec.get("layout", "plain"),
            )
            for name, spec in (data.get("datasets") or {}).items()
        },
        cohorts=dict(data.get("cohorts") or {}),
        storage=dict(data.get("storage") or {}),
        projects=dict(data.get("projects") or {}),
        budgets=dict(data.get("budgets") or {}),
    )
