"""The ``oggmhub`` command.

Each concept registers its own verbs: a module listed in ``COMMAND_MODULES`` has a
``register(commands)`` function that adds sub-parsers (with ``set_defaults(func=...)``,
the function returning an exit code) to ``commands``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from oggmhub import __version__
from oggmhub.catalog import CatalogError, default_catalog_path, load_catalog


def catalog_check(args):
    """Validate a catalog: exit 0 if good, else print one line per problem and exit 1."""
    path = args.path or default_catalog_path()
    try:
        catalog = load_catalog(path)
    except CatalogError as e:
        for problem in e.problems:
            print(problem, file=sys.stderr)
        count = len(e.problems)
        print(f"{path}: {count} problem{'s' if count != 1 else ''}", file=sys.stderr)
        return 1
    from oggmhub.dataset_layout import catalog_warnings

    for where, warning in catalog_warnings(catalog):
        print(f"{path}: {where}: warning: {warning}", file=sys.stderr)
    envs = ", ".join(
        f"{env.name} ({len(env.sizes)} sizes, {len(env.gpus)} GPU variants)"
        for env in catalog.environments.values()
    )
    optional = [d.name for d in catalog.datasets.values() if not d.required]
    note = f" ({', '.join(optional)}: required: false, sessions start without it if unreachable)" if optional else ""
    print(f"{path}: OK: environments {envs}; {len(catalog.datasets)} datasets{note}; "
          f"{len(catalog.cohorts)} cohorts")
    return 0


# modules with a register(commands) function, in the order they appear in --help
COMMAND_MODULES = ["oggmhub.cli", "oggmhub.backends.local.hub", "oggmhub.images", "oggmhub.cli.datasets", "oggmhub.cohorts.cli"]


def register(commands):
    """The ``catalog`` verbs."""
    catalog = commands.add_parser("catalog", help="work with the catalog")
    catalog_commands = catalog.add_subparsers(dest="catalog_command", metavar="ACTION", required=True)
    check = catalog_commands.add_parser("check", help="validate a catalog file")
    check.add_argument("path", nargs="?", help="catalog file (default: $OGGMHUB_CATALOG or the repository's hub_config/catalog.yaml)")
    check.set_defaults(func=catalog_check)


def build_parser():
    parser = argparse.ArgumentParser(prog="oggmhub", description="oggmhub: environments, datasets and cohorts for JupyterHub")
    parser.add_argument("--version", action="version", version=f"oggmhub {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(commands)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
