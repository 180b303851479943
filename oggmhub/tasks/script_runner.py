"""Run a Fiji script with its ``#@`` parameters filled in: ``python -m
oggmhub.tasks.script_runner SCRIPT.ijm '{"name": value, ...}'``.

Fiji fills SciJava parameters itself. ImageJ 1 (Debian's ``imagej``, the stand-in for Fiji
on machines that cannot download it) does not know ``#@`` lines, so for a macro (``.ijm``)
they are replaced by plain variable assignments and the macro runs through
:func:`oggmhub.session.fiji.run_macro` (Fiji when installed, else ImageJ 1). Other script
languages need Fiji's script runner and are refused on ImageJ 1.
"""

from __future__ import annotations

import json
import sys

from oggmhub.session.fiji import FijiError, find_imagej, run_macro
from oggmhub.tasks.spec import parse_script, strip_headers


def _literal(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))  # a JSON string is a valid macro string literal


def macro_with_values(text, values, name="script"):
    """The macro with its ``#@`` lines replaced by assignments of ``values``."""
    spec = parse_script(text, name)
    lines = [f"{p.name} = {_literal(values[p.name])};" for p in spec.parameters if p.name in values]
    return "// parameters (from the #@ lines)\n" + "\n".join(lines) + "\n" + strip_headers(text)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    path, values = argv[0], json.loads(argv[1])
    if not path.endswith(".ijm"):
        print(f"{path}: only ImageJ macros (.ijm) run without Fiji's script runner", file=sys.stderr)
        return 2
    with open(path) as f:
        code = macro_with_values(f.read(), values, path)
    try:
        imagej = find_imagej()
        print(f"oggmhub: running {path} with {imagej.kind} ({imagej.where})", flush=True)
        result = run_macro(code, imagej=imagej)
    except FijiError as e:
        print(f"oggmhub: {e}", file=sys.stderr)
        return 1
    print(result.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
