"""The ``oggmhub datasets`` verbs: list, mirror, mount, unmount."""

from __future__ import annotations

import os
import signal
import sys
import threading

from oggmhub.catalog import CatalogError, default_catalog_path, load_catalog
from oggmhub.session import env as session_vars


def register(commands):
    datasets = commands.add_parser("datasets", help="read-only datasets: list, mirror, mount")
    verbs = datasets.add_subparsers(dest="datasets_command", metavar="ACTION", required=True)
    catalog_help = "catalog file (default: $OGGMHUB_CATALOG or hub_config/catalog.yaml)"

    listing = verbs.add_parser("list", help="the catalog's datasets and the environments mounting them")
    listing.add_argument("--catalog", help=catalog_help)
    listing.set_defaults(func=list_datasets)

    mirror = verbs.add_parser(
        "mirror", help="copy URLs (or a local tree) into a bucket laid out as OGGM's download cache",
        description="Copy each URL to DEST/<host>/<path> (OGGM's download-cache layout), or a local "
                    "tree already in that layout with --tree. DEST is gs://BUCKET[/PREFIX], s3://..., "
                    "a local folder, or the name of a catalog dataset.",
    )
    mirror.add_argument("dest", help="gs://BUCKET[/PREFIX], s3://..., a folder, or a catalog dataset name")
    mirror.add_argument("urls", nargs="*", metavar="URL", help="URLs to copy")
    mirror.add_argument("--urls-from", metavar="FILE", help="a file of URLs, one a line ('-': stdin; '#' comments)")
    mirror.add_argument("--tree", metavar="DIR", help="copy this folder (an OGGM download cache: <host>/<path>) or OGGM's sample-data zip "
                             "(oggm-sample-data-<commit>.zip) instead")
    mirror.add_argument("--endpoint", help="the bucket's service URL (an emulator, MinIO); default: the catalog's or the cloud's")
    mirror.add_argument("--token", help="gcsfs token for writing: a service-account JSON file, google_default or anon")
    mirror.add_argument("--overwrite", action="store_true", help="replace objects that already exist with the same size")
    mirror.add_argument("--catalog", help=catalog_help)
    mirror.set_defaults(func=mirror_command)

    mount = verbs.add_parser("mount", help="mount datasets read-only with FUSE (the sidecar's command)")
    mount.add_argument("names", nargs="*", metavar="NAME", help="datasets to mount (default: all given)")
    mount.add_argument("--root", required=True, help="mount each dataset at ROOT + its mount path ('/' in a sidecar)")
    mount.add_argument("--from-env", action="store_true", help="take the datasets from $OGGMHUB_DATASETS_JSON, not the catalog")
    mount.add_argument("--wait", action="store_true", help="stay in the foreground; unmount on SIGTERM or Ctrl-C")
    mount.add_argument("--timeout", type=float, default=None,
                       help="seconds to wait for each source (default: $OGGMHUB_MOUNT_OPTIONS's timeout, else 5)")
    mount.add_argument("--catalog", help=catalog_help)
    mount.set_defaults(func=mount_command)

    unmount = verbs.add_parser("unmount", help="unmount the oggmhub mounts under a folder (stale ones included)")
    unmount.add_argument("--root", required=True)
    unmount.set_defaults(func=unmount_command)


def _catalog(args):
    try:
        return load_catalog(args.catalog or default_catalog_path())
    except CatalogError as e:
        print(e, file=sys.stderr)
        return None


def list_datasets(args):
    catalog = _catalog(args)
    if catalog is None:
        return 1
    if not catalog.datasets:
        print("no datasets in the catalog")
        return 0
    for dataset in catalog.datasets.values():
        users = [env.name for env in catalog.environments.values() if dataset.name in env.datasets]
        print(f"{dataset.name}: {dataset.title}")
        print(f"  source      {dataset.source}" + (f" (endpoint {dataset.endpoint})" if dataset.endpoint else ""))
        print(f"  mounted at  {dataset.mount_path} in: {', '.join(users) or 'no environment by default'}")
        for label, value in (("licence", dataset.licence), ("citation", dataset.citation),
                             ("doi", dataset.doi and f"https://doi.org/{dataset.doi}")):
            if value:
                print(f"  {label:11s} {value}")
    return 0


def _read_urls(path):
    stream = sys.stdin if path == "-" else open(path, encoding="utf-8")
    with stream:
        return [line.strip() for line in stream if line.strip() and not line.lstrip().startswith("#")]


def mirror_command(args):
    """``oggmhub datasets mirror``; refuses a destination whose catalog entry would hide it
    from OGGM's download cache (:mod:`oggmhub.dataset_layout`)."""
    from oggmhub.cli import mirror

    dest, endpoint, dataset = args.dest, args.endpoint, None
    by_name = "://" not in dest and not dest.startswith((".", "/"))
    catalog = _catalog(args) if by_name or args.catalog else _quiet_catalog()
    if by_name:
        if catalog is None:
            return 1
        if dest not in catalog.datasets:
            known = ", ".join(catalog.datasets) or "none"
            print(f"{dest!r} is neither gs://, s3://, a folder, nor a catalog dataset ({known})", file=sys.stderr)
            return 2
    urls = list(args.urls) + (_read_urls(args.urls_from) if args.urls_from else [])
    if bool(urls) == bool(args.tree):
        print("give URLs (or --urls-from FILE), or --tree DIR, not both", file=sys.stderr)
        return 2
    if catalog is not None:  # a mirror its catalog entry would mount where OGGM does not look: refused
        from oggmhub.dataset_layout import mirror_mismatch, target_dataset

        dataset = target_dataset(catalog, dest)
        problem = dataset and mirror_mismatch(catalog, dataset, _example_target(mirror, urls, args.tree))
        if problem:
            print(f"mirror to {dest}: {problem}", file=sys.stderr)
            return 1
    if by_name:
        dest, endpoint = dataset.source, endpoint or dataset.endpoint or None
    try:
        fs, root = mirror.destination(dest, endpoint=endpoint, token=args.token)
        if args.tree:
            report = mirror.mirror_tree(args.tree, fs, root, overwrite=args.overwrite)
        else:
            report = mirror.mirror_urls(urls, fs, root, overwrite=args.overwrite)
    except (ValueError, OSError) as e:
        print(f"mirror to {dest}: {e}", file=sys.stderr)
        return 1
    print(f"{len(report.copied)} copied, {len(report.skipped)} already there, {len(report.failed)} failed")
    return 0 if report.ok else 1


