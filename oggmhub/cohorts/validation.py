"""Validation of what organisers type: a cohort's spec, usernames, member lists (pure)."""

from __future__ import annotations

import csv
import io
import re

from oggmhub.limits import quote
from oggmhub.cohorts.model import (
    Cohort,
    CohortError,
    DIR_NAME,
    GIT_REF,
    GIT_URL,
    LIMITS,
    Materials,
    NAME_PATTERN,
    NAME_RULE,
    USERNAME_PATTERN,
    USERNAME_RULE,
    human_time,
    now_utc,
    parse_time,
)


# --- validation of what organisers type ------------------------------------------------------


def parse_environments(value):
    """``["oggm", "fiji=small,medium"]`` or ``{"oggm": None, "fiji": ["small"]}`` as a dict."""
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, (list, tuple)):
        items = []
        for item in value:
            name, sep, sizes = str(item).partition("=") if "=" in str(item) else str(item).partition(":")
            items.append((name.strip(), [s.strip() for s in sizes.split(",") if s.strip()] if sep else None))
    elif isinstance(value, str):
        return parse_environments([v for v in re.split(r"[;\s]+", value) if v])
    else:
        raise CohortError("environments: give a list such as ['oggm', 'fiji=small,medium']")
    return {name: (list(sizes) if sizes is not None else None) for name, sizes in items}


def check_username(name, where):
    if not isinstance(name, str) or not USERNAME_PATTERN.match(name):
        raise CohortError(f"{where}: {quote(name)} is not a valid username ({USERNAME_RULE})")
    return name


def normalize_username(name):
    return str(name).strip().lower()


def _int_in_range(value, where, minimum, maximum):
    if isinstance(value, bool):
        raise CohortError(f"{where}: {value!r} is not a whole number")
    try:
        number = int(str(value).strip()) if not isinstance(value, int) else value
    except (TypeError, ValueError):
        raise CohortError(f"{where}: {value!r} is not a whole number") from None
    if not minimum <= number <= maximum:
        raise CohortError(f"{where}: {number} is out of range; allowed: {minimum} to {maximum}")
    return number


def validate_spec(spec, catalog, now=None, existing=()):
    """Turn what an organiser asked for (a dict, e.g. a JSON body) into a :class:`Cohort`.

    Checks every field (environments and sizes against ``catalog``, the window, limits,
    materials, organisers) and raises one :class:`CohortError` listing every problem.
    ``existing`` is the names of cohorts already on the hub.
    """
    now = now or now_utc()
    if not isinstance(spec, dict):
        raise CohortError("a cohort is a JSON object with name, start, end and environments")
    problems = []

    def check(fn, *args):
        try:
            return fn(*args)
        except CohortError as e:
            problems.extend(e.problems)
            return None

    allowed = {"name", "title", "start", "end", "environments", "organisers", "limits", "materials",
               "max_members", "join_code"}
    for key in sorted(set(spec) - allowed):
        problems.append(f"{key}: unknown field; allowed: {', '.join(sorted(allowed))}")

    name = spec.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        problems.append(f"name: {name!r} is not a valid cohort name ({NAME_RULE})")
    elif name in existing:
        problems.append(f"name: a cohort named {name!r} already exists; choose another name")

    start = check(parse_time, spec.get("start"), "start")
    end = check(parse_time, spec.get("end"), "end")
    if start and end:
        if end <= start:
            problems.append(
                f"end: the window ends ({human_time(end)}) before it starts ({human_time(start)}); "
                "the end must be after the start"
            )
        elif end <= now:
            problems.append(f"end: the window ended already ({human_time(end)}); it is now {human_time(now)}")

    environments = check(_check_environments, spec.get("environments"), catalog)
    organisers = check(_check_organisers, spec.get("organisers") or [])
    limits = check(_check_limits, spec.get("limits") or {})
    materials = check(_check_materials, spec.get("materials"), name)
    max_members = spec.get("max_members")
    if max_members not in (None, ""):
        max_members = check(_int_in_range, max_members, "max_members", 1, 100_000)
    else:
        max_members = None
    title = spec.get("title") or ""
    if not isinstance(title, str) or len(title) > 200:
        problems.append("title: a title is text of at most 200 characters")
    if problems:
        raise CohortError(problems)
    return Cohort(
        name=name, title=title.strip(), start=start, end=end, environments=environments,
        organisers=tuple(organisers), limits=limits, materials=materials, max_members=max_members,
        created_at=now,
    )


