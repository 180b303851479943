"""Bounds on what users send: nothing large is stored, logged or echoed back.

:func:`quote` is how an error message names a bad value: at most a short prefix of it,
with its length. :func:`cap_options` bounds server options before anything stores them
(JupyterHub saves a spawn request's options in its database before the spawner sees
them; :func:`install_option_cap` makes that save go through :func:`cap_options`).
"""

from __future__ import annotations

QUOTE_CHARS = 40  # of a bad value, in an error message
MAX_OPTION_CHARS = 200  # one option value (an environment, size, GPU or dataset name)
MAX_OPTIONS = 16  # keys in the options, items in a list
TRUNCATED = "…(truncated)"


def quote(value, limit=QUOTE_CHARS):
    """``repr(value)``, or a repr of its first ``limit`` characters and its length."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) <= limit:
        return repr(value) if isinstance(value, str) else text
    return f"{text[:limit]!r}… ({len(text)} characters)"


def _cap_value(value, depth=0):
    if isinstance(value, str):
        return value if len(value) <= MAX_OPTION_CHARS else value[:MAX_OPTION_CHARS] + TRUNCATED
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    if isinstance(value, list) and depth == 0:
        return [_cap_value(v, 1) for v in value[:MAX_OPTIONS]] + ([TRUNCATED] if len(value) > MAX_OPTIONS else [])
    text = repr(value)  # nested structures: no option of ours takes one
    return text[:MAX_OPTION_CHARS] + (TRUNCATED if len(text) > MAX_OPTION_CHARS else "")


def cap_options(options):
    """``options`` with every string cut to MAX_OPTION_CHARS, lists and keys to
    MAX_OPTIONS, nested values replaced by a short text; small options come back equal.

    Whatever was cut carries TRUNCATED, so validation still refuses it.
    """
    if not isinstance(options, dict):
        return _cap_value(options, 1)
    capped = {}
    for i, (key, value) in enumerate(options.items()):
        if i >= MAX_OPTIONS:
            capped[TRUNCATED] = f"{len(options) - MAX_OPTIONS} more options"
            break
        capped[_cap_value(str(key), 1)] = _cap_value(value)
    return capped


_installed = False


def install_option_cap():
    """Cap ``orm.Spawner.user_options`` whenever it is set, before SQLAlchemy stores it."""
    global _installed
    if _installed:
        return
    from jupyterhub import orm
    from sqlalchemy import event

    @event.listens_for(orm.Spawner.user_options, "set", retval=True, active_history=True)
    def _cap(target, value, oldvalue, initiator):
        value = cap_options(value) if value else value
        # what the options were before this save: a refused spawn puts them back
        target.oggmhub_options_saved = (oldvalue if isinstance(oldvalue, dict) else {}, value)
        return value

    _installed = True
