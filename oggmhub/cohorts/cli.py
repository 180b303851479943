"""``oggmhub cohort``: manage workshop and class cohorts on a running hub.

Every action talks to the hub's REST API (``--hub``, default ``$JUPYTERHUB_URL`` or
http://127.0.0.1:8000) with an API token (``--token``, default
``$JUPYTERHUB_API_TOKEN``; make one at /hub/token as an admin or a cohort's organiser)::

    oggmhub cohort create glaciers-2026 --start 2026-06-01T08:00Z --end 2026-06-05T18:00Z \\
        --env oggm=small,medium --organiser alice --max-members 40 \\
        --materials https://github.com/OGGM/tutorials --branch master
    oggmhub cohort add glaciers-2026 --csv students.csv
    oggmhub cohort prewarm glaciers-2026 --concurrency 10
    oggmhub cohort close glaciers-2026 --export homes.tar.gz [--delete-homes]

Errors go to stderr, one line per problem, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

import yaml

from oggmhub.cohorts import client as cohort_api
from oggmhub.catalog import CatalogError, default_catalog_path, load_catalog
from oggmhub.cohorts.model import CohortError, prewarm_choice


def _client(args):
    return cohort_api.HubClient(args.hub, args.token)


def _run(args, coro_fn):
    """Run ``coro_fn(client)``; print the hub's problems and return 1 on an error."""
    async def main():
        client = _client(args)
        try:
            return await coro_fn(client)
        finally:
            client.close()

    try:
        result = asyncio.run(main())
    except cohort_api.HubAPIError as e:
        for problem in e.problems:
            print(f"oggmhub cohort {args.cohort_command}: {problem}", file=sys.stderr)
        return 1
    except CohortError as e:
        for problem in e.problems:
            print(f"oggmhub cohort {args.cohort_command}: {problem}", file=sys.stderr)
        return 1
    return 0 if result is None else result


def _print_cohort(c):
    state = f"closed {c['closed_at']}" if c.get("closed_at") else "open"
    envs = "; ".join(f"{e} ({', '.join(s) if s else 'all sizes'})" for e, s in c["environments"].items())
    limits = c["limits"]
    print(f"cohort {c['name']}{' – ' + c['title'] if c.get('title') else ''} [{state}]")
    print(f"  window:       {c['start']} to {c['end']}")
    print(f"  environments: {envs}")
    print(f"  per member:   {limits['servers']} server(s), {limits['dask_workers']} Dask workers, {limits['gpus']} GPU(s)")
    print(f"  organisers:   {', '.join(c['organisers']) or 'hub admins'}")
    if c.get("materials"):
        m = c["materials"]
        print(f"  materials:    {m['repo']} ({m['branch']}) into ~/{m['dir']}")
    size = f" of at most {c['max_members']}" if c.get("max_members") else ""
    print(f"  members:      {len(c['members'])}{size}; {'has a join code' if c['has_join_code'] else 'no join code'}")
    for member in c["members"]:
        print(f"    {member['name']:30s} {member['server']}")
    for export in c.get("exports") or []:
        print(f"  export {export['id']}: {export['file']} ({export['bytes']} bytes, sha256 {export['sha256']})")


# --- actions --------------------------------------------------------------------------------


