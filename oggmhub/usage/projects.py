"""Projects a session charges: the catalog's ``projects`` (e.g. a grant, with its members)
and the user's cohorts (cohorts are projects too, under their own names).

A user with several chooses one in the picker (the ``project`` server option); with one,
it is theirs; with none, the session charges no project. A project that is unknown, or
that the user does not belong to, is refused with a 400 naming the user's projects.
"""

from __future__ import annotations

from oggmhub.choice import ChoiceError
from oggmhub.limits import quote

OPTION = "project"


def user_projects(catalog, username, cohort_names=()):
    """The projects ``username`` may charge: the catalog's that list them, then their cohorts."""
    found = [name for name, spec in (getattr(catalog, "projects", None) or {}).items()
             if username in (spec.get("members") or ())]
    return found + [c for c in cohort_names if c not in found]


def choose_project(catalog, username, cohort_names, requested):
    """The project a session charges: ``requested`` if the user belongs to it, else (none
    requested) their first project, or '' when they have none. :class:`ChoiceError` (400)
    for a project that is unknown or not theirs."""
    mine = user_projects(catalog, username, cohort_names)
    if requested in (None, ""):
        return mine[0] if mine else ""
    if not isinstance(requested, str):
        raise ChoiceError(OPTION, f"server option 'project' must be a string, not {type(requested).__name__}")
    theirs = f"your projects: {', '.join(mine)}" if mine else "you belong to no project"
    if requested in mine:
        return requested
    known = set(getattr(catalog, "projects", None) or {}) | set(cohort_names)
    if requested not in known:
        raise ChoiceError(OPTION, f"unknown project {quote(requested)}; {theirs}")
    raise ChoiceError(OPTION, f"you do not belong to project {quote(requested)}; {theirs}")


def picker_html(projects, chosen=""):
    """The picker's project choice (only for a user with more than one project)."""
    import html

    if len(projects) < 2:
        return ""
    options = "".join(
        f'<option value="{html.escape(p)}"{" selected" if p == chosen else ""}>{html.escape(p)}</option>'
        for p in projects)
    return ('<div class="form-group" id="oggmhub-project"><h3>Project</h3>'
            '<p>Usage of this session (and its Dask workers and task runs) is charged to:</p>'
            f'<select name="project" class="form-control">{options}</select></div>')
