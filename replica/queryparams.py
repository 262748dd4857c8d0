"""Query parameters: unknown ones are refused, never ignored.

:func:`reject_unknown_query` is a FastAPI dependency (installed app-wide in
:mod:`replica.app`): a request whose query string names a parameter the matched route
does not declare is refused with 400 ``unknown-parameter``, so a misspelt filter
(``?meterid=`` for ``?meter=``) cannot silently return everything.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from replica.errors import Refusal

UTC_ZONE = ZoneInfo("UTC")
_ALLOWED_CACHE: dict[int, frozenset[str]] = {}


def allowed_parameters(route: APIRoute) -> frozenset[str]:
    """The query parameter names (aliases) a route declares, its dependencies' included."""
    got = _ALLOWED_CACHE.get(id(route))
    if got is None:
        got = frozenset(_query_names(route.dependant))
        _ALLOWED_CACHE[id(route)] = got
    return got


def _query_names(dep: Dependant) -> set[str]:
    names = {p.alias for p in dep.query_params}
    for sub in dep.dependencies:
        names |= _query_names(sub)
    return names


async def reject_unknown_query(request: Request) -> None:
    """Refuse a query parameter the route does not declare.

    Raises:
        Refusal: 400 ``unknown-parameter`` naming the parameter and the accepted ones.
    """
    if not request.query_params:
        return
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    allowed = allowed_parameters(route)
    for name in request.query_params:
        if name not in allowed:
            accepted = ", ".join(sorted(allowed)) or "none"
            raise Refusal(400, "unknown-parameter", f"unknown query parameter {name[:80]!r} "
                          f"(this endpoint accepts: {accepted})", parameter=name[:80])


def parse_time_param(name: str, text: str) -> int:
    """A time query parameter: milliseconds since 1970 or ISO 8601 (``2026-11-30``,
    ``2026-11-30T06:00+01:00``; without an offset, UTC).

    Raises:
        Refusal: 400 ``malformed`` naming the parameter.
    """
    from replica.meterdata.calendar import parse_instant
    from replica.meterdata.errors import MeterDataInputError

    try:
        return parse_instant(text, UTC_ZONE, field=name)
    except MeterDataInputError as exc:
        raise Refusal(400, "malformed", str(exc), field=name) from None