def _quiet_catalog():
    try:
        return load_catalog(default_catalog_path())
    except (CatalogError, OSError):
        return None  # no catalog to check a folder or bucket against


def _example_target(mirror, urls, tree):
    """A path the mirror would write (relative to its root), to name in a refusal."""
    try:
        if tree and os.path.isfile(tree):
            return mirror.sample_data_target(tree)
        if urls:
            return mirror.cache_name(urls[0])
    except ValueError:
        pass
    return None


def _datasets_to_mount(args):
    if args.from_env:
        from oggmhub.session.datasets import session_datasets

        available = {d.name: d for d in session_datasets()}
        where = "$OGGMHUB_DATASETS_JSON"
    else:
        catalog = _catalog(args)
        if catalog is None:
            return None
        available, where = catalog.datasets, "the catalog"
    unknown = [n for n in args.names if n not in available]
    if unknown:
        print(f"unknown dataset(s) {', '.join(unknown)}; {where} has: {', '.join(available) or 'none'}", file=sys.stderr)
        return None
    return [available[n] for n in args.names] if args.names else list(available.values())


def mount_command(args):
    from oggmhub.mounts import options as mount_options
    from oggmhub.mounts import placeholders
    from oggmhub.mounts import process as mounts
    from oggmhub.session.datasets import local_mount_path, write_unavailable_notices

    datasets = _datasets_to_mount(args)
    if datasets is None:
        return 2
    if args.wait:  # a restarted sidecar: mounts at its paths are its predecessor's, stale
        paths = {local_mount_path(d, args.root) for d in datasets}
        for path in paths & set(mounts.mounted()):
            mounts.cleanup_stale_mounts(path)
        placeholders.unmount_placeholders(paths)
    stop = threading.Event()
    if args.wait:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    try:
        options = mount_options.from_env(timeout=args.timeout)  # c.DatasetMounts, passed by the spawner
    except ValueError as e:
        print(f"oggmhub datasets mount: {e}", file=sys.stderr)
        return 2
    missing = {}

    def unavailable(dataset, error):  # the session's datasets (the sidecar): catalog required: false
        missing[dataset.name] = str(error)
        print(f"{error}; the session starts without it", file=sys.stderr, flush=True)

    try:
        live = mounts.mount_datasets(datasets, args.root, options, unavailable=unavailable if args.from_env else None,
                                     admin_log=args.wait)  # mounts that outlive the command keep no pipe of it open
    except mounts.MountError as e:
        print(e, file=sys.stderr)
        if args.from_env:
            _termination_message(f"{e}. Nothing was started.")
        return 1
    stand_ins = []
    if args.from_env:  # read by the session's oggmhub.session.datasets.unavailable()
        write_unavailable_notices(datasets, missing, args.root)
        stand_ins = _stand_in_for_missing(datasets, missing, args.root) if args.wait else []
    for mount in live:
        print(f"mounted {mount.dataset} at {mount.mountpoint}", flush=True)
    if not args.wait:
        return 0
    while not stop.wait(1):
        dead = [m for m in live if m.process.poll() is not None]
        if dead:
            print(f"mount process for {', '.join(m.dataset for m in dead)} exited; stopping", file=sys.stderr)
            mounts.unmount_datasets(live)
            placeholders.unmount_placeholders(stand_ins)
            return 1
    mounts.unmount_datasets(live)
    placeholders.unmount_placeholders(stand_ins)
    print("unmounted", flush=True)
    return 0


def _termination_message(text):
    """Leave ``text`` where Kubernetes reads a container's last words (the hub's spawner
    shows it to the user, :meth:`OGGMHubSpawner.is_pod_running`); elsewhere, nothing."""
    path = os.environ.get(session_vars.TERMINATION_LOG, "/dev/termination-log")
    if session_vars.TERMINATION_LOG in os.environ or os.path.exists(path):
        try:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text[:4000])
        except OSError:
            pass


def _stand_in_for_missing(datasets, missing, root):
    """A note-holding stand-in mount where each left-out dataset would be, so the pod's
    ``mountpoint`` probes pass and it becomes ready without them; the paths mounted."""
    from oggmhub.mounts import placeholders
    from oggmhub.session.datasets import local_mount_path

    made = []
    for dataset in datasets:
        if dataset.name in missing:
            path = local_mount_path(dataset, root)
            try:
                placeholders.mount_placeholder(path, dataset.name, missing[dataset.name])
                made.append(path)
            except placeholders.PlaceholderError as e:
                print(f"dataset '{dataset.name}': no stand-in at {path} ({e}); the pod's probes will wait for it",
                      file=sys.stderr, flush=True)
    return made


def unmount_command(args):
    from oggmhub.mounts import process as mounts

    removed = mounts.cleanup_stale_mounts(os.path.abspath(args.root))
    for path in removed:
        print(f"unmounted {path}")
    if not removed:
        print(f"no oggmhub mounts under {args.root}")
    return 0