def create(args):
    spec = {}
    if args.from_catalog:
        try:
            catalog = load_catalog(args.catalog)
        except CatalogError as e:
            print("\n".join(e.problems), file=sys.stderr)
            return 1
        if args.name not in catalog.cohorts:
            print(f"oggmhub cohort create: {args.catalog} declares no cohort {args.name!r} "
                  f"(it declares: {', '.join(catalog.cohorts) or 'none'})", file=sys.stderr)
            return 1
        spec.update(catalog.cohorts[args.name])
    spec["name"] = args.name
    given = {
        "title": args.title, "start": args.start, "end": args.end, "environments": args.env or None,
        "organisers": args.organiser or None, "max_members": args.max_members,
    }
    spec.update({k: v for k, v in given.items() if v is not None})
    limits = {k: getattr(args, k) for k in ("servers", "dask_workers", "gpus") if getattr(args, k) is not None}
    if limits:
        spec["limits"] = {**spec.get("limits", {}), **limits}
    if args.materials:
        spec["materials"] = {"repo": args.materials, "branch": args.branch,
                             **({"dir": args.materials_dir} if args.materials_dir else {})}
    spec["join_code"] = not args.no_join_code

    async def go(client):
        answer = await cohort_api.create(client, spec)
        _print_cohort(answer["cohort"])
        if answer.get("join_code"):
            print(f"join code: {answer['join_code']}  (shown once; students sign up at "
                  f"{args.hub.rstrip('/')}/hub/signup?join_code={answer['join_code']})")

    return _run(args, go)


def list_(args):
    async def go(client):
        cohorts = await cohort_api.list_cohorts(client)
        if args.json:
            print(json.dumps(cohorts, indent=2))
            return
        if not cohorts:
            print("no cohorts")
        for c in cohorts:
            state = "closed" if c.get("closed_at") else "open"
            print(f"{c['name']:30s} {state:6s} {c['start']} to {c['end']}  {len(c['members'])} member(s)")

    return _run(args, go)


def show(args):
    async def go(client):
        cohort = await cohort_api.show(client, args.name)
        print(json.dumps(cohort, indent=2)) if args.json else _print_cohort(cohort)

    return _run(args, go)


def add(args):
    csv_text = None
    if args.csv:
        try:
            with open(args.csv, encoding="utf-8-sig") as f:
                csv_text = f.read()
        except OSError as e:
            print(f"oggmhub cohort add: cannot read {args.csv}: {e.strerror}", file=sys.stderr)
            return 1
    if not args.usernames and csv_text is None:
        print("oggmhub cohort add: give usernames, or --csv FILE", file=sys.stderr)
        return 1

    async def go(client):
        answer = await cohort_api.add_members(client, args.name, args.usernames, csv_text,
                                              os.path.basename(args.csv or "members.csv"))
        print(f"added {len(answer['added'])}: {', '.join(answer['added']) or '-'}")
        if answer["already"]:
            print(f"already members: {', '.join(answer['already'])}")
        if answer.get("invited"):
            print(f"invited (members once they accept on their hub home page): {', '.join(answer['invited'])}")

    return _run(args, go)


def remove(args):
    async def go(client):
        answer = await cohort_api.remove_members(client, args.name, args.usernames)
        print(f"removed: {', '.join(answer['removed']) or '-'}; servers stopped: {', '.join(answer['stopped']) or 'none'}")
        if answer.get("withdrawn"):
            print(f"invitations withdrawn: {', '.join(answer['withdrawn'])}")

    return _run(args, go)


def organisers(args):
    async def go(client):
        names = await cohort_api.change_organisers(client, args.name, args.add, args.remove)
        print(f"organisers of cohort {args.name}: {', '.join(names) or 'none (hub admins only)'}")

    return _run(args, go)


def join_code(args):
    async def go(client):
        code = await cohort_api.new_join_code(client, args.name)
        print(f"join code: {code}  (the previous one no longer works)")

    return _run(args, go)


def prewarm(args):
    async def go(client):
        cohort = await cohort_api.show(client, args.name)
        members = [m["name"] for m in cohort["members"]]
        options = prewarm_choice(_Record(cohort))
        if args.env:
            options = {"profile": args.env}
        if args.size:
            options["size"] = args.size
        print(f"pre-warming {len(members)} server(s) of cohort {args.name} with {json.dumps(options)}, "
              f"{args.concurrency} at a time", flush=True)

        def progress(event):
            if event["state"] in ("ready", "failed"):
                why = f": {event['message']}" if event["message"] else ""
                print(f"[{event['ready'] + event['failed']:4d}/{event['total']}] {event['member']} "
                      f"{event['state']}{why} ({event['elapsed']:.1f} s)", flush=True)

        result = await cohort_api.prewarm(client, members, options, args.concurrency, args.timeout, progress)
        summary = result.summary()
        print(f"{summary['ready']} of {summary['members']} ready, {summary['lost']} not, in {summary['all_ready_s']} s")
        if args.json:
            print(json.dumps(summary))
        return 0 if not result.failed else 1

    return _run(args, go)


