"""``labelSelector`` / ``fieldSelector`` parsing (equality, set-based and existence terms).

A bad selector raises a 400 ``BadRequest`` ``kmock.KubernetesError``, as the API server answers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from .resources import _bad_request


def _split_top(s: str) -> list[str]:
    """Split a selector by commas that are not inside parentheses."""
    parts, depth, cur = [], 0, []
    for ch in s:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


_SET_RE = re.compile(r"^([^\s!=(),]+)\s+(in|notin)\s*\(([^)]*)\)$")
_EQ_RE = re.compile(r"^([^\s!=(),]+)\s*(==|=|!=)\s*([^\s!=(),]*)$")
_EXISTS_RE = re.compile(r"^(!?)\s*([^\s!=(),]+)$")


def _parse_label_selector(selector: str) -> Callable[[Mapping[str, str]], bool]:
    preds: list[Callable[[Mapping[str, str]], bool]] = []
    for term in _split_top(selector):
        if m := _SET_RE.match(term):
            key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",") if v.strip()}
            if op == "in":
                preds.append(lambda lb, k=key, vs=values: lb.get(k) in vs)
            else:
                preds.append(lambda lb, k=key, vs=values: lb.get(k) not in vs)
        elif m := _EQ_RE.match(term):
            key, op, value = m.groups()
            if op == "!=":
                preds.append(lambda lb, k=key, v=value: lb.get(k) != v)
            else:
                preds.append(lambda lb, k=key, v=value: lb.get(k) == v)
        elif m := _EXISTS_RE.match(term):
            neg, key = m.groups()
            if neg:
                preds.append(lambda lb, k=key: k not in lb)
            else:
                preds.append(lambda lb, k=key: k in lb)
        else:
            raise _bad_request(f"unable to parse requirement: {term!r}")
    return lambda labels: all(p(labels) for p in preds)


def _field_value(obj: Mapping[str, Any], path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, Mapping):
            return ""
        cur = cur.get(part)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def _parse_field_selector(selector: str) -> Callable[[Mapping[str, Any]], bool]:
    preds: list[Callable[[Mapping[str, Any]], bool]] = []
    for term in _split_top(selector):
        m = _EQ_RE.match(term)
        if not m:
            raise _bad_request(f"invalid field selector: {term!r}")
        path, op, value = m.groups()
        if op == "!=":
            preds.append(lambda o, p=path, v=value: _field_value(o, p) != v)
        else:
            preds.append(lambda o, p=path, v=value: _field_value(o, p) == v)
    return lambda obj: all(p(obj) for p in preds)


def _make_selector(params: Mapping[str, str]) -> Callable[[Mapping[str, Any]], bool] | None:
    label_sel = params.get("labelSelector") or ""
    field_sel = params.get("fieldSelector") or ""
    if not label_sel and not field_sel:
        return None
    lpred = _parse_label_selector(label_sel) if label_sel else None
    fpred = _parse_field_selector(field_sel) if field_sel else None

    def check(obj: Mapping[str, Any]) -> bool:
        if lpred is not None and not lpred((obj.get("metadata") or {}).get("labels") or {}):
            return False
        if fpred is not None and not fpred(obj):
            return False
        return True

    return check
