"""Fault injection records and the request log.

Faults (``KubeAPI.inject``, ``KubeAPI.inject_delay``) are applied *before* kmock sees
the request (so an injected 500 on create creates nothing), or with ``after=True``
after the real operation (the object exists, the client still gets the error / the
hang).  kmock's own reaction DSL is not used for this: the emulator applies
creates/deletes before any reaction runs, and ``kmock[...][:n]`` counts from the start
of the request history, not from the moment of injection.
"""

from __future__ import annotations

import attrs
import kmock
from kmock._internal import rendering

_HTTP_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}
_VERB_TO_METHOD = {"create": "POST", "update": "PATCH", "replace": "PUT"}
_VERB_TO_ACTION = {"list": "list", "watch": "watch", "fetch": "fetch", "read": "fetch"}


@attrs.define
class Fault:
    """One injected fault; ``hits`` counts the requests it has affected so far."""

    method: str | None  # HTTP method, upper-case; None = any
    action: str | None  # kmock action value ('list', 'watch', 'fetch'); None = any
    resource: kmock.resource | None
    namespace: str | None = None
    name: str | None = None
    status: int | None = None
    reason: str | None = None
    message: str | None = None
    seconds: float = 0.0
    times: int | None = 1  # None = forever
    after: bool = False
    hits: int = 0

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times

    def matches(self, request: rendering.Request, method: str, action: str | None) -> bool:
        if self.exhausted:
            return False
        if self.method is not None and self.method != method:
            return False
        if self.action is not None and self.action != action:
            return False
        if self.resource is not None:
            res = request.resource
            if res is None or res.plural != self.resource.plural:
                return False
            if self.resource.group is not None and res.group != self.resource.group:
                return False
        if self.namespace is not None and request.namespace != self.namespace:
            return False
        if self.name is not None and request.name != self.name:
            return False
        return True


@attrs.define
class RequestRecord:
    """A cheap, JSON-free record of one HTTP request served by the emulator."""

    id: int
    time: float
    method: str
    path: str
    query: dict[str, str]
    action: str | None
    resource: str | None  # plural
    namespace: str | None
    name: str | None
    subresource: str | None
    status: int | None = None
    duration: float | None = None
    fault: bool = False
    body: dict | None = None  # what a POST, PUT or PATCH sent (a deep copy, before the server's fields)


def _parse_method_spec(method: str | None) -> tuple[str | None, str | None]:
    """'POST'/'post'/'create' -> ('POST', None); 'list' -> ('GET', 'list'); None -> any."""
    if method is None or method in ("*", "any"):
        return None, None
    low = method.lower()
    if low in _VERB_TO_METHOD:
        return _VERB_TO_METHOD[low], None
    if low in _VERB_TO_ACTION:
        return "GET", _VERB_TO_ACTION[low]
    if method.upper() in _HTTP_METHODS:
        return method.upper(), None
    raise ValueError(f"unknown method/verb: {method!r}")