class _Record:
    """The bits of a Cohort that prewarm_choice reads, from the API's JSON."""

    def __init__(self, record):
        self.environments = record["environments"]


def close(args):
    if args.delete_homes and not args.export:
        print("oggmhub cohort close: --delete-homes needs --export FILE: homes are deleted only "
              "after an export succeeded", file=sys.stderr)
        return 1

    async def go(client):
        answer = await cohort_api.close(client, args.name)
        print(f"cohort {args.name} closed; servers stopped: {', '.join(answer['stopped']) or 'none'}")
        if args.export:
            record = await cohort_api.export(client, args.name, args.export)
            print(f"homes of {len(record['members'])} member(s) exported to {args.export} "
                  f"({record['bytes']} bytes, sha256 {record['sha256']})")
            if args.delete_homes:
                deleted = (await cohort_api.delete_homes(client, args.name, record["id"], record["sha256"]))["deleted"]
                print(f"homes deleted after the export: {', '.join(deleted) or 'none'}")

    return _run(args, go)


def export(args):
    async def go(client):
        record = await cohort_api.export(client, args.name, args.file)
        print(f"homes of {len(record['members'])} member(s) exported to {args.file} "
              f"({record['bytes']} bytes, sha256 {record['sha256']})")
        if record["missing"]:
            print(f"no home yet (never started): {', '.join(record['missing'])}")

    return _run(args, go)


def prepuller_values(args):
    """Helm values that make the chart's image pre-puller pull the cohort's images."""
    try:
        catalog = load_catalog(args.catalog)
    except CatalogError as e:
        print("\n".join(e.problems), file=sys.stderr)
        return 1

    async def go(client):
        cohort = await cohort_api.show(client, args.name)
        print(yaml.safe_dump(prepuller_images(cohort["name"], cohort["environments"], catalog), sort_keys=False), end="")

    return _run(args, go)


def prepuller_images(name, environments, catalog):
    """``{"prePuller": {"extraImages": ...}}`` for a cohort's environments (zero-to-jupyterhub values)."""
    images = {}
    for env_name in environments:
        env = catalog.environments.get(env_name)
        if env is None:
            raise CohortError(f"environments: {env_name!r} is not in {catalog.path}")
        key = f"cohort-{name}-{env_name}"[:63].rstrip("-")
        images[key] = {"name": env.image.name, "tag": env.image.tag}
        for gpu in env.gpus.values():
            if getattr(gpu, "image", None) is not None:
                images[f"{key}-{gpu.name}"[:63].rstrip("-")] = {"name": gpu.image.name, "tag": gpu.image.tag}
    return {"prePuller": {"extraImages": images}}


# --- parser ---------------------------------------------------------------------------------


