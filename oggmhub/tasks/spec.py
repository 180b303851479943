"""What a task is: its parameters, read from the tool's own description.

Two kinds of self-describing tools:

- **Slicer Execution Model CLIs**: ``MODULE --xml`` prints an XML document (parameters,
  types, ranges, enumerations, input and output images). It is parsed with ctk-cli's
  :class:`ctk_cli.CLIModule`, the parser Slicer's own Python tools use.
- **Fiji/ImageJ scripts and macros** with SciJava script parameters: header lines such as
  ``#@ Integer (label="Radius", min=0, max=10, value=1) radius``. ImageJ 1 (Debian's, the
  stand-in for Fiji here) does not read them, so they are parsed here.

Both become a :class:`TaskSpec` of :class:`Parameter`; ``to_json()`` is what the REST API
and the form show.
"""

from __future__ import annotations

import io
import re
from dataclasses import asdict, dataclass, field

# parameter kinds the validator knows (Slicer's names; scripts map onto them)
SCALARS = {"boolean", "integer", "float", "double", "string"}
VECTORS = {"integer-vector", "float-vector", "double-vector", "string-vector", "point", "region"}
ENUMS = {"integer-enumeration", "float-enumeration", "double-enumeration", "string-enumeration"}
FILES = {"image", "file", "directory", "geometry", "pointfile", "transform", "table", "measurement"}


class SpecError(ValueError):
    """A tool description that cannot be read; the message says where."""


@dataclass
class Parameter:
    name: str
    type: str  # one of SCALARS | VECTORS | ENUMS | FILES
    label: str = ""
    description: str = ""
    default: object = None
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    choices: list | None = None
    channel: str = ""  # "input" or "output" for files; "" for values
    index: int | None = None  # positional argument index (Slicer), else a flag
    flag: str = ""
    longflag: str = ""
    required: bool = False
    extensions: list = field(default_factory=list)
    group: str = ""

    @property
    def is_file(self):
        return self.type in FILES

    @property
    def is_output(self):
        return self.is_file and self.channel == "output"

    @property
    def is_input(self):
        return self.is_file and self.channel != "output"


@dataclass
class TaskSpec:
    name: str
    kind: str  # "slicer-cli" or "scijava-script"
    title: str
    description: str = ""
    category: str = ""
    version: str = ""
    parameters: list = field(default_factory=list)
    source: str = ""  # the original XML, or the script's text

    def parameter(self, name):
        return next((p for p in self.parameters if p.name == name), None)

    @property
    def inputs(self):
        return [p for p in self.parameters if p.is_input]

    @property
    def outputs(self):
        return [p for p in self.parameters if p.is_output]

    def to_json(self):
        data = asdict(self)
        data.pop("source")
        return data


# --- Slicer Execution Model XML ------------------------------------------------------------


def _number(value):
    if value in (None, ""):
        return None
    return float(value)


def parse_slicer_xml(text, name):
    """The :class:`TaskSpec` of a Slicer CLI from its ``--xml`` output."""
    import logging

    from ctk_cli import CLIModule

    logging.getLogger("ctk_cli").setLevel(logging.ERROR)
    try:
        module = CLIModule(stream=io.StringIO(text))
    except Exception as e:  # noqa: BLE001 (ElementTree and ctk-cli raise many kinds)
        raise SpecError(f"{name}: not a Slicer Execution Model description: {e}") from None
    params = []
    for group in module:
        for p in group:
            if p.typ not in SCALARS | VECTORS | ENUMS | FILES:
                raise SpecError(f"{name}: parameter {p.identifier()!r} has type {p.typ!r}, which oggmhub cannot run")
            c = p.constraints
            default = p.default
            if default is None and p.typ == "boolean":
                default = False
            params.append(Parameter(
                name=p.identifier(), type=p.typ, label=(p.label or p.identifier()).strip(),
                description=(p.description or "").strip(), default=default,
                minimum=_number(getattr(c, "minimum", None)) if c else None,
                maximum=_number(getattr(c, "maximum", None)) if c else None,
                step=_number(getattr(c, "step", None)) if c else None,
                choices=list(p.elements) if p.elements else None,
                channel=(p.channel or ("input" if p.typ in FILES else "")).strip(),
                index=p.index, flag=p.flag or "", longflag=p.longflag or "",
                # positional arguments are required (Slicer passes every index), as are
                # files without a default; flagged values fall back to their default
                required=p.index is not None or (p.typ in FILES and default in (None, "")),
                extensions=list(p.fileExtensions or []), group=(group.label or "").strip(),
            ))
    return TaskSpec(name=name, kind="slicer-cli", title=(module.title or name).strip(),
                    description=(module.description or "").strip(), category=(module.category or "").strip(),
                    version=(module.version or "").strip(), parameters=params, source=text)