def _check_environments(value, catalog):
    if value in (None, "", [], {}):
        raise CohortError(
            f"environments: give at least one; choose from: {', '.join(catalog.environments)}"
        )
    problems, result = [], {}
    for name, sizes in parse_environments(value).items():
        env = catalog.environments.get(name)
        if env is None:
            problems.append(f"environments: unknown environment {name!r}; choose from: {', '.join(catalog.environments)}")
            continue
        if sizes is None:
            result[name] = None
            continue
        if not isinstance(sizes, (list, tuple)) or not sizes:
            problems.append(f"environments.{name}: give a list of sizes, or none for all of {', '.join(env.sizes)}")
            continue
        for size in sizes:
            if size not in env.sizes:
                problems.append(
                    f"environments.{name}: size {size!r} is not offered for {env.display_name}; "
                    f"choose from: {', '.join(env.sizes)}"
                )
        result[name] = tuple(s for s in env.sizes if s in sizes)  # catalog order
    if problems:
        raise CohortError(problems)
    return result


def _check_organisers(value):
    if isinstance(value, str):
        value = [v for v in re.split(r"[,\s]+", value) if v]
    if not isinstance(value, (list, tuple)):
        raise CohortError("organisers: give a list of usernames")
    problems, names = [], []
    for name in value:
        name = normalize_username(name)
        try:
            names.append(check_username(name, "organisers"))
        except CohortError as e:
            problems.extend(e.problems)
    if problems:
        raise CohortError(problems)
    return list(dict.fromkeys(names))


def _check_limits(value):
    if not isinstance(value, dict):
        raise CohortError(f"limits: give an object with any of: {', '.join(LIMITS)}")
    problems, limits = [], {}
    for key in sorted(set(value) - set(LIMITS)):
        problems.append(f"limits.{key}: unknown limit; allowed: {', '.join(LIMITS)}")
    for key, (default, low, high, _) in LIMITS.items():
        raw = value.get(key)
        try:
            limits[key] = default if raw in (None, "") else _int_in_range(raw, f"limits.{key}", low, high)
        except CohortError as e:
            problems.extend(e.problems)
    if problems:
        raise CohortError(problems)
    return limits


def _check_materials(value, cohort):
    if value in (None, "", {}):
        return None
    if isinstance(value, str):
        value = {"repo": value}
    if not isinstance(value, dict):
        raise CohortError("materials: give {repo: URL, branch: NAME}")
    problems = []
    for key in sorted(set(value) - {"repo", "branch", "dir"}):
        problems.append(f"materials.{key}: unknown field; allowed: repo, branch, dir")
    repo = str(value.get("repo") or "").strip()
    if not GIT_URL.match(repo):
        problems.append(
            f"materials.repo: {repo!r} is not a git repository URL (https://, git://, ssh://, file:/// or user@host:path)"
        )
    branch = str(value.get("branch") or "main").strip()
    if not GIT_REF.match(branch):
        problems.append(f"materials.branch: {branch!r} is not a valid git branch name")
    default_dir = re.sub(r"\.git$", "", repo.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]) or (cohort or "materials")
    folder = str(value.get("dir") or default_dir).strip()
    if not DIR_NAME.match(folder):
        problems.append(f"materials.dir: {folder!r} must be a single folder name in the home (letters, digits, '.', '_', '-')")
    if problems:
        raise CohortError(problems)
    return Materials(repo=repo, branch=branch, dir=folder)


def parse_members_csv(text, source="members.csv"):
    """Usernames from a CSV (first column; an optional header row ``username,...``).

    Blank lines and repeated names are skipped. Raises :class:`CohortError` naming the
    line of every bad row; an empty file is an error too.
    """
    problems, names = [], []
    text = text[1:] if text.startswith("\ufeff") else text  # the byte-order mark Excel writes
    reader = csv.reader(io.StringIO(text), strict=True)
    try:
        for row in reader:
            line = reader.line_num
            if not row or all(not cell.strip() for cell in row):
                continue
            first = normalize_username(row[0])
            if not names and not problems and first in ("username", "user", "login", "name"):
                continue  # the header
            if not first:
                problems.append(f"{source}:{line}: the first column (the username) is empty")
            elif not USERNAME_PATTERN.match(first):
                problems.append(f"{source}:{line}: {quote(row[0].strip())} is not a valid username ({USERNAME_RULE})")
            else:
                names.append(first)
    except csv.Error as e:
        problems.append(f"{source}:{reader.line_num}: not valid CSV: {e}")
    if not names and not problems:
        problems.append(f"{source}: no usernames found; give one username per line (first column)")
    if problems:
        raise CohortError(problems)
    return list(dict.fromkeys(names))