def register(commands):
    """The ``cohort`` verbs."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--hub", default=os.environ.get("JUPYTERHUB_URL", "http://127.0.0.1:8000"),
                        help="the hub's URL (default: $JUPYTERHUB_URL or %(default)s)")
    common.add_argument("--token", default=os.environ.get("JUPYTERHUB_API_TOKEN"),
                        help="an API token of an admin or the cohort's organiser (default: $JUPYTERHUB_API_TOKEN)")
    cohort = commands.add_parser("cohort", help="manage workshop and class cohorts on a running hub")
    actions = cohort.add_subparsers(dest="cohort_command", metavar="ACTION", required=True)

    p = actions.add_parser("create", parents=[common], help="create a cohort (admins); prints its join code once")
    p.add_argument("name", help="the cohort's name (lower-case letters, digits and '-')")
    p.add_argument("--start", help="start of the window, ISO-8601 (UTC if no offset), e.g. 2026-06-01T08:00Z")
    p.add_argument("--end", help="end of the window, ISO-8601")
    p.add_argument("--env", action="append", metavar="ENV[=SIZE,...]",
                   help="an environment members may use, optionally with the sizes allowed (repeat)")
    p.add_argument("--title", help="a title shown to organisers and on sign-up")
    p.add_argument("--organiser", action="append", metavar="USERNAME", help="an organiser (repeat)")
    p.add_argument("--max-members", type=int, help="the cohort's size limit")
    p.add_argument("--servers", type=int, help="servers a member may run at once (default 1)")
    p.add_argument("--dask-workers", type=int, help="Dask workers per member (default 4)")
    p.add_argument("--gpus", type=int, help="GPUs per server (default 0)")
    p.add_argument("--materials", metavar="GIT_URL", help="a git repository pulled into each member's home")
    p.add_argument("--branch", default="main", help="the materials' branch (default: %(default)s)")
    p.add_argument("--materials-dir", help="the folder in the home (default: the repository's name)")
    p.add_argument("--no-join-code", action="store_true", help="make no join code (members are added by name)")
    p.add_argument("--from-catalog", action="store_true", help="start from the catalog's cohorts.NAME entry")
    p.add_argument("--catalog", default=default_catalog_path(), help="the catalog (default: %(default)s)")
    p.set_defaults(func=create)

    p = actions.add_parser("list", parents=[common], help="the cohorts you manage")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=list_)

    p = actions.add_parser("show", parents=[common], help="a cohort, its members and their servers")
    p.add_argument("name")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=show)

    p = actions.add_parser("add", parents=[common], help="add members by username or CSV (all or nothing)")
    p.add_argument("name")
    p.add_argument("usernames", nargs="*")
    p.add_argument("--csv", metavar="FILE", help="a CSV whose first column is the username (a header row is skipped)")
    p.set_defaults(func=add)

    p = actions.add_parser("remove", parents=[common], help="remove members (their servers stop; homes stay)")
    p.add_argument("name")
    p.add_argument("usernames", nargs="+")
    p.set_defaults(func=remove)

    p = actions.add_parser("organisers", parents=[common], help="add or remove organisers (hub admins)")
    p.add_argument("name")
    p.add_argument("--add", nargs="+", default=[], metavar="USER", help="users who become organisers")
    p.add_argument("--remove", nargs="+", default=[], metavar="USER", help="organisers who stop being ones")
    p.set_defaults(func=organisers)

    p = actions.add_parser("join-code", parents=[common], help="make a new join code (the old one stops working)")
    p.add_argument("name")
    p.set_defaults(func=join_code)

    p = actions.add_parser("prewarm", parents=[common], help="start all members' servers ahead of class")
    p.add_argument("name")
    p.add_argument("--concurrency", type=int, default=10, help="servers starting at once (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=900, help="seconds one server may take (default: %(default)s)")
    p.add_argument("--env", help="the environment to start (default: the cohort's first)")
    p.add_argument("--size", help="the size to start (default: the hub's choice)")
    p.add_argument("--json", action="store_true", help="end with a JSON summary line")
    p.set_defaults(func=prewarm)

    p = actions.add_parser("close", parents=[common], help="close: stop members' servers, refuse their starts")
    p.add_argument("name")
    p.add_argument("--export", metavar="FILE", help="then download all members' homes as one tar.gz")
    p.add_argument("--delete-homes", action="store_true", help="then delete the homes (only after the export succeeded)")
    p.set_defaults(func=close)

    p = actions.add_parser("export", parents=[common], help="download all members' homes as one tar.gz")
    p.add_argument("name")
    p.add_argument("file")
    p.set_defaults(func=export)

    p = actions.add_parser("prepuller-values", parents=[common],
                           help="Helm values making the chart's pre-puller pull the cohort's images")
    p.add_argument("name")
    p.add_argument("--catalog", default=default_catalog_path(), help="the catalog (default: %(default)s)")
    p.set_defaults(func=prepuller_values)
