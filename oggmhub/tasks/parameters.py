"""Check a run's parameter values against its task's spec, before anything starts.

:func:`validate` returns the values to run with (defaults filled in, types converted) and
the :class:`~oggmhub.tasks.paths.Location` of every file parameter, or raises
:class:`TaskInputError` listing every problem, each naming the parameter and what is
allowed. Nothing is started or written until this passed.
"""

from __future__ import annotations

import math

from oggmhub.tasks.paths import LocationError
from oggmhub.tasks.spec import ENUMS, FILES, VECTORS

MAX_VALUE_CHARS = 10_000  # longer values are refused (a location or a number is short)


class TaskInputError(ValueError):
    """Values a run cannot start with; ``problems`` has one line per problem."""

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))

    @property
    def parameter(self):
        return self.problems[0].split(":", 1)[0] if self.problems else ""


def check_texts(texts, max_bytes):
    """fiji_cloudrun's ``input-str`` (file name -> text, written as files in the task's
    working folder), checked: plain file names, text values, at most ``max_bytes`` in all."""
    if texts is None:
        return {}
    if not isinstance(texts, dict):
        raise TaskInputError(["input-str: must be an object of file name -> text"])
    problems, total = [], 0
    for name, text in texts.items():
        if not isinstance(name, str) or not name or "/" in name or "\\" in name or ".." in name \
                or name.startswith(".") or "\0" in name:
            problems.append(f"input-str: {name!r} is not a plain file name (no '/', no '..', not hidden)")
            continue
        if not isinstance(text, str):
            problems.append(f"input-str.{name}: give the file's content as text")
            continue
        total += len(text.encode("utf-8"))
    if total > max_bytes:
        problems.append(f"input-str: the texts are {total} bytes; at most {max_bytes} bytes are allowed "
                        "(TasksSettings.max_input_str_bytes); put larger inputs in your home or a bucket")
    if problems:
        raise TaskInputError(problems)
    return dict(texts)


def _describe(p):
    if p.choices:
        return "one of " + ", ".join(repr(c) for c in p.choices)
    what = {"integer": "an integer", "float": "a number", "double": "a number", "boolean": "true or false",
            "string": "text"}.get(p.type.replace("-enumeration", ""), p.type)
    bounds = []
    if p.minimum is not None:
        bounds.append(f">= {p.minimum:g}")
    if p.maximum is not None:
        bounds.append(f"<= {p.maximum:g}")
    return what + (f" {' and '.join(bounds)}" if bounds else "")


def _scalar(p, base, value):
    if base == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ValueError
    if base == "integer":
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError
        return int(str(value).strip()) if isinstance(value, str) else int(value)
    if base in ("float", "double"):
        if isinstance(value, bool):
            raise ValueError
        number = float(value)
        if not math.isfinite(number):
            raise ValueError
        return number
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise ValueError
    return str(value)


def _convert(p, value):
    if p.type in VECTORS:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise ValueError
        base = p.type.replace("-vector", "") if p.type not in ("point", "region") else "float"
        return [_scalar(p, base, v) for v in items]
    base = p.type.replace("-enumeration", "") if p.type in ENUMS else p.type
    return _scalar(p, base, value)


def _in_range(p, value):
    values = value if isinstance(value, list) else [value]
    for v in values:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if (p.minimum is not None and v < p.minimum) or (p.maximum is not None and v > p.maximum):
                return False
    return True


def validate(task, values, policy, input_map=None, output_map=None, max_chars=MAX_VALUE_CHARS):
    """``(values, locations)`` for a run of ``task`` as ``policy``'s user, or
    :class:`TaskInputError`. ``input_map``/``output_map`` (fiji_cloudrun's shape:
    parameter -> URL) give file parameters' locations too."""
    spec = task.spec
    problems = []
    given = {}
    for source, mapping in (("parameters", values), ("input-map", input_map), ("output-map", output_map)):
        if mapping is None:
            continue
        if not isinstance(mapping, dict):
            problems.append(f"{source}: must be an object of parameter name -> value")
            continue
        for name, value in mapping.items():
            p = spec.parameter(name)
            if p is None:
                known = ", ".join(q.name for q in spec.parameters)
                problems.append(f"{name}: task {task.id} has no parameter {name!r}; its parameters: {known}")
                continue
            if source == "input-map" and not p.is_input:
                problems.append(f"{name}: input-map names input files only ({', '.join(q.name for q in spec.inputs)})")
                continue
            if source == "output-map" and not p.is_output:
                problems.append(f"{name}: output-map names output files only ({', '.join(q.name for q in spec.outputs)})")
                continue
            given[name] = value
    clean, locations = {}, {}
    for p in spec.parameters:
        if p.name not in given or given[p.name] in (None, ""):
            if p.required:
                hint = "a location" if p.is_file else _describe(p)
                problems.append(f"{p.name}: required ({p.label}): give {hint}")
            elif p.default is not None and not p.is_file:
                clean[p.name] = p.default
            continue
        value = given[p.name]
        if len(str(value)) > max_chars:
            problems.append(f"{p.name}: the value is {len(str(value))} characters long; at most {max_chars} are allowed")
            continue
        if p.type in FILES:
            if not isinstance(value, str):
                problems.append(f"{p.name}: give a location as text")
                continue
            try:
                locations[p.name] = policy.output(p.name, value) if p.is_output else policy.input(p.name, value)
            except LocationError as e:
                problems.append(str(e))
            continue
        try:
            converted = _convert(p, value)
        except (TypeError, ValueError):
            problems.append(f"{p.name}: {value!r} is not {_describe(p)}")
            continue
        if p.choices and converted not in p.choices:
            problems.append(f"{p.name}: {value!r} is not {_describe(p)}")
            continue
        if not _in_range(p, converted):
            problems.append(f"{p.name}: {value!r} is out of range; allowed: {_describe(p)}")
            continue
        clean[p.name] = converted
    if problems:
        raise TaskInputError(problems)
    return clean, locations