# --- SciJava script parameters (#@ Type (key=value, ...) name) ----------------------------

_HEADER = re.compile(r"^\s*(?://|#)?\s*#@\s*(\w+)\s*(?:\((.*)\))?\s*(\w+)\s*$")
_ATTR = re.compile(r'(\w+)\s*=\s*(\{[^}]*\}|"[^"]*"|\'[^\']*\'|[^,]+)')
_TYPES = {
    "int": "integer", "integer": "integer", "long": "integer", "short": "integer", "byte": "integer",
    "float": "float", "double": "double", "boolean": "boolean", "string": "string",
    "file": "file", "imageplus": "image", "dataset": "image", "img": "image", "imgplus": "image",
}
_SERVICES = {"logservice", "uiservice", "context", "opservice", "statusservice", "commandservice"}


def _unquote(value):
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def _choices(value):
    value = value.strip()
    if value.startswith("{"):
        return [_unquote(v) for v in value[1:-1].split(",") if v.strip()]
    return None


def parse_script(text, name):
    """The :class:`TaskSpec` of a Fiji script or macro from its ``#@`` header lines."""
    params = []
    first_comment = ""
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not first_comment and stripped.startswith("//"):
            first_comment = stripped.lstrip("/ ").strip()
        if "#@" not in stripped[:4]:
            continue
        match = _HEADER.match(stripped)
        if not match:
            raise SpecError(f"{name}:{number}: cannot read the script parameter {stripped!r}; "
                            "write it as #@ Type (key=value, ...) name")
        typ, attrs_text, pname = match.groups()
        if typ.lower() in _SERVICES or typ.lower() == "output":
            continue  # services are injected by Fiji, not asked of the user
        kind = _TYPES.get(typ.lower())
        attrs = {k.lower(): v for k, v in _ATTR.findall(attrs_text or "")}
        if kind is None:
            raise SpecError(f"{name}:{number}: parameter {pname!r} has type {typ!r}; "
                            f"oggmhub runs {', '.join(sorted(set(_TYPES)))}")
        style = _unquote(attrs.get("style", "")).lower()
        choices = _choices(attrs["choices"]) if "choices" in attrs else None
        default = _unquote(attrs["value"]) if "value" in attrs else None
        if kind == "file" and style in ("directory", "directories"):
            kind = "directory"
        channel = ""
        if kind in FILES:
            channel = "output" if style in ("save",) else "input"
        if choices:
            kind = "string-enumeration" if kind == "string" else f"{kind}-enumeration"
        if default is not None and kind in ("integer", "integer-enumeration"):
            default = int(default)
        elif default is not None and kind in ("float", "double"):
            default = float(default)
        elif default is not None and kind == "boolean":
            default = default.lower() == "true"
        required = _unquote(attrs.get("required", "true")).lower() != "false" and default is None
        if kind == "boolean":
            required, default = False, bool(default)
        params.append(Parameter(
            name=pname, type=kind, label=_unquote(attrs.get("label", pname)),
            description=_unquote(attrs.get("description", "")), default=default,
            minimum=_number(_unquote(attrs["min"])) if "min" in attrs else None,
            maximum=_number(_unquote(attrs["max"])) if "max" in attrs else None,
            step=_number(_unquote(attrs["stepsize"])) if "stepsize" in attrs else None,
            choices=choices, channel=channel, required=required,
        ))
    if not params:
        raise SpecError(f"{name}: no #@ script parameters in its header")
    return TaskSpec(name=name, kind="scijava-script", title=name.replace("_", " "),
                    description=first_comment, parameters=params, source=text)


def strip_headers(text):
    """The script without its ``#@`` lines (for ImageJ 1, which does not know them)."""
    return "\n".join(line for line in text.splitlines() if "#@" not in line.strip()[:4])
